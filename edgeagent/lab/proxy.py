"""Squid with the edgeagent helper, and sniproxy, from the render module's templates.

- :func:`start_squid` fills ``squid.conf`` (:mod:`edgeagent.render.filling`), checks it with
  ``squid -k parse`` and runs ``squid -N`` until both its explicit-proxy port and its
  ``accel vhost`` port (what DNS-diverted clients reach) accept connections. Squid drops
  to the ``proxy`` user: ``workdir`` is made writable for it and the index must be
  readable by it (the agent writes it with ``[proxy] group = "proxy"``).
- :func:`start_sniproxy` fills ``sniproxy.conf`` and runs
  ``sniproxy -f`` (diverted HTTPS is passed through by SNI, untouched).

Both resolve names WITHOUT the diversion policy: Squid through ``resolver`` (an address,
port 53) or a hosts file; sniproxy through ``resolver`` only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgeagent.bundled import IMPORT_ROOT, bundled_path
from edgeagent.intake.entryref import KEY_FILE_NAME
from edgeagent.lab.daemons import (
    HOST,
    DaemonError,
    ProcessGroup,
    check_config,
    free_tcp_port,
    spawn,
    stop_process,
    wait_listening,
)
from edgeagent.proxy.enforcer import HELPER_STATS_FILE_NAME
from edgeagent.render.filling import fill, template_text
from edgeagent.render.inventory import InventoryPaths, InventoryProxy
from edgeagent.render.snippets import ProxyNames, sniproxy_values, squid_values

SQUID_TEMPLATE = "squid.conf"
SNIPROXY_TEMPLATE = "sniproxy.conf"


@dataclass
class RunningSquid:
    proc: subprocess.Popen[bytes]
    proxy_port: int
    accel_port: int
    workdir: Path
    conf: Path
    listen: str = HOST

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)

    def log_text(self) -> str:
        log = self.workdir / "cache.log"
        return log.read_text(errors="replace") if log.exists() else ""


def helper_command() -> str:
    """The helper command line Squid can run as the ``proxy`` user.

    The console script installed system-wide when it exists; otherwise (a venv, whose
    interpreter ``proxy`` may not reach, e.g. under /root) Debian's python3 with this
    edgeagent and the interpreter's site-packages (also those a ``.pth`` file adds) on
    PYTHONPATH.
    """
    installed = shutil.which("edgeagent-squid-helper", path="/usr/local/bin:/usr/bin")
    if installed is not None:
        return installed
    sites = [entry for entry in sys.path if Path(entry).name == "site-packages"]
    path = ":".join(dict.fromkeys([str(IMPORT_ROOT), *sites]))
    return f"/usr/bin/env PYTHONPATH={path} /usr/bin/python3 -m edgeagent.proxy.squid_helper"


# The prefilter's sources and Makefile; ``make -C`` builds into ``build/`` beside them.
PREFILTER_DIR = bundled_path("prefilter")
PREFILTER_MODULE = "edgeagent-prefilter.so"
PREFILTER_PACKAGES = "Debian packages g++ make libecap3-dev libssl-dev"


def prefilter_module(build_dir: Path) -> Path:
    """The eCAP path prefilter Squid loads: found, or built into ``build_dir``.

    Found: ``build/`` beside the sources (``./dev`` runs ``make -C`` there in a checkout).
    An installed package ships the sources only, because the module links against the
    host's libecap: it is then built from them into ``build_dir``, leaving the installed
    files untouched. Raises :class:`DaemonError` with make's output when that fails.
    """
    module = PREFILTER_DIR / "build" / PREFILTER_MODULE
    if module.is_file():
        return module
    module = build_dir / PREFILTER_MODULE
    command = ["make", "-s", "-C", str(PREFILTER_DIR), f"OUT={build_dir}", str(module)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        failure = (result.stdout + result.stderr)[-2000:] if result.returncode else None
    except OSError as exc:  # no make
        failure = str(exc)
    if failure is not None:
        raise DaemonError(
            f"building the Squid prefilter from {PREFILTER_DIR} failed "
            f"({PREFILTER_PACKAGES}):\n{failure}"
        )
    return module


def render_squid_conf(
    workdir: Path,
    index: Path,
    stop_url: str,
    *,
    listen: str = HOST,
    proxy_port: int | None = None,
    accel_port: int | None = None,
    resolver: str | None = None,
    hosts: dict[str, str] | None = None,
    fail_mode: str = "open",
    stats_file: Path | None = None,
    appeal_key: Path | None = None,
    intercept_port: int | None = None,
) -> tuple[Path, int, int]:
    """Write ``squid.conf`` (+ hosts file) into ``workdir``; return (conf, proxy, accel port).

    ``appeal_key``: the agent's appeal key file (default: ``workdir/appeal-ref.key``,
    which the helper goes on without when it does not exist).

    ``resolver``: a DNS server WITHOUT the diversion policy (port 53); ``hosts`` answers
    first (and alone without ``resolver``). ``intercept_port``: turn on the shipped
    (commented) ``intercept`` port for route diversion; it needs a netfilter ``REDIRECT``
    to it, so only a network namespace of the caller's uses it.
    """
    hosts_file = workdir / "hosts"
    hosts_file.write_text("".join(f"{a} {n}\n" for n, a in (hosts or {}).items()))
    proxy = InventoryProxy(
        name="squid",
        address=listen,
        region="lab",
        proxy_port=proxy_port or free_tcp_port(listen),
        accel_port=accel_port or free_tcp_port(listen),
        intercept_port=intercept_port or 3129,
        unfiltered_resolver=resolver or HOST,
    )
    paths = InventoryPaths(
        squid_dir=str(workdir),
        squid_helper=helper_command(),
        squid_prefilter=str(prefilter_module(workdir / "prefilter")),
        squid_hosts_file=str(hosts_file),
    )
    names = ProxyNames(
        index_path=str(index),
        fail_mode=fail_mode,
        stop_url=stop_url,
        appeal_key_path=str(appeal_key or workdir / KEY_FILE_NAME),
        stats_file=str(stats_file or workdir / HELPER_STATS_FILE_NAME),
    )
    conf = workdir / "squid.conf"
    values = squid_values(proxy, paths, names)
    # Lab plumbing: without a visible_hostname Squid looks up the name of its first
    # port's address through the system's resolver (off the machine; 10 s to fail for a
    # lab address), then takes the host name, as here.
    text = fill(template_text(SQUID_TEMPLATE), values, SQUID_TEMPLATE)
    conf.write_text(f"{text}\nvisible_hostname {socket.gethostname()}\n")
    if intercept_port is not None:
        port = f"# http_port {listen}:{intercept_port} intercept"
        text = conf.read_text()
        if f"\n{port}" not in text:
            raise DaemonError(f"{SQUID_TEMPLATE} has no commented intercept port to turn on")
        conf.write_text(text.replace(f"\n{port}", f"\n{port[2:]}"))
    return conf, proxy.proxy_port, proxy.accel_port


def start_squid(
    workdir: Path,
    index: Path,
    stop_url: str,
    *,
    listen: str = HOST,
    proxy_port: int | None = None,
    accel_port: int | None = None,
    resolver: str | None = None,
    hosts: dict[str, str] | None = None,
    fail_mode: str = "open",
    stats_file: Path | None = None,
    group: ProcessGroup | None = None,
    appeal_key: Path | None = None,
) -> RunningSquid:
    """Run the shipped Squid config in the foreground until both ports accept."""
    workdir.mkdir(parents=True, exist_ok=True)
    # Squid (after dropping to `proxy`) writes cache.log, its pid and stats here.
    os.chmod(workdir, 0o777)  # noqa: S103 - a throwaway work directory
    conf, proxy_port, accel_port = render_squid_conf(
        workdir,
        index,
        stop_url,
        listen=listen,
        proxy_port=proxy_port,
        accel_port=accel_port,
        resolver=resolver,
        hosts=hosts,
        fail_mode=fail_mode,
        stats_file=stats_file,
        appeal_key=appeal_key,
    )
    check_config(["squid", "-k", "parse", "-f", str(conf)])
    proc, _out = spawn("squid", ["squid", "-N", "-f", str(conf)], workdir, group, "squid.out")
    sq = RunningSquid(proc, proxy_port, accel_port, workdir, conf, listen)
    wait_listening(
        proc, "squid", [(listen, proxy_port), (listen, accel_port)], workdir / "cache.log"
    )
    return sq


@dataclass
class RunningSniproxy:
    proc: subprocess.Popen[bytes]
    listen: str
    port: int
    workdir: Path

    def stop(self) -> None:
        stop_process(self.proc)


def start_sniproxy(
    workdir: Path,
    listen: str,
    port: int,
    resolver: str,
    *,
    group: ProcessGroup | None = None,
) -> RunningSniproxy:
    """Run the shipped sniproxy config (``-f``) on ``listen:port`` until it accepts."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "sniproxy.conf"
    proxy = InventoryProxy(
        name="sniproxy", address=listen, region="lab", tls_port=port, unfiltered_resolver=resolver
    )
    values = sniproxy_values(proxy, InventoryPaths(sniproxy_dir=str(workdir)))
    conf.write_text(fill(template_text(SNIPROXY_TEMPLATE), values, SNIPROXY_TEMPLATE))
    proc, out = spawn("sniproxy", ["sniproxy", "-f", "-c", str(conf)], workdir, group)
    wait_listening(proc, "sniproxy", [(listen, port)], out, timeout=15)
    return RunningSniproxy(proc, listen, port, workdir)
