"""Squid with the edgeagent helper, and sniproxy, from the SHIPPED configs.

- :func:`start_squid` renders ``resolvers/squid/squid.conf``, checks it with
  ``squid -k parse`` and runs ``squid -N`` until both its explicit-proxy port and its
  ``accel vhost`` port (what DNS-diverted clients reach) accept connections. Squid drops
  to the ``proxy`` user: ``workdir`` is made writable for it and the index must be
  readable by it (the agent writes it with ``[proxy] group = "proxy"``).
- :func:`start_sniproxy` renders ``resolvers/sniproxy/sniproxy.conf`` and runs
  ``sniproxy -f`` (diverted HTTPS is passed through by SNI, untouched).

Both resolve names WITHOUT the diversion policy: Squid through ``resolver`` (an address,
port 53) or a hosts file; sniproxy through ``resolver`` only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import edgeagent
from edgeagent.lab.daemons import (
    HOST,
    SNIPPETS_DIR,
    ProcessGroup,
    check_config,
    free_tcp_port,
    render,
    spawn,
    stop_process,
    wait_listening,
)

SQUID_CONF = SNIPPETS_DIR / "squid" / "squid.conf"
SNIPROXY_CONF = SNIPPETS_DIR / "sniproxy" / "sniproxy.conf"
REPO = Path(edgeagent.__file__).resolve().parent.parent


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

    The installed ``edgeagent-squid-helper`` console script when it exists; from a source
    checkout whose interpreter ``proxy`` may not reach (a venv under /root), Debian's
    python3 with the checkout and the venv's pure-Python packages on PYTHONPATH.
    """
    installed = shutil.which("edgeagent-squid-helper", path="/usr/local/bin:/usr/bin")
    if installed is not None:
        return installed
    sites = sorted(Path(sys.prefix, "lib").glob("python3*/site-packages"))
    path = ":".join([str(REPO), *(str(s) for s in sites)])
    return f"/usr/bin/env PYTHONPATH={path} /usr/bin/python3 -m edgeagent.proxy.squid_helper"


PREFILTER_DIR = SNIPPETS_DIR / "squid" / "ecap"


def prefilter_module() -> Path:
    """The built eCAP path prefilter (``./dev`` builds it with ``make -C``).

    Raises :class:`FileNotFoundError` naming the build command when it is missing.
    """
    module = PREFILTER_DIR / "build" / "edgeagent-prefilter.so"
    if not module.is_file():
        raise FileNotFoundError(
            f"{module} is missing: run `make -C {PREFILTER_DIR}` "
            "(Debian packages g++ make libecap3-dev libssl-dev)"
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
) -> tuple[Path, int, int]:
    """Write ``squid.conf`` (+ hosts file) into ``workdir``; return (conf, proxy, accel port).

    ``resolver``: a DNS server WITHOUT the diversion policy (port 53); ``hosts`` answers
    first (and alone without ``resolver``).
    """
    hosts_file = workdir / "hosts"
    hosts_file.write_text("".join(f"{a} {n}\n" for n, a in (hosts or {}).items()))
    proxy_port = proxy_port or free_tcp_port(listen)
    accel_port = accel_port or free_tcp_port(listen)
    conf = workdir / "squid.conf"
    conf.write_text(
        render(
            SQUID_CONF,
            {
                "LISTEN": listen,
                "PROXY_PORT": str(proxy_port),
                "ACCEL_PORT": str(accel_port),
                "INTERCEPT_PORT": "0",
                "HELPER": helper_command(),
                "PREFILTER": str(prefilter_module()),
                "INDEX": str(index),
                "FAIL_MODE": fail_mode,
                "STATS_FILE": str(stats_file or workdir / "helper-%p.json"),
                "STOP_URL": stop_url,
                "RESOLVER_CONF": f"hosts_file {hosts_file}\ndns_nameservers {resolver or HOST}",
                "WORK_DIR": str(workdir),
                "EFFECTIVE_USER": "proxy",
            },
        )
    )
    return conf, proxy_port, accel_port


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
    conf.write_text(
        render(
            SNIPROXY_CONF,
            {
                "LISTEN": listen,
                "PORT": str(port),
                "RESOLVER": resolver,
                "WORK_DIR": str(workdir),
                "USER": "daemon",
            },
        )
    )
    proc, out = spawn("sniproxy", ["sniproxy", "-f", "-c", str(conf)], workdir, group)
    wait_listening(proc, "sniproxy", [(listen, port)], out, timeout=15)
    return RunningSniproxy(proc, listen, port, workdir)
