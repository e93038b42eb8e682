"""Real ``named`` and ``unbound`` from the render module's templates
(:mod:`edgeagent.render.filling`).

Used by ``edgeagent lab`` and by the integration tests (one piece of code for both):

- :func:`start_authoritative`: a non-recursive ``named`` serving synthetic zones;
- :func:`start_primary`: ``named.conf.rpz-primary`` (hidden primary that takes the
  ``bind-update`` publisher's UPDATEs; :func:`update_publisher` is one);
- :func:`start_secondary`: ``named.conf.rpz-secondary`` (a resolver that transfers the
  policy zones from the primary);
- :func:`start_unbound_http`: ``unbound-rpz-http.conf`` (fetches the zones from the
  ``http-notify`` publisher);
- :func:`start_named`/:func:`start_unbound`: the zone-file resolver templates;
- :func:`start_unfiltered_resolver`: an Unbound WITHOUT the policy on port 53 of a
  loopback address (what Squid and sniproxy resolve through; they take no port);
- :func:`unbound_server`: an Unbound answering fixed records (``local-data``), for the
  takedown locator's lookups in the tests and the benchmark.

The templates are filled by :func:`~edgeagent.render.filling.render_template` with the
zone names and zone file names of ``rpz`` (the compiler's defaults unless given) and
nothing else changes; the site-local include carries only lab plumbing (forward/stub zones
to the authoritative server). Every resolver's root is the lab's loopback root
(:func:`edgeagent.lab.root.keep_on_loopback`): a name outside those zones never leaves the
machine.
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

import dns.message
import dns.rdatatype
import dns.tsig

from edgeagent.lab.daemons import (
    HOST,
    ProcessGroup,
    RunningDaemon,
    check_config,
    free_port,
    spawn,
    wait_answering,
)
from edgeagent.lab.root import keep_on_loopback
from edgeagent.render.filling import render_template, unbound_nodefault
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ZoneRelease, zone_file_name
from edgeagent.rpz.publishers.bind_update import BindUpdatePublisher

BIND_RESOLVER_TEMPLATE = "named.conf.rpz-resolver"
PRIMARY_TEMPLATE = "named.conf.rpz-primary"
PRIMARY_UNBOUND_TEMPLATE = "named.conf.rpz-primary-unbound"
SECONDARY_TEMPLATE = "named.conf.rpz-secondary"
UNBOUND_TEMPLATE = "unbound-rpz.conf"
UNBOUND_HTTP_TEMPLATE = "unbound-rpz-http.conf"
UNBOUND_PRIMARY_TEMPLATE = "unbound-rpz-primary.conf"
UPDATE_KEY = "edgeagent-update"
TRANSFER_KEY = "edgeagent-transfer"
# The zone names the daemons here serve unless a caller passes its own settings.
DEFAULT_RPZ = RpzSettings()


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
    """Initial ``<zone>.zone`` files of ``release``'s zones (named needs them to load the
    zones; Unbound's ``zonefile:`` starts from them until the agent's first NOTIFY)."""
    zone_dir.mkdir(parents=True, exist_ok=True)
    settings = release.settings
    (zone_dir / zone_file_name(settings.zone)).write_text(
        "".join(release.policy_text()), encoding="utf-8"
    )
    (zone_dir / zone_file_name(settings.exception_zone)).write_text(
        "".join(release.exception_text()), encoding="utf-8"
    )


def _forward_conf(forwards: dict[str, int] | None, target: str = HOST) -> str:
    return "".join(
        f'zone "{z}" {{ type forward; forward only; forwarders {{ {target} port {p}; }}; }};\n'
        for z, p in (forwards or {}).items()
    )


def _stub_conf(stubs: dict[str, int] | None, target: str = HOST) -> str:
    # Lab plumbing: the stub servers live on loopback, some under special-use names.
    nodefault = "".join(sorted({unbound_nodefault(z) for z in stubs or {}}))
    return (
        "server:\n    do-not-query-localhost: no\n"
        + nodefault
        + "".join(
            f'stub-zone:\n    name: "{z}"\n    stub-addr: {target}@{p}\n'
            for z, p in (stubs or {}).items()
        )
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
    probe: dns.message.Message | None = None,
    **kw: object,
) -> RunningDaemon:
    """Start ``named`` in the foreground: ``-g`` logs everything to stderr (our log file)
    and ignores the config's ``logging`` statement; ``honour_logging`` runs ``-f``.
    ``probe``: the query that shows it is up (:func:`wait_answering`)."""
    check_config(["named-checkconf", str(conf)])
    mode = "-f" if honour_logging else "-g"
    proc, log = spawn(name, ["named", mode, "-n", "1", "-c", str(conf)], workdir, group)
    d = RunningDaemon(name, proc, port, workdir, log, **kw)  # type: ignore[arg-type]
    # A primary loading a large zone on a busy machine takes its time.
    wait_answering(d, timeout=20.0 if probe is None else 90.0, probe=probe)
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
    rpz: RpzSettings = DEFAULT_RPZ,
) -> RunningDaemon:
    """The zone-file BIND resolver, forwarding each zone in ``forwards`` to a port."""
    port = free_port()
    values = {"ZONE_DIR": str(zone_dir)}
    conf, control, key = _bind_resolver_conf(
        workdir, BIND_RESOLVER_TEMPLATE, port, forwards, values, rpz=rpz
    )
    reload_argv = ("rndc", "-s", HOST, "-p", str(control), "-k", str(key), "reload", "{zone}")
    return _named(
        "named", conf, workdir, port, group, reload_argv=reload_argv, extra={"conf": str(conf)}
    )


def _bind_resolver_conf(
    workdir: Path,
    template: str,
    port: int,
    forwards: dict[str, int] | None,
    values: dict[str, str],
    *,
    rpz: RpzSettings,
) -> tuple[Path, int, Path]:
    """Render a BIND resolver template with its own rndc key and control port and
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
    conf.write_text(render_template(template, {**common, **values}, rpz), encoding="utf-8")
    keep_on_loopback(workdir, "bind")
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
    rpz: RpzSettings = DEFAULT_RPZ,
) -> RunningDaemon:
    """The hidden-primary template, with fresh update and transfer keys.

    ``extra`` holds ``update_secret``, ``update_key`` (path), ``transfer_key`` (path) and
    ``transfer_secret``. ``zone_dir`` must hold the bootstrap zones (:func:`bootstrap_zones`).
    ``unbound_clients`` (``;``-terminated addresses): the ``-unbound`` template, which lets
    those read the zones without a key. ``log_file``: the template's ``logging`` statement
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
    template = PRIMARY_TEMPLATE
    if unbound_clients is not None:
        template, values["UNBOUND_CLIENTS"] = PRIMARY_UNBOUND_TEMPLATE, unbound_clients
    text = render_template(template, values, rpz)
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
    # It answers signed requests only: the probe is the SOA of its policy zone, signed.
    probe = dns.message.make_query(rpz.zone, dns.rdatatype.SOA)
    probe.use_tsig(dns.tsig.Key(UPDATE_KEY, update_secret, dns.tsig.HMAC_SHA256))
    return _named(
        "primary",
        conf,
        workdir,
        port,
        group,
        honour_logging=log_file is not None,
        probe=probe,
        extra=extra,
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
    rpz: RpzSettings = DEFAULT_RPZ,
) -> RunningDaemon:
    """The secondary-resolver template, transferring from ``primary``."""
    values = {
        "TRANSFER_KEY": primary.extra["transfer_key"],
        "PRIMARY": f"{HOST} port {primary.port}",
    }
    conf, _, _ = _bind_resolver_conf(workdir, SECONDARY_TEMPLATE, port, forwards, values, rpz=rpz)
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
    template: str,
    port: int,
    stubs: dict[str, int] | None,
    values: dict[str, str],
    *,
    rpz: RpzSettings,
) -> Path:
    """Render an Unbound template with a stub zone per entry of ``stubs``."""
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
    conf.write_text(render_template(template, {**common, **values}, rpz), encoding="utf-8")
    keep_on_loopback(workdir, "unbound")
    return conf


def start_unbound(
    workdir: Path,
    zone_dir: Path,
    stubs: dict[str, int] | None = None,
    *,
    group: ProcessGroup | None = None,
    rpz: RpzSettings = DEFAULT_RPZ,
) -> RunningDaemon:
    """The zone-file Unbound template, with a stub zone per entry of ``stubs``."""
    port = free_port()
    values = {"ZONE_DIR": str(zone_dir)}
    conf = _unbound_conf(workdir, UNBOUND_TEMPLATE, port, stubs, values, rpz=rpz)
    reload_argv = ("unbound-control", "-c", str(conf), "auth_zone_reload", "{zone}")
    return _unbound(conf, workdir, port, group, reload_argv=reload_argv, extra={"conf": str(conf)})


def start_unbound_secondary(
    workdir: Path,
    primary: RunningDaemon,
    port: int,
    stubs: dict[str, int] | None = None,
    *,
    group: ProcessGroup | None = None,
    rpz: RpzSettings = DEFAULT_RPZ,
) -> RunningDaemon:
    """The Unbound template that transfers the zones from ``primary`` (started with
    ``unbound_clients`` naming loopback) by IXFR after its NOTIFY."""
    values = {
        "ZONE_DIR": str(workdir),
        "PRIMARY": f"{HOST}@{primary.port}",
        "PRIMARY_ADDR": HOST,
    }
    conf = _unbound_conf(workdir, UNBOUND_PRIMARY_TEMPLATE, port, stubs, values, rpz=rpz)
    return _unbound(conf, workdir, port, group, extra={"conf": str(conf)})


def start_unbound_http(
    workdir: Path,
    agent_url: str,
    stubs: dict[str, int] | None = None,
    *,
    port: int | None = None,
    group: ProcessGroup | None = None,
    rpz: RpzSettings = DEFAULT_RPZ,
) -> RunningDaemon:
    """The Unbound HTTP template, fetching the zones from ``agent_url`` (loopback).

    Its ``zonefile:`` copies live in ``workdir``: bootstrap them there
    (:func:`bootstrap_zones`) to start before the agent serves anything.
    """
    port = port or free_port()
    values = {"ZONE_DIR": str(workdir), "AGENT_URL": agent_url, "AGENT_ADDR": HOST}
    conf = _unbound_conf(workdir, UNBOUND_HTTP_TEMPLATE, port, stubs, values, rpz=rpz)
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
    keep_on_loopback(workdir, "unbound")
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
        keep_on_loopback(workdir, "unbound")
        proc, log = spawn("unbound", ["unbound", "-d", "-c", str(conf)], workdir)
        d = RunningDaemon("unbound", proc, port, workdir, log)
        try:
            wait_answering(d, timeout=30.0)
            yield d.host, d.port
        finally:
            d.stop()
