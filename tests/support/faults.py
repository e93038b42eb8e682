"""What the fault tests share: a small tmpfs, the artefacts read back, decisions posted.

- :func:`tmpfs` mounts a tmpfs of ``size`` at a directory (root only) and unmounts it.
- :func:`fill` writes a file until the file system is full; returns its path.
- :func:`zone_serial` parses a zone file completely (a partial zone raises) and returns
  its SOA serial; :func:`index_version` opens a proxy index (checksum verified) and
  returns the policy version it was built from.
- :func:`zonefile_agent` writes the config of a daemon with a zone file publisher and the
  proxy index (:class:`AgentFiles`: where it listens and writes).
- :func:`decision` is the body of a block decision for a reserved name.
- :func:`start_snippet_resolver` runs a BIND resolver from the shipped resolver snippet on
  zone files a daemon writes (``zonefile_agent(..., rpz=SNIPPET_RPZ,
  publisher=reload_command(named.reload_argv), zone=SNIPPET_POLICY)``); :func:`resolver_serial` is
  the serial it answers the canary from.
- :func:`hung` stops a peer (SIGSTOP: the kernel still takes its connections, nobody
  answers) for a block; :func:`api_latencies` and :func:`p99` measure the API meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.rdatatype
import dns.zone
import pytest

from edgeagent.lab.daemons import HOST, RunningDaemon, free_tcp_port
from edgeagent.lab.proxy import RunningSquid, start_squid
from edgeagent.lab.resolvers import bootstrap_zones, start_named
from edgeagent.model import DesiredState
from edgeagent.proxy.index import IndexReader
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ResolverTarget, ZoneRelease, query_canary
from tests.support.agent import http_json
from tests.support.binaries import require_binary
from tests.support.polling import wait_for
from tests.support.ports import free_port

ZONE = "block.rpz.invalid"
# The zones and files of the shipped resolver snippet (named.conf.rpz-resolver).
SNIPPET_POLICY, SNIPPET_EXCEPTIONS = "rpz.edgeagent.invalid", "rpz-exceptions.edgeagent.invalid"
SNIPPET_RPZ = f'zone = "{SNIPPET_POLICY}"\nexception_zone = "{SNIPPET_EXCEPTIONS}"\n'
CANARY = "canary.edgeagent.example"


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root")
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mountpoint)],
        check=True,
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(directory: Path) -> Path:
    """A file in ``directory`` that takes every free byte."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 512):  # the last partial chunk in smaller writes
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


def zone_serial(path: Path, origin: str = ZONE) -> int:
    """The SOA serial of a complete zone file; raises on a partial or malformed one."""
    zone = dns.zone.from_file(str(path), origin=origin, relativize=False, check_origin=True)
    soa = zone.get_rdataset(origin + ".", dns.rdatatype.SOA)
    assert soa is not None, path
    return int(soa[0].serial)  # type: ignore[attr-defined]


def index_ok(path: Path) -> bool:
    """The proxy index opens and its checksum verifies."""
    reader = IndexReader.open(path)
    reader.close()
    return True


@dataclass(frozen=True)
class AgentFiles:
    """A daemon's config file, where it listens and the artefacts it writes."""

    config: Path
    api: str
    metrics_port: int
    zone: Path
    index: Path
    stop_page_port: int


def zonefile_agent(
    directory: Path,
    rpz: str = "",
    proxy: str = "",
    publisher: str = "",
    zone: str = ZONE,
    store: str = "",
) -> AgentFiles:
    """The config of a daemon writing its zone files and proxy index under ``directory``;
    ``rpz``, ``proxy``, ``publisher`` and ``store`` are extra lines of those sections
    (``zone``: the policy zone ``rpz`` names, if not the default)."""
    api_port, metrics_port = free_port(udp=False), free_port(udp=False)
    stop_page_port = free_port(udp=False)
    zones, index = directory / "zones", directory / "proxy" / "index.bin"
    zones.mkdir(parents=True, exist_ok=True)
    config = directory / "edgeagent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{directory / "state"}"\nlog_format = "json"\n'
        f"[api]\nport = {api_port}\n[metrics]\nport = {metrics_port}\n[rpz]\n{rpz}"
        f'[publishers.files]\nkind = "zonefile"\ndirectory = "{zones}"\n{publisher}'
        f'[proxy]\nenabled = true\nindex_path = "{index}"\n'
        f"stop_page_listen_port = {stop_page_port}\n{proxy}"
        + (f"[store]\n{store}" if store else "")
    )
    return AgentFiles(
        config,
        f"http://127.0.0.1:{api_port}",
        metrics_port,
        zones / f"{zone}.zone",
        index,
        stop_page_port,
    )


def squid_canary_agent(directory: Path, interval: int) -> tuple[AgentFiles, int]:
    """A :func:`zonefile_agent` whose proxy canary asks a Squid at ``HOST`` on the port
    returned (start it with :func:`start_agent_squid` once the daemon runs), verifying
    every ``interval`` seconds; ``directory`` must be reachable by Squid's helper."""
    proxy_port = free_tcp_port(HOST)
    agent = zonefile_agent(
        directory,
        proxy=f'group = "proxy"\nverify_interval_seconds = {interval}\n'
        f'proxies = [{{ host = "{HOST}", port = {proxy_port} }}]\n',
    )
    return agent, proxy_port


def start_agent_squid(directory: Path, agent: AgentFiles, proxy_port: int) -> RunningSquid:
    """The shipped Squid over the running daemon's index (waits for the index)."""
    wait_for("the index", agent.index.exists, 20)
    return start_squid(
        directory / "squid",
        agent.index,
        f"http://{HOST}:{agent.stop_page_port}",
        proxy_port=proxy_port,
    )


def decision(name: str, scope: str = "domain") -> dict[str, Any]:
    target = f"http://{name}/listed.html" if scope == "url" else name
    return {
        "target": target,
        "scope": scope,
        "action": "block",
        "reason": "fault test",
        "reference": f"CASE-{name}",
        "source": "hotline",
    }


@contextlib.contextmanager
def hung(pid: int) -> Iterator[None]:
    """Process ``pid`` stopped (SIGSTOP) inside the block, continued (SIGCONT) after it."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def api_latencies(api: str, token: str, seconds: float) -> list[float]:
    """Status calls one after another for ``seconds``; each one's latency."""
    out: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        code, _ = http_json("GET", f"{api}/v1/status", token)
        out.append(time.monotonic() - started)
        assert code == 200
    return out


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


def start_snippet_resolver(directory: Path) -> RunningDaemon:
    """BIND from the shipped resolver snippet, loading ``directory/zones`` (see the module
    docstring); the caller stops it."""
    require_binary("named")
    zones = directory / "zones"
    zones.mkdir(parents=True, exist_ok=True)
    # The resolver loads the files the publisher writes (<zone>.zone), no renaming.
    settings = RpzSettings(zone=SNIPPET_POLICY, exception_zone=SNIPPET_EXCEPTIONS, canary=CANARY)
    bootstrap_zones(zones, ZoneRelease(DesiredState(0, (), ()), settings, 1))
    return start_named(directory / "named", zones, rpz=settings)


def reload_command(argv: Sequence[str]) -> str:
    """The ``[publishers.files]`` line running ``argv`` after each zone file (a resolver's
    ``reload_argv``)."""
    return f"reload_command = [{', '.join(f'{a!r}' for a in argv)}]\n"


def resolver_serial(port: int) -> int:
    """The canary's serial as the resolver answers it (it must answer)."""
    answer = query_canary(ResolverTarget("named", HOST, port), CANARY)
    assert answer.answered, "the resolver did not answer the canary"
    assert answer.serial is not None, answer
    return answer.serial
