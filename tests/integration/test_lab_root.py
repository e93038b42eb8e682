"""Every resolver the lab starts recurses to the lab's loopback root only
(:mod:`edgeagent.lab.root`), so test traffic never leaves the machine.

The kinds: BIND and Unbound from the resolver templates (:mod:`edgeagent.lab.resolvers`)
and a rendered fleet of BIND, Unbound, PowerDNS Recursor and Knot Resolver
(:mod:`edgeagent.lab.fleet`). Each names only the loopback root in its config; a name
outside every zone it knows is asked of that root, which refuses it: SERVFAIL at once,
not a timeout, and not NXDOMAIN (the policy's answer). A name asked before its block is
blocked once the policy arrives, at every kind (PowerDNS kept the failure in its packet
cache).
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from edgeagent.lab.daemons import HOST
from edgeagent.lab.fleet import KINDS, RunningFleet, loopback_inventory, start_fleet
from edgeagent.lab.resolvers import bootstrap_zones, start_named, start_unbound
from edgeagent.lab.root import CONF_FILES, HINTS_FILE, SERVER_NAME, loopback_root
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.render.inventory import ResolverKind
from edgeagent.render.writing import shipped_templates
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ZoneRelease
from edgeagent.rpz.publishers.bind_update import BindUpdatePublisher
from tests.support.polling import wait_for
from tests.support.resolvers import stop_all

pytestmark = pytest.mark.integration

RPZ = RpzSettings(
    zone="block.rpz.invalid", exception_zone="allow.rpz.invalid", canary="canary.edgeagent.test"
)


@dataclass(frozen=True)
class Resolver:
    name: str
    kind: ResolverKind
    port: int
    workdir: Path


@dataclass
class Env:
    resolvers: list[Resolver]
    fleet: RunningFleet

    def fleet_resolvers(self) -> list[Resolver]:
        return [r for r in self.resolvers if r.name in self.fleet.daemons]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("lab-root")
    zones = base / "zones"
    bootstrap_zones(zones, ZoneRelease(DesiredState(0, (), ()), RpzSettings(), 1))
    named = start_named(base / "named", zones)
    try:
        unbound = start_unbound(base / "unbound", zones)
    except BaseException:
        stop_all(named)
        raise
    inventory = loopback_inventory(base / "fleet", KINDS, primaries=1)
    try:
        fleet = start_fleet(base / "fleet", inventory, RPZ, shipped_templates())
    except BaseException:
        stop_all(named, unbound)
        raise
    resolvers = [
        Resolver("named", "bind", named.port, named.workdir),
        Resolver("unbound", "unbound", unbound.port, unbound.workdir),
    ] + [Resolver(r.name, r.kind, r.port, base / "fleet" / r.name) for r in inventory.resolvers]
    try:
        yield Env(resolvers, fleet)
    finally:
        fleet.stop()
        stop_all(named, unbound)


def ask(r: Resolver, name: str) -> tuple[int, float]:
    """The rcode of ``r``'s answer for ``name`` and how long it took."""
    started = time.monotonic()
    query = dns.message.make_query(name, dns.rdatatype.A)
    answer = dns.query.udp(query, HOST, port=r.port, timeout=3.0)
    return answer.rcode(), time.monotonic() - started


def test_every_resolver_names_only_the_loopback_root(env: Env) -> None:
    root = loopback_root()
    assert root is not None  # the tests run as root: port 53 is theirs
    assert ipaddress.ip_address(root.address).is_loopback
    for r in env.resolvers:
        hints = r.workdir / HINTS_FILE
        addresses = re.findall(r"\sA\s+(\S+)", hints.read_text())
        assert addresses == [root.address], r.name
        conf = (r.workdir / CONF_FILES[r.kind]).read_text()
        named_root = {
            "bind": f'zone "." {{ type hint; file "{hints}"; }};',
            "unbound": f'root-hints: "{hints}"',
            "powerdns": f"hint-file={hints}\ndont-query=\n",
            "knot": f"hints.root({{['{SERVER_NAME}'] = '{root.address}'}})",
        }[r.kind]
        assert conf.count(named_root) == 1, (r.name, conf)


def test_a_name_outside_every_zone_is_refused_by_the_loopback_root_at_once(env: Env) -> None:
    root = loopback_root()
    assert root is not None
    for r in env.resolvers:
        seen = len(root.log_text())
        rcode, took = ask(r, f"outside-{r.name}.example.net")
        assert (rcode, took < 1.0) == (dns.rcode.SERVFAIL, True), (r.name, rcode, took)

        # The root logs each question: with QNAME minimisation the resolver asks it for
        # "net." only; Knot Resolver, validating, first asks for the root's DNSKEY.
        def asked(since: int = seen) -> bool:
            return re.search(r" \S+\. [A-Z]+ IN$", root.log_text()[since:], re.M) is not None

        wait_for(f"{r.name}'s question at the loopback root", asked, 5)


def test_a_name_asked_before_its_block_is_blocked_at_every_kind(env: Env) -> None:
    name = "asked-early.example"
    fleet = env.fleet_resolvers()
    assert {r.kind for r in fleet} == set(KINDS)
    for r in fleet:
        assert ask(r, name)[0] == dns.rcode.SERVFAIL, r.name
    block = Entry(Indicator.parse(Scope.HOST, name), Action.BLOCK, "decision:1")
    primary = env.fleet.inventory.primaries[0]
    publisher = BindUpdatePublisher(
        "primary",
        server=primary.address,
        port=primary.port,
        key_name=env.fleet.update_key,
        secret=env.fleet.update_secret,
    )
    publisher.publish(ZoneRelease(DesiredState(1, (block,), ()), RPZ, 2))
    for r in fleet:
        wait_for(
            f"{name} blocked at {r.name}", lambda r=r: ask(r, name)[0] == dns.rcode.NXDOMAIN, 15
        )
