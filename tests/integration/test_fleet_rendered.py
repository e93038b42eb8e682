"""A national fleet in miniature, every daemon run from its RENDERED snippet, under one
running agent (``edgeagent run``).

``edgeagent render``'s output for a loopback inventory (:mod:`edgeagent.lab.fleet`): two
hidden primaries that the agent UPDATEs with the same serials, two regions with two BIND
distribution secondaries each (from both primaries, region TSIG keys), and 32 resolvers
of mixed kinds (BIND, Unbound admitted by address, PowerDNS Recursor, one Knot Resolver
behind its Knot DNS secondary). The agent's publishers and ``[[resolvers]]`` are the
rendered ``agent/fleet.toml``. A decision is blocked at every resolver; with a primary, a
secondary and a resolver killed it still is, and each comes back to the current version;
with the whole centre (primaries and secondaries) down, every resolver keeps blocking
through many refresh cycles of the short timers (fail static). ``EDGEAGENT_LONG=1``: 60
resolvers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import pytest

from edgeagent.lab.daemons import HOST, restart
from edgeagent.lab.fleet import (
    RunningFleet,
    loopback_inventory,
    resolver_kinds,
    start_fleet,
    start_resolver,
)
from edgeagent.render.writing import shipped_templates
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ResolverTarget, query_all
from tests.support.agent import agent_listeners_toml, create_token, http_json, running_agent
from tests.support.api import decision_body
from tests.support.fuzzing import LONG
from tests.support.polling import wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

ZONE, EXCEPTIONS = "block.rpz.invalid", "allow.rpz.invalid"
CANARY = "canary.edgeagent.example"
RESOLVERS = 60 if LONG else 32
# Short timers: a compressed outage spans many refresh/retry cycles.
SOA_REFRESH, SOA_RETRY = 2, 1


@dataclass
class Env:
    fleet: RunningFleet
    api: str
    analyst: str
    noc: str

    def targets(self) -> list[ResolverTarget]:
        return [ResolverTarget(r.name, r.address, r.port) for r in self.fleet.inventory.resolvers]

    def decide(self, target: str) -> None:
        code, body = http_json(
            "POST", f"{self.api}/v1/decisions", self.analyst, decision_body(target)
        )
        assert code == 201, body

    def primary_serials(self) -> dict[str, int | None]:
        """Each primary's SOA serial; ``None`` for one that did not answer in three tries
        (a single lost datagram on a loaded machine is not a dead primary)."""
        key = dns.tsig.Key(self.fleet.update_key, self.fleet.update_secret, dns.tsig.HMAC_SHA256)
        out: dict[str, int | None] = {}
        for p in self.fleet.inventory.primaries:
            out[p.name] = None
            for _ in range(3):
                q = dns.message.make_query(ZONE, dns.rdatatype.SOA)
                q.use_tsig(key)
                try:
                    answer = dns.query.udp(q, p.address, port=p.port, timeout=1.0)
                    out[p.name] = answer.answer[0][0].serial  # type: ignore[union-attr]
                    break
                except (OSError, dns.exception.DNSException, IndexError):
                    continue
        return out

    def primaries_agree(self) -> int | None:
        """The serial both primaries serve, once they serve the same one."""
        serials = set(self.primary_serials().values())
        return serials.pop() if len(serials) == 1 and None not in serials else None

    def behind_primaries(self) -> dict[str, int | None]:
        """The resolvers whose canary is not at the primaries' current serial (all of them
        while the primaries disagree); empty when the fleet has converged."""
        serial = self.primaries_agree()
        results = query_all(self.targets(), CANARY, 1.0)
        return {r.target.name: r.serial for r in results if serial is None or r.serial != serial}

    def converged(self, timeout: float) -> None:
        """Wait until every resolver serves the primaries' serial, compared with the
        primaries as they are at each look (a re-publish in between must not leave the wait
        chasing an old serial); the laggards are named if it times out."""
        behind: dict[str, int | None] = {}

        def probe() -> bool:
            behind.clear()
            behind.update(self.behind_primaries())
            return not behind

        try:
            wait_for("every resolver at the primaries' serial", probe, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; behind: {behind}") from None

    def not_blocking(self, name: str) -> list[str]:
        """The live resolvers that do not answer ``name`` NXDOMAIN (the policy's answer)."""
        q = dns.message.make_query(name, dns.rdatatype.A)
        missing = []
        for t in self.targets():
            if not self.fleet.daemons[t.name].running():
                continue
            try:
                r = dns.query.udp(q, t.host, port=t.port, timeout=1.0)
                if r.rcode() != dns.rcode.NXDOMAIN:
                    missing.append(t.name)
            except (OSError, dns.exception.DNSException):
                missing.append(t.name)
        return missing

    def blocked_everywhere(self, name: str, timeout: float) -> float:
        started = time.monotonic()
        missing: list[str] = []

        def probe() -> bool:
            missing[:] = self.not_blocking(name)
            return not missing

        try:
            wait_for(f"{name} blocked at every live resolver", probe, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; not blocking: {missing}") from None
        return time.monotonic() - started


def agent_config(base: Path, fragment: str, api: int, metrics: int) -> str:
    return f"""{agent_listeners_toml(base / "state", api, metrics)}
[rpz]
zone = "{ZONE}"
exception_zone = "{EXCEPTIONS}"
canary_name = "{CANARY}"
soa_refresh = {SOA_REFRESH}
soa_retry = {SOA_RETRY}
verify_interval_seconds = 5
serial_grace_seconds = 5
{fragment}"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("fleet-rendered")
    inventory = loopback_inventory(base, resolver_kinds(RESOLVERS), secondaries_per_region=2)
    rpz = RpzSettings(zone=ZONE, exception_zone=EXCEPTIONS, canary=CANARY)
    fleet = start_fleet(base, inventory, rpz, shipped_templates(), parallel=4)
    try:
        api, metrics = free_port(udp=False), free_port(udp=False)
        config = base / "edgeagent.toml"
        fragment = (base / "agent" / "fleet.toml").read_text()
        config.write_text(agent_config(base, fragment, api, metrics))
        analyst = create_token(config, "analyst", "fleet-analyst")
        noc = create_token(config, "noc", "fleet-noc")
        with running_agent(config, metrics, base / "agent.log"):
            e = Env(fleet, f"http://{HOST}:{api}", analyst, noc)
            # The agent's first publish reaches both primaries with one serial.
            wait_for(
                "the first publish at both primaries",
                lambda: e.primaries_agree() not in (None, 1),
                30,
            )
            yield e
    finally:
        fleet.stop()


def test_a_decision_is_blocked_at_every_resolver_of_every_kind(env: Env) -> None:
    kinds = {r.kind for r in env.fleet.inventory.resolvers}
    assert kinds == {"bind", "unbound", "powerdns", "knot"}
    assert len(env.fleet.inventory.resolvers) >= 30
    env.decide("fleet-render-one.example")
    took = env.blocked_everywhere("fleet-render-one.example", 20)
    assert took < 15, took
    # The same version has the same serial at both primaries (the agent UPDATEs them in
    # turn, so the second may trail the first by a moment), and every resolver serves it
    # (the canary's TXT).
    wait_for("both primaries at one serial", env.primaries_agree, 15)
    env.converged(15)


def test_a_dead_primary_secondary_and_resolver_neither_stop_nor_stay_behind(env: Env) -> None:
    inv = env.fleet.inventory
    victims = [
        inv.primaries[0].name,
        inv.secondaries[0].name,
        next(r.name for r in inv.resolvers if r.kind == "bind"),
        next(r.name for r in inv.resolvers if r.kind == "unbound"),
    ]
    for name in victims:
        env.fleet.daemons[name].stop()
    env.decide("fleet-render-two.example")
    env.blocked_everywhere("fleet-render-two.example", 30)
    # Back again: each catches up without a new decision (the agent re-publishes to the
    # primary; the secondary and the resolvers transfer from what is up).
    for name in victims:
        env.fleet.daemons[name] = restart(env.fleet.daemons[name])
    env.blocked_everywhere("fleet-render-two.example", 30)
    wait_for("both primaries at one serial again", env.primaries_agree, 60)
    env.converged(60)


def test_the_fleet_keeps_blocking_through_an_outage_of_the_centre(env: Env) -> None:
    env.decide("fleet-render-three.example")
    env.blocked_everywhere("fleet-render-three.example", 30)
    inv = env.fleet.inventory
    centre = [p.name for p in inv.primaries] + [s.name for s in inv.secondaries]
    for name in centre:
        env.fleet.daemons[name].stop()
    # A resolver restarted while the centre is down starts from its copy on disk.
    bind = next(r.name for r in inv.resolvers if r.kind == "bind")
    env.fleet.daemons[bind].stop()
    env.fleet.daemons[bind] = restart(env.fleet.daemons[bind])
    knot = next(r.name for r in inv.resolvers if r.kind == "knot")
    for name in (f"{knot}-knotd", knot):
        env.fleet.daemons[name].stop()
    start_resolver(env.fleet, knot)
    # Many refresh (2 s) and retry (1 s) cycles, PowerDNS asking every second: every
    # resolver still blocks every name and serves the canary.
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        for name in ("fleet-render-one.example", "fleet-render-three.example"):
            assert env.not_blocking(name) == [], name
        assert all(r.blocked for r in query_all(env.targets(), CANARY, 1.0))
        time.sleep(2)
    for name in centre:
        env.fleet.daemons[name] = restart(env.fleet.daemons[name])
    env.decide("fleet-render-four.example")
    env.blocked_everywhere("fleet-render-four.example", 60)
