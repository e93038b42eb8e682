"""The fleet without real resolvers: verification in parallel with dead targets (UDP
sockets on loopback that never answer), regions and staleness, the fleet view, and the
enforcers' retry of a publish that did not take."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.opcode
import dns.rrset
import pytest

from edgeagent.config import load_config
from edgeagent.enforcement.base import EnforcerContext
from edgeagent.enforcement.running import Enforcers, retry_delay
from edgeagent.metrics import Metrics
from edgeagent.model import DesiredState
from edgeagent.rpz.enforcer import RpzEnforcer, RpzEnforcerConfig
from edgeagent.rpz.publishers.base import CanaryResult, ResolverTarget
from edgeagent.rpz.verify import ResolverCheck, Verifier


@pytest.fixture
def silent_ports() -> Iterator[list[int]]:
    """Bound UDP sockets that never answer: resolvers that are down but not refusing."""
    socks = []
    for _ in range(40):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    yield [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()


def test_a_pass_over_forty_dead_resolvers_costs_one_timeout(silent_ports: list[int]) -> None:
    checks = [ResolverCheck(ResolverTarget(f"r{p}", "127.0.0.1", p)) for p in silent_ports]
    metrics = Metrics()
    verifier = Verifier(checks, "canary.test", grace_seconds=0, timeout=0.5, metrics=metrics)
    verifier.note_published(7, when=time.time() - 1)
    started = time.monotonic()
    state = verifier.check()
    assert time.monotonic() - started < 1.5
    assert all(not r.reachable and r.stale for r in state.resolvers)
    assert state.reasons[0] == f"resolver r{silent_ports[0]} unreachable (published 7)"
    name = f"r{silent_ports[0]}"
    value = metrics.registry.get_sample_value
    assert value("edgeagent_rpz_resolver_reachable", {"resolver": name}) == 0
    assert value("edgeagent_rpz_resolver_confirmed_age_seconds", {"resolver": name}) >= 0


def answers(serials: dict[str, int | None]) -> object:
    def query(t: ResolverTarget, canary: str, timeout: float) -> CanaryResult:
        serial = serials.get(t.name)
        return CanaryResult(t, serial is not None, serial, 0.001, answered=t.name in serials)

    return query


def test_regions_quorum_and_staleness_age() -> None:
    now = [1000.0]
    targets = [
        ResolverTarget("n1", "127.0.0.1", 1, "bind", "north"),
        ResolverTarget("n2", "127.0.0.1", 2, "bind", "north"),
        ResolverTarget("s1", "127.0.0.1", 3, "unbound", "south"),
        ResolverTarget("s2", "127.0.0.1", 4, "unbound", "south"),
    ]
    serials: dict[str, int | None] = {"n1": 5, "n2": 5, "s1": 5, "s2": 5}
    metrics = Metrics()
    verifier = Verifier(
        [ResolverCheck(t) for t in targets],
        "canary.test",
        grace_seconds=10,
        metrics=metrics,
        quorum=0.75,
        clock=lambda: now[0],
        query=answers(serials),  # type: ignore[arg-type]
    )
    verifier.note_published(5)
    assert verifier.check().ready
    # s1 dies, s2 misses the next version: the south loses its quorum once past grace.
    del serials["s1"]
    verifier.note_published(6)
    serials.update(n1=6, n2=6)
    now[0] += 5
    early = verifier.check()
    assert early.ready  # within grace
    now[0] += 10
    late = verifier.check()
    assert late.reasons == (
        "resolver s1 unreachable (published 6)",
        "resolver s2 serves serial 5 (published 6)",
        "region south: 0 of 2 resolvers serve serial 6 (quorum 0.75)",
    )
    assert [g.to_dict()["has_quorum"] for g in late.regions] == [True, False]
    assert [r.name for r in late.lagging()] == ["s2"]
    assert late.lagging(for_seconds=20) == ()
    by_name = {r.name: r for r in late.resolvers}
    assert by_name["s1"].confirmed_serial == 5  # kept while it is down
    value = metrics.registry.get_sample_value
    assert value("edgeagent_rpz_resolver_confirmed_age_seconds", {"resolver": "s1"}) == 15
    assert value("edgeagent_rpz_resolver_confirmed_age_seconds", {"resolver": "n1"}) == 0
    assert value("edgeagent_rpz_region_converged_ratio", {"region": "south"}) == 0
    assert value("edgeagent_rpz_region_converged_ratio", {"region": "north"}) == 1


def test_retry_delay_doubles_up_to_the_cap_with_jitter() -> None:
    assert [retry_delay(n, 1.0, 8.0, lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 8]
    assert retry_delay(3, 1.0, 8.0, lambda: 0.0) == 2.0  # at least half


def rpz_sections(tmp_path: Path, flag: Path, port: int = 9) -> RpzEnforcerConfig:
    path = tmp_path / "edgeagent.toml"
    path.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        '[publishers.files]\nkind = "zonefile"\n'
        f'directory = "{tmp_path / "zones"}"\n'
        # Stands in for a resolver reload that fails until the flag exists.
        f'reload_command = ["test", "-e", "{flag}"]\n'
        f'[[resolvers]]\nname = "north-1"\nhost = "127.0.0.1"\nport = {port}\n'
        'kind = "bind"\nregion = "north"\n'
    )
    return load_config(path).sections(RpzEnforcerConfig)


async def test_a_failed_publish_is_retried_without_a_new_decision(tmp_path: Path) -> None:
    flag = tmp_path / "reload-works"
    (tmp_path / "zones").mkdir()
    metrics = Metrics()
    context = EnforcerContext(state_dir=tmp_path / "state", metrics=metrics)
    rpz = RpzEnforcer.from_config(rpz_sections(tmp_path, flag), context)
    enforcers = Enforcers([rpz], metrics, retry_first=0.05, retry_max=0.2)
    try:
        await enforcers.publish(DesiredState(3, (), ()))
        assert enforcers.pending == {"rpz": 3}
        value = metrics.registry.get_sample_value
        assert value("edgeagent_enforcer_pending_version", {"enforcer": "rpz"}) == 3
        await asyncio.sleep(0.4)
        assert enforcers.retries["rpz"] >= 2
        assert enforcers.convergence()["rpz"]["pending_version"] == 3
        # Backoff with jitter, visible: the wait before the next retry, in [50 %, 100 %]
        # of the doubled delay (capped at 0.2 s here), in the metrics and in readiness.
        delay = value("edgeagent_enforcer_retry_delay_seconds", {"enforcer": "rpz"})
        assert delay is not None
        assert 0.025 <= delay <= 0.2
        (reason,) = [r for r in enforcers.readiness() if r.startswith("rpz: policy version")]
        assert reason.startswith("rpz: policy version 3 not enforced yet (")
        assert " retries, next in 0." in reason
        flag.touch()
        for _ in range(50):
            if not enforcers.pending:
                break
            await asyncio.sleep(0.05)
        assert enforcers.pending == {}
        assert value("edgeagent_enforcer_pending_version", {"enforcer": "rpz"}) == 0
        assert value("edgeagent_enforcer_retry_delay_seconds", {"enforcer": "rpz"}) == 0
        assert not [r for r in enforcers.readiness() if "not enforced yet" in r]
        assert value("edgeagent_enforcer_publish_retries_total", {"enforcer": "rpz"}) >= 2
        zone = (tmp_path / "zones" / "block.rpz.invalid.zone").read_text()
        assert "serial=1" in zone  # the one release, retried: no new serial per attempt
        assert " 14515200 " in zone  # fail static: the shipped SOA expire
        fleet = enforcers.fleet()
        assert fleet["enforcers"] == {
            "rpz": {"pending_version": None, "retries": 0, "next_retry_seconds": None}
        }
        (member,) = fleet["members"]
        assert (member["name"], member["region"], member["checked_at"]) == (
            "north-1",
            "north",
            None,
        )
    finally:
        await enforcers.close()


class BehindResolver:
    """A UDP DNS server on loopback that answers the canary with ``serial`` and records
    every NOTIFY it is sent (acknowledging it)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.serial = 0
        self.notified: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            if query.opcode() == dns.opcode.NOTIFY:
                self.notified.append(query.question[0].name.to_text(omit_final_dot=True))
            else:
                text = f'"edgeagent-canary serial={self.serial}"'
                response.answer.append(
                    dns.rrset.from_text(query.question[0].name, 60, "IN", "TXT", text)
                )
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


async def test_a_resolver_left_behind_is_notified_until_it_catches_up(tmp_path: Path) -> None:
    behind = BehindResolver()
    (tmp_path / "zones").mkdir()
    flag = tmp_path / "reload-works"
    flag.touch()
    config = rpz_sections(tmp_path, flag, port=behind.port)
    metrics = Metrics()
    rpz = RpzEnforcer.from_config(config, EnforcerContext(tmp_path / "state", metrics))
    assert rpz.publishing is not None
    enforcers = Enforcers([rpz], metrics, retry_first=0.05, retry_max=0.1)
    verify = enforcers.periodic("rpz")["rpz:verify"][1]
    try:
        await enforcers.publish(DesiredState(1, (), ()))
        assert enforcers.pending == {}
        await verify()
        assert rpz.lagging() == ()  # behind, but only just: no NOTIFY yet
        # Ten seconds later it is still behind (it missed the primary's NOTIFY).
        rpz.publishing.verifier.clock = lambda: time.time() + 10
        await verify()
        assert rpz.lagging() == ("north-1",)
        for _ in range(40):
            if len(behind.notified) >= 2:
                break
            await asyncio.sleep(0.05)
        assert set(behind.notified) >= {"block.rpz.invalid", "allow.rpz.invalid"}
        retried = metrics.registry.get_sample_value(
            "edgeagent_enforcer_publish_retries_total", {"enforcer": "rpz"}
        )
        assert retried is not None
        assert retried >= 1
        behind.serial = rpz.publishing.status()["serial"]  # it transferred the zone
        await verify()
        assert rpz.lagging() == ()
        await asyncio.sleep(0.3)
        notified = len(behind.notified)
        await asyncio.sleep(0.3)
        assert len(behind.notified) == notified  # caught up: no more NOTIFYs
    finally:
        await enforcers.close()
        behind.close()
