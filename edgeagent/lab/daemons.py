"""Foreground daemons for the lab and the integration tests: spawn, wait, stop.

Every process is started in the foreground (``named -g``, ``unbound -d``, ``squid -N``,
``sniproxy -f``) as a direct child, so it stays in the caller's process group: a signal
to the group (Ctrl-C in a terminal, ``kill -- -PGID``) reaches all of them. A
:class:`ProcessGroup` remembers every child it started so that the lab can stop them all,
newest first, on shutdown and on any start-up failure.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from edgeagent.errors import EdgeAgentError

HOST = "127.0.0.1"


class DaemonError(EdgeAgentError, RuntimeError):
    """A daemon did not start (exited, or never answered); the message carries its log tail."""


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
FIRST_PORT = 10_000
_handed_out: set[int] = set()


def _candidate_ports() -> list[int]:
    """Ports below the kernel's ephemeral range, in random order, none handed out before by
    this process. A port the kernel picks for ``bind(0)`` is an ephemeral one: closed
    again, it may be taken by any outgoing connection (a zone transfer, a NOTIFY) before
    the server that was to bind it starts."""
    try:
        low = int(EPHEMERAL_RANGE.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768
    ports = [p for p in range(FIRST_PORT, max(FIRST_PORT + 1000, low)) if p not in _handed_out]
    random.shuffle(ports)
    return ports[:200]


def _bindable(kind: int, host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def dns_port_free(host: str, port: int) -> bool:
    """Whether ``port`` on ``host`` is free for both UDP and TCP right now (DNS daemons
    bind both)."""
    return _bindable(socket.SOCK_STREAM, host, port) and _bindable(socket.SOCK_DGRAM, host, port)


def free_port(host: str = HOST) -> int:
    """A port free for both UDP and TCP on ``host`` right now (DNS daemons bind both)."""
    for port in _candidate_ports():
        if dns_port_free(host, port):
            _handed_out.add(port)
            return port
    raise DaemonError(f"no free port on {host}")


def free_tcp_port(*hosts: str) -> int:
    """A TCP port free on every one of ``hosts`` (default 127.0.0.1) right now."""
    addrs = hosts or (HOST,)
    for port in _candidate_ports():
        if all(_bindable(socket.SOCK_STREAM, addr, port) for addr in addrs):
            _handed_out.add(port)
            return port
    raise DaemonError(f"no TCP port free on all of {addrs}")


@dataclass
class RunningDaemon:
    """A started daemon; :meth:`stop` ends it (idempotent)."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log: Path
    # Reload command template for the zonefile publisher ({zone} is substituted).
    reload_argv: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)
    address: str = HOST

    @property
    def host(self) -> str:
        return self.address

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.proc, timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL (idempotent)."""
    stop_processes([proc], timeout)


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """:func:`stop_process` for each of ``procs``, all signalled first: they shut down
    side by side, so the wait is the slowest one's, not the sum."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


class ProcessGroup:
    """Every child started through it, stopped newest first by :meth:`stop_all`."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def add(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        self.procs.append((name, proc))

    def stop_all(self) -> None:
        while self.procs:
            _name, proc = self.procs.pop()
            with contextlib.suppress(Exception):
                stop_process(proc)


def spawn(
    name: str,
    argv: list[str],
    workdir: Path,
    group: ProcessGroup | None = None,
    log_name: str | None = None,
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``argv`` in ``workdir`` with stdout+stderr to ``<workdir>/<name>.log``.

    The child stays in our process group (no new session) so that it dies with the group.
    """
    log = workdir / (log_name or f"{name}.log")
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=workdir)
    if group is not None:
        group.add(name, proc)
    return proc, log


def restart(d: RunningDaemon, group: ProcessGroup | None = None) -> RunningDaemon:
    """Start a stopped daemon again with the same command line, config and state (its
    zone files, keys and port), once it answers; ``d`` must have been stopped."""
    if d.running():
        raise DaemonError(f"{d.name} still runs: stop it before restarting")
    argv = [str(a) for a in d.proc.args]  # type: ignore[union-attr]
    proc, log = spawn(d.name, argv, d.workdir, group, log_name=f"{d.log.stem}.restart.log")
    again = replace(d, proc=proc, log=log)
    wait_answering(again)
    return again


def wait_answering(
    d: RunningDaemon,
    qname: str = "version.bind.",
    timeout: float = 20.0,
    probe: dns.message.Message | None = None,
) -> None:
    """Block until ``d`` answers a UDP query (any rcode); raise with its log if it died.

    The default probe is a CHAOS-class query for ``qname``: a resolver answers it from
    memory at once, where an ordinary name would go to its root first (the lab's, on
    loopback: :mod:`edgeagent.lab.root`). A server that refuses unsigned queries (the
    hidden primary) needs ``probe``, a query it answers: a refusal would be rate-limited
    by BIND and the probe would then time out. A ``probe`` counts only when answered
    NOERROR (a zone still loading answers SERVFAIL).
    """
    deadline = time.monotonic() + timeout
    q = probe or dns.message.make_query(qname, dns.rdatatype.TXT, dns.rdataclass.CH)
    while True:
        if d.proc.poll() is not None:
            raise DaemonError(f"{d.name} exited {d.proc.returncode}:\n{d.log_text()[-3000:]}")
        try:
            answer = dns.query.udp(q, d.host, port=d.port, timeout=0.3)
            if probe is None or answer.rcode() == dns.rcode.NOERROR:
                return
        except (OSError, dns.exception.DNSException):  # a timeout, or a bad reply
            pass
        if time.monotonic() > deadline:
            d.stop()
            raise DaemonError(f"{d.name} not answering:\n{d.log_text()[-3000:]}")
        time.sleep(0.05)


def wait_listening(
    proc: subprocess.Popen[bytes],
    name: str,
    endpoints: list[tuple[str, int]],
    log: Path,
    timeout: float = 30.0,
) -> None:
    """Block until every ``(host, port)`` accepts TCP; stop ``proc`` and raise on failure."""
    deadline = time.monotonic() + timeout
    pending = list(endpoints)
    while pending:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise DaemonError(f"{name} exited {proc.returncode}:\n{tail}")
        try:
            with socket.create_connection(pending[0], timeout=0.3):
                pending.pop(0)
                continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_process(proc)
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise DaemonError(f"{name} not listening on {pending[0]}:\n{tail}")
        time.sleep(0.05)


def check_config(argv: list[str]) -> None:
    """Run a config checker (``named-checkconf``, ``squid -k parse``); raise with its output."""
    out = subprocess.run(argv, capture_output=True, check=False)
    if out.returncode != 0:
        text = (out.stdout + out.stderr).decode(errors="replace")[-3000:]
        raise DaemonError(f"{argv[0]} rejected the config:\n{text}")
