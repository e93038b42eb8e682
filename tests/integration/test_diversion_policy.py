"""Route diversion driven by the policy: URL entries -> real DNS answers -> kernel routes.

Uses the namespaces of :mod:`tests.support.netns` (client holds the rules) and a real
authoritative ``named`` on loopback standing in for the resolver without the policy.
``listed.example.com`` has a URL-level entry and resolves to 203.0.113.10; ``cdn.example.com``
(protected) resolves to 203.0.113.20, and so does ``sneaky.example.com``, a listed site
that points its name at the protected third party's address: that address is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeagent.diversion.enforcer import (
    DiversionEnforcer,
    DiversionEnforcerConfig,
    RoutesConfig,
    diverted_hosts,
)
from edgeagent.enforcement.base import EnforcerContext, ReloadOutcome
from edgeagent.lab.resolvers import start_authoritative
from edgeagent.metrics import Metrics
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from tests.support.netns import DIRECT, DIVERTED, OURS, Netns

pytestmark = [pytest.mark.integration, pytest.mark.netns]

ZONE = """$TTL 60
@ IN SOA ns.example.com. hostmaster.example.com. 1 60 60 600 60
@ IN NS ns.example.com.
ns IN A 127.0.0.1
listed IN A 203.0.113.10
cdn IN A 203.0.113.20
sneaky IN A 203.0.113.20
"""


def _state(version: int, *urls: str) -> DesiredState:
    blocks = sorted(
        (Entry(Indicator.parse(Scope.URL, u), Action.BLOCK, "hotline") for u in urls),
        key=lambda e: e.indicator,
    )
    blocks.append(Entry(Indicator.parse(Scope.DOMAIN, "blocked.example.com"), Action.BLOCK, "p"))
    return DesiredState(version, tuple(sorted(blocks, key=lambda e: e.indicator)), ())


def _config(dns_port: int, **changes: object) -> DiversionEnforcerConfig:
    routes = {
        "enabled": True,
        "proxy_next_hop": "192.0.2.2",
        "allow_non_global": True,
        "table": 100,
        "route_protocol": int(OURS),
        "resolvers": [{"host": "127.0.0.1", "port": dns_port}],
        **changes,
    }
    return DiversionEnforcerConfig(routes=RoutesConfig.model_validate(routes))


def _context(tmp_path: Path, metrics: Metrics) -> EnforcerContext:
    return EnforcerContext(tmp_path, metrics, protected_names=("cdn.example.com",))


def test_only_url_hosts_are_diverted() -> None:
    state = _state(1, "http://listed.example.com/a.html", "http://listed.example.com/b.html")
    assert diverted_hosts(state) == ["listed.example.com"]


async def test_policy_change_moves_routes_and_spares_protected_addresses(
    netns: Netns,
    tmp_path: Path,
) -> None:
    dns = start_authoritative(tmp_path / "dns", {"example.com": ZONE})
    try:
        metrics = Metrics()
        div = DiversionEnforcer(_config(dns.port), _context(tmp_path, metrics), netns=netns.client)
        assert netns.probe(DIVERTED, 80) == "origin"

        state = _state(1, "http://listed.example.com/page.html", "http://sneaky.example.com/x.html")
        result = await div.reconcile(state)
        assert result is not None
        assert [str(d) for d in result.added] == [f"{DIVERTED}/32"]
        assert [r.reason for r in result.refused] == ["protected-address"]
        assert netns.probe(DIVERTED, 80) == "proxy"
        assert netns.probe(DIRECT, 80) == "origin"  # the protected third party stays direct
        assert metrics.routes_installed._value.get() == 1

        result = await div.reconcile(_state(2))  # the URL entry was revoked
        assert result is not None
        assert [str(d) for d in result.removed] == [f"{DIVERTED}/32"]
        assert netns.table() == {}
        assert netns.probe(DIVERTED, 80) == "origin"
    finally:
        dns.stop()


async def test_reload_moves_routes_to_a_new_table_without_a_lapse(
    netns: Netns,
    tmp_path: Path,
) -> None:
    """A new ``[routes] table``: the successor installs its routes and rules first, then
    the old table is emptied; diversion is off only when the section says so."""
    dns = start_authoritative(tmp_path / "dns", {"example.com": ZONE})
    try:
        context = _context(tmp_path, Metrics())
        old = DiversionEnforcer(_config(dns.port), context, netns=netns.client)
        state = _state(1, "http://listed.example.com/page.html")
        await old.publish(state)
        assert netns.table() == {f"{DIVERTED}/32": OURS}

        moved = await old.reload(_config(dns.port, table=101), context, state)
        assert moved.outcome is ReloadOutcome.APPLIED
        assert netns.table() == {}
        assert netns.table(101) == {f"{DIVERTED}/32": OURS}
        assert netns.rules() == set()
        assert netns.rules(101) == {("-4", 80)}
        assert netns.probe(DIVERTED, 80) == "proxy"
        assert moved.enforcer.status()["routes"]["table"] == 101

        same = await moved.enforcer.reload(_config(dns.port, table=101), context, state)
        assert (same.outcome, same.enforcer) == (ReloadOutcome.UNCHANGED, moved.enforcer)

        off = await moved.enforcer.reload(_config(dns.port, enabled=False), context, state)
        assert off.outcome is ReloadOutcome.APPLIED
        assert not off.enforcer.active
        assert (netns.table(101), netns.rules(101)) == ({}, set())
        assert netns.probe(DIVERTED, 80) == "origin"
    finally:
        dns.stop()
