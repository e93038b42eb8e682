"""Real ``named`` and ``unbound`` from the SHIPPED snippets in ``resolvers/``.

Used by ``edgeagent lab`` and by the integration tests (one piece of code for both):

- :func:`start_authoritative`: a non-recursive ``named`` serving synthetic zones;
- :func:`start_primary`: ``resolvers/bind/named.conf.rpz-primary`` (hidden primary that
  takes the ``bind-update`` publisher's UPDATEs; :func:`update_publisher` is one);
- :func:`start_secondary`: ``resolvers/bind/named.conf.rpz-secondary`` (a resolver that
  transfers the policy zones from the primary);
- :func:`start_unbound_http`: ``resolvers/unbound/unbound-rpz-http.conf`` (fetches the
  zones from the ``http-notify`` publisher);
- :func:`start_named`/:func:`start_unbound`: the zone-file resolver snippets;
- :func:`start_unfiltered_resolver`: an Unbound WITHOUT the policy on port 53 of a
  loopback address (what Squid and sniproxy resolve through; they take no port);
- :func:`unbound_server`: an Unbound answering fixed records (``local-data``), for the
  takedown locator's lookups in the tests and the benchmark.

The snippets' ``@PLACEHOLDERS@`` are filled and nothing else changes; the site-local
include carries only lab plumbing (forward/stub zones to the authoritative server).
Daemons listen on 127.0.0.1 unless told otherwise and run in the foreground.
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgeagent.lab.daemons import (
    HOST,
    SNIPPETS_DIR,
    ProcessGroup,
    RunningDaemon,
    check_config,
    free_port,
    render,
    spawn,
    wait_answering,
)
from edgeagent.rpz.publishers.base import ZoneRelease
from edgeagent.rpz.publishers.bind_update import BindUpdatePublisher

BIND_RESOLVER_SNIPPET = SNIPPETS_DIR / "bind" / "named.conf.rpz-resolver"
PRIMARY_SNIPPET = SNIPPETS_DIR / "bind" / "named.conf.rpz-primary"
PRIMARY_UNBOUND_SNIPPET = SNIPPETS_DIR / "bind" / "named.conf.rpz-primary-unbound"
SECONDARY_SNIPPET = SNIPPETS_DIR / "bind" / "named.conf.rpz-secondary"
UNBOUND_SNIPPET = SNIPPETS_DIR / "unbound" / "unbound-rpz.conf"
UNBOUND_HTTP_SNIPPET = SNIPPETS_DIR / "unbound" / "unbound-rpz-http.conf"
UNBOUND_PRIMARY_SNIPPET = SNIPPETS_DIR / "unbound" / "unbound-rpz-primary.conf"
UPDATE_KEY = "edgeagent-update"
TRANSFER_KEY = "edgeagent-transfer"


def tsig_key(path: Path, name: str) -> str:
    """Write a BIND key file for ``name`` (hmac-sha256, mode 0600); return the secret."""
    secret = base64.b64encode(os.urandom(32)).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f'key "{name}" {{\n    algorithm hmac-sha256;\n    secret "{secret}";\n}};\n')
    os.chmod(path, 0o600)
    return secret


def rndc_key(path: Path) -> None:
    """A fresh ``rndc-key`` for a resolver's control channel."""
    tsig_key(path, "rndc-key")


def bootstrap_zones(zone_dir: Path, release: ZoneRelease) -> None:
    """Initial ``rpz.zone`` and ``rpz-exceptions.zone`` (named needs them to load the zones;
    Unbound's ``zonefile:`` starts from them until the agent's first NOTIFY)."""
    zone_dir.mkdir(parents=True, exist_ok=True)
    (zone_dir / "rpz.zone").write_text("".join(release.policy_text()), encoding="utf-8")
    (zone_dir / "rpz-exceptions.zone").write_text(
        "".join(release.exception_text()), encoding="utf-8"
    )


def _forward_conf(forwards: dict[str, int] | None, target: str = HOST) -> str:
    return "".join(
        f'zone "{z}" {{ type forward; forward only; forwarders {{ {target} port {p}; }}; }};\n'
        for z, p in (forwards or {}).items()
    )


def _stub_conf(stubs: dict[str, int] | None, target: str = HOST) -> str:
    # Lab plumbing: the stub servers live on loopback.
    return "server:\n    do-not-query-localhost: no\n" + "".join(
        f'stub-zone:\n    name: "{z}"\n    stub-addr: {target}@{p}\n'
        for z, p in (stubs or {}).items()
    )


def _tlds(zones: dict[str, int]) -> list[str]:
    return sorted({z.rstrip(".").rsplit(".", 1)[-1] for z in zones})


def _named(
    name: str,
    conf: Path,
    workdir: Path,
    port: int,
    group: ProcessGroup | None,
    *,
    honour_logging: bool = False,
    **kw: object,
) -> RunningDaemon:
    """Start ``named`` in the foreground: ``-g`` logs everything to stderr (our log file)
    and ignores the config's ``logging`` statement; ``honour_logging`` runs ``-f``."""
    check_config(["named-checkconf", str(conf)])
    mode = "-f" if honour_logging else "-g"
    proc, log = spawn(name, ["named", mode, "-n", "1", "-c", str(conf)], workdir, group)
    d = RunningDaemon(name, proc, port, workdir, log, **kw)  # type: ignore[arg-type]
    wait_answering(d)
    return d


def start_authoritative(
    workdir: Path,
    zones: dict[str, str],
    *,
    port: int | None = None,
    group: ProcessGroup | None = None,
    name: str = "auth-named",
) -> RunningDaemon:
    """A non-recursive ``named`` serving ``zones`` (name -> zone text) on 127.0.0.1."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    zone_conf = []
    for zname, text in zones.items():
        f = workdir / f"{zname}.zone"
        f.write_text(text, encoding="utf-8")
        zone_conf.append(f'zone "{zname}" {{ type primary; file "{f}"; }};')
    conf = workdir / "named.conf"
    conf.write_text(
        "options {\n"
        f'  directory "{workdir}";\n  pid-file "{workdir}/named.pid";\n'
        f"  listen-on port {port} {{ {HOST}; }};\n  listen-on-v6 {{ none; }};\n"
        "  recursion no;\n  dnssec-validation no;\n  allow-query { any; };\n  querylog no;\n"
        "};\n" + "\n".join(zone_conf) + "\n",
        encoding="utf-8",
    )
    return _named(name, conf, workdir, port, group)


def start_named(
    workdir: Path,
    zone_dir: Path,
    forwards: dict[str, int] | None = None,
    *,
    group: ProcessGroup | None = None,
) -> RunningDaemon:
    """The shipped zone-file BIND resolver, forwarding each zone in ``forwards`` to a port."""
    port = free_port()
    conf, control, key = _bind_resolver_conf(
        workdir, BIND_RESOLVER_SNIPPET, port, forwards, {"ZONE_DIR": str(zone_dir)}
    )
    reload_argv = ("rndc", "-s", HOST, "-p", str(control), "-k", str(key), "reload", "{zone}")
    return _named(
        "named", conf, workdir, port, group, reload_argv=reload_argv, extra={"conf": str(conf)}
    )


def _bind_resolver_conf(
    workdir: Path,
    snippet: Path,
    port: int,
    forwards: dict[str, int] | None,
    values: dict[str, str],
) -> tuple[Path, int, Path]:
    """Render a shipped BIND resolver snippet with its own rndc key and control port and
    the site-local forwards; returns (config path, control port, rndc key path)."""
    workdir.mkdir(parents=True, exist_ok=True)
    control = free_port()
    key = workdir / "rndc.key"
    rndc_key(key)
    local = workdir / "local.conf"
    local.write_text(_forward_conf(forwards), encoding="utf-8")
    conf = workdir / "named.conf"
    common = {
        "RNDC_KEY": str(key),
        "CONTROL_PORT": str(control),
        "WORK_DIR": str(workdir),
        "PORT": str(port),
        "LISTEN": HOST,
        "DNSSEC_VALIDATION": "no",
        "LOCAL_CONF": str(local),
    }
    conf.write_text(render(snippet, {**common, **values}), encoding="utf-8")
    return conf, control, key


def start_primary(
    workdir: Path,
    zone_dir: Path,
    secondaries: list[int],
    *,
    port: int | None = None,
    group: ProcessGroup | None = None,
    unbound_clients: str | None = None,
    log_file: Path | None = None,
) -> RunningDaemon:
    """The shipped hidden-primary snippet, with fresh update and transfer keys.

    ``extra`` holds ``update_secret``, ``update_key`` (path), ``transfer_key`` (path) and
    ``transfer_secret``. ``zone_dir`` must hold the bootstrap zones (:func:`bootstrap_zones`).
    ``unbound_clients`` (``;``-terminated addresses): the ``-unbound`` snippet, which lets
    those read the zones without a key. ``log_file``: the snippet's ``logging`` statement
    holds (``named -f``) and the ``default`` category, syslog in production, goes to
    ``log_file``; without it ``named -g`` logs everything to the daemon's log.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    update_secret = tsig_key(workdir / "update.key", UPDATE_KEY)
    transfer_secret = tsig_key(workdir / "transfer.key", TRANSFER_KEY)
    notify = "".join(f"{HOST} port {p}; " for p in secondaries) or "127.0.0.1 port 9; "
    values = {
        "UPDATE_KEY": str(workdir / "update.key"),
        "TRANSFER_KEY": str(workdir / "transfer.key"),
        "WORK_DIR": str(workdir),
        "PORT": str(port),
        "LISTEN": HOST,
        "ZONE_DIR": str(zone_dir),
        "SECONDARIES": notify,
    }
    snippet = PRIMARY_SNIPPET
    if unbound_clients is not None:
        snippet, values["UNBOUND_CLIENTS"] = PRIMARY_UNBOUND_SNIPPET, unbound_clients
    text = render(snippet, values)
    if log_file is not None:
        text = _default_category_to(text, log_file)
    conf = workdir / "named.conf"
    conf.write_text(text, encoding="utf-8")
    extra = {
        "update_secret": update_secret,
        "update_key": str(workdir / "update.key"),
        "transfer_key": str(workdir / "transfer.key"),
        "transfer_secret": transfer_secret,
    }
    return _named(
        "primary", conf, workdir, port, group, honour_logging=log_file is not None, extra=extra
    )


def update_publisher(
    primary: RunningDaemon,
    live: ZoneRelease | None = None,
    *,
    name: str = "bind-update",
    **options: Any,
) -> BindUpdatePublisher:
    """A ``bind-update`` publisher for ``primary`` (from :func:`start_primary`), signed with
    its update key; ``live``: the release the primary holds now (no AXFR first).
    ``options`` go to :class:`BindUpdatePublisher` (targets, retries, timeouts; another
    ``key_name``/``secret``)."""
    args: dict[str, Any] = {
        "server": primary.host,
        "port": primary.port,
        "key_name": UPDATE_KEY,
        "secret": primary.extra["update_secret"],
        **options,
    }
    pub = BindUpdatePublisher(name, **args)
    if live is not None:
        pub.assume_live(live)
    return pub


def _default_category_to(conf_text: str, log_file: Path) -> str:
    """``conf_text`` with a file channel added to its one ``logging`` statement for the
    ``default`` category (the categories the config names keep their channels)."""
    if conf_text.count("logging {\n") != 1:
        raise ValueError("expected exactly one logging statement")
    channel = (
        f'logging {{\n    channel to_file {{ file "{log_file}"; severity info; }};\n'
        "    category default { to_file; };\n"
    )
    return conf_text.replace("logging {\n", channel)


def start_secondary(
    workdir: Path,
    primary: RunningDaemon,
    port: int,
    forwards: dict[str, int] | None = None,
    *,
    group: ProcessGroup | None = None,
) -> RunningDaemon:
    """The shipped secondary-resolver snippet, transferring from ``primary``."""
    values = {
        "TRANSFER_KEY": primary.extra["transfer_key"],
        "PRIMARY": f"{HOST} port {primary.port}",
    }
    conf, _, _ = _bind_resolver_conf(workdir, SECONDARY_SNIPPET, port, forwards, values)
    return _named("secondary", conf, workdir, port, group, extra={"conf": str(conf)})


def _unbound(
    conf: Path, workdir: Path, port: int, group: ProcessGroup | None, **kw: object
) -> RunningDaemon:
    check_config(["unbound-checkconf", str(conf)])
    proc, log = spawn("unbound", ["unbound", "-d", "-c", str(conf)], workdir, group)
    d = RunningDaemon("unbound", proc, port, workdir, log, **kw)  # type: ignore[arg-type]
    wait_answering(d)
    return d


def _unbound_conf(
    workdir: Path,
    snippet: Path,
    port: int,
    stubs: dict[str, int] | None,
    values: dict[str, str],
) -> Path:
    """Render a shipped Unbound snippet with a stub zone per entry of ``stubs``."""
    workdir.mkdir(parents=True, exist_ok=True)
    local = workdir / "local.conf"
    local.write_text(_stub_conf(stubs), encoding="utf-8")
    conf = workdir / "unbound.conf"
    common = {
        "LISTEN": HOST,
        "PORT": str(port),
        "WORK_DIR": str(workdir),
        "USERNAME": "",
        "CONTROL_SOCKET": str(workdir / "unbound.ctl"),
        "LOCAL_CONF": str(local),
    }
    conf.write_text(render(snippet, {**common, **values}), encoding="utf-8")
    return conf


def start_unbound(
    workdir: Path,
    zone_dir: Path,
    stubs: dict[str, int] | None = None,
    *,
    group: ProcessGroup | None = None,
) -> RunningDaemon:
    """The shipped zone-file Unbound snippet, with a stub zone per entry of ``stubs``."""
    port = free_port()
    conf = _unbound_conf(workdir, UNBOUND_SNIPPET, port, stubs, {"ZONE_DIR": str(zone_dir)})
    reload_argv = ("unbound-control", "-c", str(conf), "auth_zone_reload", "{zone}")
    return _unbound(conf, workdir, port, group, reload_argv=reload_argv, extra={"conf": str(conf)})


def start_unbound_secondary(
    workdir: Path,
    primary: RunningDaemon,
    port: int,
    stubs: dict[str, int] | None = None,
    *,
    group: ProcessGroup | None = None,
) -> RunningDaemon:
    """The shipped Unbound snippet that transfers the zones from ``primary`` (started with
    ``unbound_clients`` naming loopback) by IXFR after its NOTIFY."""
    values = {
        "ZONE_DIR": str(workdir),
        "PRIMARY": f"{HOST}@{primary.port}",
        "PRIMARY_ADDR": HOST,
    }
    conf = _unbound_conf(workdir, UNBOUND_PRIMARY_SNIPPET, port, stubs, values)
    return _unbound(conf, workdir, port, group, extra={"conf": str(conf)})


def start_unbound_http(
    workdir: Path,
    agent_url: str,
    stubs: dict[str, int] | None = None,
    *,
    port: int | None = None,
    group: ProcessGroup | None = None,
) -> RunningDaemon:
    """The shipped Unbound HTTP snippet, fetching the zones from ``agent_url`` (loopback).

    Its ``zonefile:`` copies live in ``workdir``: bootstrap them there
    (:func:`bootstrap_zones`) to start before the agent serves anything.
    """
    port = port or free_port()
    values = {"ZONE_DIR": str(workdir), "AGENT_URL": agent_url, "AGENT_ADDR": HOST}
    conf = _unbound_conf(workdir, UNBOUND_HTTP_SNIPPET, port, stubs, values)
    return _unbound(conf, workdir, port, group, extra={"conf": str(conf)})


def start_unfiltered_resolver(
    workdir: Path,
    address: str,
    stubs: dict[str, int],
    *,
    group: ProcessGroup | None = None,
) -> RunningDaemon:
    """A recursive Unbound WITHOUT the diversion policy on ``address`` port 53.

    What Squid (``dns_nameservers``) and sniproxy (``resolver { nameserver }``) resolve
    through: both take an address only, hence port 53 (needs root; Unbound binds any
    127.0.0.0/8 address, named only interface addresses). ``stubs`` maps zones to
    authoritative servers on 127.0.0.1. It also listens on 127.0.0.1:<free port>
    (``.port``) for :func:`wait_answering`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "unbound.conf"
    conf.write_text(
        "server:\n"
        f"    interface: {address}@53\n    interface: {HOST}@{port}\n"
        f'    directory: "{workdir}"\n    chroot: ""\n    username: ""\n'
        f'    pidfile: "{workdir}/unbound.pid"\n    use-syslog: no\n'
        "    log-queries: no\n    log-replies: no\n"
        '    module-config: "iterator"\n    do-not-query-localhost: no\n'
        "    access-control: 127.0.0.0/8 allow\n    do-ip6: no\n"
        # Unbound answers special-use names (test., invalid.) itself unless told not to.
        + "".join(f'    local-zone: "{tld}." nodefault\n' for tld in _tlds(stubs))
        + "remote-control:\n    control-enable: no\n"
        + "".join(
            f'stub-zone:\n    name: "{z}"\n    stub-addr: {HOST}@{p}\n' for z, p in stubs.items()
        ),
        encoding="utf-8",
    )
    check_config(["unbound-checkconf", str(conf)])
    proc, log = spawn("unfiltered-unbound", ["unbound", "-d", "-c", str(conf)], workdir, group)
    d = RunningDaemon("unfiltered-unbound", proc, port, workdir, log)
    wait_answering(d)
    return d


@contextlib.contextmanager
def unbound_server(
    records: Sequence[tuple[str, str, str]], *, zones: Sequence[str] = ("hosted.test",)
) -> Iterator[tuple[str, int]]:
    """Run ``unbound -d`` on ``127.0.0.1:<free port>`` serving ``records``.

    ``records`` are ``(name, type, value)``; each of ``zones`` is a ``static`` local zone
    (so other names in it answer NXDOMAIN without recursion). Yields ``(address, port)``
    once it answers; stops the daemon and removes its temporary directory afterwards.
    """
    with tempfile.TemporaryDirectory(prefix="edgeagent-unbound-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        lines = [
            "server:",
            f"  interface: {HOST}",
            f"  port: {port}",
            "  do-daemonize: no",
            '  chroot: ""',
            '  username: ""',
            f'  directory: "{workdir}"',
            f'  pidfile: "{workdir}/unbound.pid"',
            "  use-syslog: no",
            "  verbosity: 0",
            "  log-queries: no",
            "  num-threads: 1",
            "  access-control: 127.0.0.0/8 allow",
            "  do-not-query-localhost: no",
            '  module-config: "iterator"',
            "  msg-cache-size: 64m",
            "  rrset-cache-size: 64m",
            '  local-zone: "test." nodefault',
            '  local-zone: "invalid." nodefault',
        ]
        lines += [f'  local-zone: "{z}." static' for z in zones]
        lines += [f'  local-data: "{n}. 300 IN {t} {v}"' for n, t, v in records]
        lines += ["remote-control:", "  control-enable: no", ""]
        conf = workdir / "unbound.conf"
        conf.write_text("\n".join(lines), encoding="utf-8")
        proc, log = spawn("unbound", ["unbound", "-d", "-c", str(conf)], workdir)
        d = RunningDaemon("unbound", proc, port, workdir, log)
        try:
            wait_answering(d, timeout=30.0)
            yield d.host, d.port
        finally:
            d.stop()
