"""Route diversion against the real kernel, in network namespaces this test creates.

The topology is :mod:`tests.support.netns` (fixture ``netns``): a client that holds the
policy rules (it plays the ISP router), a proxy and an origin, each answering TCP with its
role, so a probe from the client shows where a connection went.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import uuid

import pytest

from edgeagent.diversion.kernel import RouteApplyError, RouteReconciler
from edgeagent.diversion.plan import RoutePlan, RouteSettings, plan_routes
from tests.support.netns import DIRECT, DIVERTED, DIVERTED6, OURS, PROTO, TABLE, Netns, ip

pytestmark = [pytest.mark.integration, pytest.mark.netns]

HOST = "pages.example.com"  # a host with URL-level entries


def _settings(**overrides: object) -> RouteSettings:
    base: dict[str, object] = {
        "table": TABLE,
        "rule_priority": 1000,
        "ports": (80,),
        "next_hop_v4": ipaddress.IPv4Address("192.0.2.2"),
        "next_hop_v6": ipaddress.IPv6Address("2001:db8:1::2"),
        "allow_non_global": True,  # documentation addresses only, by the project's rules
        "rt_proto": PROTO,
    }
    base.update(overrides)
    return RouteSettings(**base)  # type: ignore[arg-type]


def _plan(settings: RouteSettings, *addresses: str) -> RoutePlan:
    return plan_routes({HOST: addresses}, settings)


async def test_port_80_to_diverted_address_reaches_proxy_others_go_direct(netns: Netns) -> None:
    settings = _settings()
    assert netns.probe(DIVERTED, 80) == "origin"  # before any policy

    rec = RouteReconciler(settings, netns=netns.client)
    result = await rec.reconcile(_plan(settings, DIVERTED, DIVERTED6))

    assert [str(d) for d in result.added] == [f"{DIVERTED}/32", f"{DIVERTED6}/128"]
    assert len(result.rules_added) == 2
    assert not result.failed
    assert netns.table() == {f"{DIVERTED}/32": OURS, f"{DIVERTED6}/128": OURS}
    assert netns.rules() == {("-4", 80), ("-6", 80)}
    assert netns.probe(DIVERTED, 80) == "proxy"
    assert netns.probe(DIVERTED6, 80) == "proxy"
    assert netns.probe(DIVERTED, 443) == "origin"
    assert netns.probe(DIVERTED6, 443) == "origin"
    assert netns.probe(DIRECT, 80) == "origin"

    again = await rec.reconcile(_plan(settings, DIVERTED, DIVERTED6))
    assert not again.changed
    assert again.installed == 2


async def test_policy_change_removes_route(netns: Netns) -> None:
    settings = _settings()
    rec = RouteReconciler(settings, netns=netns.client)
    await rec.reconcile(_plan(settings, DIVERTED))
    assert netns.probe(DIVERTED, 80) == "proxy"

    result = await rec.reconcile(_plan(settings, DIRECT))

    assert [str(d) for d in result.removed] == [f"{DIVERTED}/32"]
    assert [str(d) for d in result.added] == [f"{DIRECT}/32"]
    assert netns.table() == {f"{DIRECT}/32": OURS}
    assert netns.probe(DIVERTED, 80) == "origin"


async def test_manual_deletion_of_route_and_rule_is_repaired(netns: Netns) -> None:
    settings = _settings()
    rec = RouteReconciler(settings, netns=netns.client)
    plan = _plan(settings, DIVERTED)
    await rec.reconcile(plan)
    ip(netns.client, "route", "del", f"{DIVERTED}/32", "table", str(TABLE))
    ip(netns.client, "-6", "rule", "del", "priority", "1000")
    assert netns.probe(DIVERTED, 80) == "origin"

    result = await rec.reconcile(plan)

    assert [str(d) for d in result.repaired] == [f"{DIVERTED}/32"]
    assert not result.added
    assert [r.family for r in result.rules_added] == [socket.AF_INET6]
    assert netns.table() == {f"{DIVERTED}/32": OURS}
    assert netns.probe(DIVERTED, 80) == "proxy"


async def test_route_with_wrong_next_hop_is_replaced(netns: Netns) -> None:
    settings = _settings()
    rec = RouteReconciler(settings, netns=netns.client)
    plan = _plan(settings, DIVERTED)
    await rec.reconcile(plan)
    # Someone points our route elsewhere, keeping our protocol mark.
    ip(
        netns.client, "route", "replace", f"{DIVERTED}/32", "via", "198.51.100.2",
        "table", str(TABLE), "proto", OURS,
    )  # fmt: skip
    assert netns.probe(DIVERTED, 80) == "origin"

    result = await rec.reconcile(plan)

    assert [str(d) for d in result.repaired] == [f"{DIVERTED}/32"]
    assert netns.probe(DIVERTED, 80) == "proxy"


async def test_foreign_routes_are_reported_and_left_alone(netns: Netns) -> None:
    settings = _settings()
    ip(netns.client, "route", "add", "203.0.113.30/32", "via", "198.51.100.2", "table", str(TABLE))
    # An operator's route at a destination the plan wants: it wins, it is not replaced.
    ip(netns.client, "route", "add", f"{DIRECT}/32", "via", "198.51.100.2", "table", str(TABLE))
    rec = RouteReconciler(settings, netns=netns.client)

    result = await rec.reconcile(_plan(settings, DIVERTED, DIRECT))

    foreign = {str(f.destination): f for f in result.foreign}
    assert set(foreign) == {"203.0.113.30/32", f"{DIRECT}/32"}
    assert foreign[f"{DIRECT}/32"].conflicts
    assert not foreign["203.0.113.30/32"].conflicts
    assert foreign[f"{DIRECT}/32"].gateway == "198.51.100.2"
    assert [str(d) for d in result.added] == [f"{DIVERTED}/32"]
    table = netns.table()
    assert table["203.0.113.30/32"] != OURS
    assert table[f"{DIRECT}/32"] != OURS
    assert table[f"{DIVERTED}/32"] == OURS
    assert netns.probe(DIRECT, 80) == "origin"

    withdrawn = await rec.withdraw()
    assert [str(d) for d in withdrawn.removed] == [f"{DIVERTED}/32"]
    assert set(netns.table()) == {"203.0.113.30/32", f"{DIRECT}/32"}
    assert netns.rules() == set()


async def test_dry_run_reports_and_changes_nothing(netns: Netns) -> None:
    settings = _settings(dry_run=True)
    rec = RouteReconciler(settings, netns=netns.client)

    result = await rec.reconcile(_plan(settings, DIVERTED))

    assert result.dry_run
    assert [str(d) for d in result.added] == [f"{DIVERTED}/32"]
    assert len(result.rules_added) == 2
    assert netns.table() == {}
    assert netns.rules() == set()
    assert netns.probe(DIVERTED, 80) == "origin"

    # The same reconciler applies for real when asked to.
    applied = await rec.reconcile(_plan(settings, DIVERTED), dry_run=False)
    assert not applied.dry_run
    assert netns.probe(DIVERTED, 80) == "proxy"
    removal = await rec.reconcile(_plan(settings), dry_run=True)
    assert [str(d) for d in removal.removed] == [f"{DIVERTED}/32"]
    assert netns.table() == {f"{DIVERTED}/32": OURS}


async def test_missing_namespace_is_an_error_not_a_new_namespace() -> None:
    name = f"ea-{uuid.uuid4().hex[:8]}-absent"
    rec = RouteReconciler(_settings(), netns=name)
    try:
        with pytest.raises(RouteApplyError):
            await rec.reconcile(RoutePlan(routes=()))
        listing = subprocess.run(
            ["ip", "netns", "list"], check=True, capture_output=True, text=True, timeout=10
        ).stdout
        assert name not in listing
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=10)
