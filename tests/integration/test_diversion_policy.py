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

from edgeagent.config import Settings
from edgeagent.diversion import RouteDiversion, diverted_hosts
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


def _settings(dns_port: int) -> Settings:
    return Settings.model_validate(
        {
            "routes": {
                "enabled": True,
                "proxy_next_hop": "192.0.2.2",
                "allow_non_global": True,
                "table": 100,
                "route_protocol": int(OURS),
                "resolvers": [{"host": "127.0.0.1", "port": dns_port}],
            }
        }
    )


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
        div = RouteDiversion(_settings(dns.port), metrics, ["cdn.example.com"], netns=netns.client)
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
