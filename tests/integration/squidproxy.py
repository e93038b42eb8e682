"""Start the shipped Squid config with the edgeagent helper on loopback (tests, lab).

``start_squid(workdir, index, stop_url, hosts)`` renders ``resolvers/squid/squid.conf``,
checks it with ``squid -k parse``, and runs ``squid -N`` in the foreground. Names are
resolved from a ``hosts_file`` (test plumbing standing in for a resolver without the
diversion policy), or, with ``resolver=ADDR``, through the DNS server at ``ADDR`` port 53
only (``dns_nameservers`` takes no port): :func:`start_unfiltered_dns` starts one.
``listen``/``accel_port`` put the ports on another loopback address (a diversion target
such as 127.0.6.80). Squid drops to the ``proxy`` user, so ``workdir`` and the index must
be readable by it (the caller gives the index the ``proxy`` group).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.integration.resolvers import (
    REPO,
    RunningDaemon,
    free_port,
    render,
    wait_answering,
)

SQUID_CONF = REPO / "resolvers" / "squid" / "squid.conf"
HOST = "127.0.0.1"


@dataclass
class RunningSquid:
    proc: subprocess.Popen[bytes]
    proxy_port: int
    accel_port: int
    workdir: Path
    conf: Path
    listen: str = HOST

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def log_text(self) -> str:
        log = self.workdir / "cache.log"
        return log.read_text(errors="replace") if log.exists() else ""


def _free_tcp_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def helper_path() -> str:
    """Helper command line Squid can run as the ``proxy`` user.

    On this machine the venv's interpreter lives under /root (not reachable by ``proxy``),
    so the test runs the helper with Debian's python3 and the repository plus the venv's
    pure-Python packages (``idna``) on PYTHONPATH. A deployment uses the installed
    ``edgeagent-squid-helper`` console script instead.
    """
    site = next(Path(sys.prefix, "lib").glob("python3*/site-packages"))
    return f"/usr/bin/env PYTHONPATH={REPO}:{site} /usr/bin/python3 -m edgeagent.proxy.squid_helper"


def render_conf(
    workdir: Path,
    index: Path,
    stop_url: str,
    hosts: dict[str, str],
    fail_mode: str = "open",
    *,
    listen: str = HOST,
    accel_port: int | None = None,
    resolver: str | None = None,
) -> tuple[Path, int, int]:
    """Write squid.conf + hosts file into ``workdir``; return (conf, proxy port, accel port).

    ``resolver``: the address of a DNS server WITHOUT the diversion policy (port 53);
    Squid resolves names there (``hosts`` still answers first: pass ``{}`` to use DNS
    only). Without it, names come from ``hosts``.
    """
    hosts_file = workdir / "hosts"
    hosts_file.write_text("".join(f"{addr} {name}\n" for name, addr in hosts.items()))
    proxy_port = _free_tcp_port(listen)
    if accel_port is None:
        accel_port = _free_tcp_port(listen)
    nameserver = resolver if resolver is not None else HOST
    conf = workdir / "squid.conf"
    conf.write_text(
        render(
            SQUID_CONF,
            {
                "LISTEN": listen,
                "PROXY_PORT": str(proxy_port),
                "ACCEL_PORT": str(accel_port),
                "INTERCEPT_PORT": "0",
                "HELPER": helper_path(),
                "INDEX": str(index),
                "FAIL_MODE": fail_mode,
                "STATS_FILE": str(workdir / "helper-%p.json"),
                "STOP_URL": stop_url,
                "RESOLVER_CONF": f"hosts_file {hosts_file}\ndns_nameservers {nameserver}",
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
    hosts: dict[str, str],
    fail_mode: str = "open",
    *,
    listen: str = HOST,
    accel_port: int | None = None,
    resolver: str | None = None,
) -> RunningSquid:
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o777)  # squid (user proxy) writes cache.log, pid and stats here
    conf, proxy_port, accel_port = render_conf(
        workdir,
        index,
        stop_url,
        hosts,
        fail_mode,
        listen=listen,
        accel_port=accel_port,
        resolver=resolver,
    )
    subprocess.run(["squid", "-k", "parse", "-f", str(conf)], check=True, capture_output=True)
    out = (workdir / "squid.out").open("wb")
    try:
        proc = subprocess.Popen(
            ["squid", "-N", "-f", str(conf)], stdout=out, stderr=subprocess.STDOUT, cwd=workdir
        )
    finally:
        out.close()
    sq = RunningSquid(proc, proxy_port, accel_port, workdir, conf, listen)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"squid exited {proc.returncode}:\n{sq.log_text()[-3000:]}")
        try:
            with socket.create_connection((listen, proxy_port), timeout=0.3):
                pass
            with socket.create_connection((listen, accel_port), timeout=0.3):
                return sq
        except OSError:
            time.sleep(0.1)
    sq.stop()
    raise RuntimeError(f"squid not listening:\n{sq.log_text()[-3000:]}")


def start_unfiltered_resolver(workdir: Path, address: str, stubs: dict[str, int]) -> RunningDaemon:
    """A recursive Unbound WITHOUT the diversion policy on ``address`` port 53.

    This is the name resolution Squid (``dns_nameservers``) and sniproxy (``resolver {
    nameserver }``) must use; both take an address only, so it must be port 53 (tests run
    as root; Unbound binds any 127.0.0.0/8 address, named only interface addresses).
    ``stubs`` maps zones to authoritative servers on 127.0.0.1 (``start_authoritative``).
    It also listens on 127.0.0.1:<free port> (``.port``) for ``wait_answering``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "unbound.conf"
    conf.write_text(
        "server:\n"
        f"    interface: {address}@53\n    interface: {HOST}@{port}\n"
        f'    directory: "{workdir}"\n    chroot: ""\n    username: ""\n'
        f'    pidfile: "{workdir}/unbound.pid"\n    use-syslog: no\n'
        '    module-config: "iterator"\n    do-not-query-localhost: no\n'
        "    access-control: 127.0.0.0/8 allow\n    do-ip6: no\n"
        # Unbound answers special-use names (test., invalid.) itself unless told not to.
        + "".join(f'    local-zone: "{z}." nodefault\n' for z in stubs)
        + "remote-control:\n    control-enable: no\n"
        + "".join(
            f'stub-zone:\n    name: "{z}"\n    stub-addr: {HOST}@{p}\n' for z, p in stubs.items()
        )
    )
    subprocess.run(["unbound-checkconf", str(conf)], check=True, capture_output=True)
    log = workdir / "unbound.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["unbound", "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT, cwd=workdir
        )
    d = RunningDaemon("unfiltered-unbound", proc, port, workdir, log)
    wait_answering(d)
    return d
