"""One verification pass over a fleet of real resolvers with some dead, and the publish
beside it.

A hidden primary ``named`` feeds ``live`` BIND secondaries (the shipped snippets, by
NOTIFY + IXFR); ``dead`` more targets are bound UDP sockets that never answer (a dead
host that drops queries, the costly kind: no ICMP refusal ends the wait early). The
verifier asks every target's canary once, all in flight through a bounded pool; the
publish (``bind-update``, the primary accepting the UPDATE) is timed beside it, as the
agent runs it: without waiting for any resolver.
"""

from __future__ import annotations

import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import Row
from edgeagent.lab.daemons import HOST, RunningDaemon
from edgeagent.lab.resolvers import (
    bootstrap_zones,
    start_primary,
    start_secondary,
    update_publisher,
)
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ResolverTarget, ZoneRelease
from edgeagent.rpz.verify import ResolverCheck, Verifier

SETTINGS = RpzSettings()  # the zone names the shipped hidden-primary snippet serves
ANCHOR = "goal: one verification pass over 100 resolvers with 10 dead <= 3 s"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def run(live: int = 90, dead: int = 10) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        return _run(Path(tmp), live, dead)


def _run(base: Path, live: int, dead: int) -> list[Row]:
    first = ZoneRelease(DesiredState(0, (), ()), SETTINGS, 1)
    bootstrap_zones(base / "zones", first)
    ports = [_free_udp_port() for _ in range(live)]
    primary = start_primary(base / "primary", base / "zones", ports, rpz=SETTINGS)
    resolvers: list[RunningDaemon] = []
    silent = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(dead)]
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            resolvers = list(
                pool.map(
                    lambda i: start_secondary(
                        base / f"bind-{i:03d}", primary, ports[i], rpz=SETTINGS
                    ),
                    range(live),
                )
            )
        for s in silent:
            s.bind((HOST, 0))
        targets = [ResolverTarget(d.name + str(i), HOST, d.port) for i, d in enumerate(resolvers)]
        targets += [
            ResolverTarget(f"dead-{i}", HOST, s.getsockname()[1]) for i, s in enumerate(silent)
        ]
        publisher = update_publisher(primary, first, verify_timeout=0.0)
        block = Entry(Indicator.parse(Scope.HOST, "fleet-bench.example"), Action.BLOCK, "bench")
        release = ZoneRelease(DesiredState(1, (block,), ()), SETTINGS, 2)
        started = time.monotonic()
        publisher.publish(release)
        accepted = time.monotonic() - started
        verifier = Verifier([ResolverCheck(t) for t in targets], SETTINGS.canary, grace_seconds=0.0)
        verifier.note_published(2)
        time.sleep(2.0)  # let the secondaries transfer serial 2
        passes = []
        for _ in range(3):
            state = verifier.check()
            passes.append(state.seconds)
        current = sum(1 for r in state.resolvers if r.lag == 0)
        unreachable = sum(1 for r in state.resolvers if not r.reachable)
    finally:
        for s in silent:
            s.close()
        for d in [*resolvers, primary]:
            d.stop()
    n = live + dead
    return [
        Row(
            f"one verification pass, {n} resolvers ({dead} dead), worst of 3",
            max(passes),
            "s",
            "<= 3 s",
            ANCHOR,
        ),
        Row(f"  resolvers serving the published serial (of {live} live)", current, "", "", ""),
        Row(f"  reported unreachable (of {dead} dead)", unreachable, "", "", ""),
        Row(
            f"publish with {dead} of {n} resolvers dead (primary accepted)",
            accepted,
            "s",
            "<= 1 s",
            "goal: a dead resolver never delays publishing",
        ),
    ]
