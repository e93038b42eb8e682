"""Guardrails of the route plan (pure) and the reconciler's refusal of oversize plans."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.diversion.enforcer import RoutesConfig, route_settings
from edgeagent.diversion.kernel import ReconcileResult, RouteReconciler
from edgeagent.diversion.plan import (
    REASON_CDN_RANGE,
    REASON_INVALID,
    REASON_NEXT_HOP,
    REASON_NO_NEXT_HOP,
    REASON_NOT_GLOBAL,
    REASON_NOT_ROUTABLE,
    REASON_PREFIX_TOO_SHORT,
    REASON_PROTECTED_ADDRESS,
    REASON_PROTECTED_RANGE,
    PlannedRoute,
    RouteLimitExceeded,
    RoutePlan,
    RouteSettings,
    plan_routes,
)
from edgeagent.errors import GuardrailViolation, short_hash

HOP4 = ipaddress.IPv4Address("192.0.2.2")
HOP6 = ipaddress.IPv6Address("2001:db8:1::2")
LAB = RouteSettings(next_hop_v4=HOP4, next_hop_v6=HOP6, allow_non_global=True)


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def _reasons(plan: RoutePlan) -> dict[str, str]:
    """Refused destination (or "-") -> reason."""
    return {str(r.destination) if r.destination else "-": r.reason for r in plan.refused}


def test_one_route_per_destination_shared_by_hosts_v4_first() -> None:
    plan = plan_routes(
        {
            "a.example.com": ["2001:db8:3::10", "203.0.113.10"],
            "b.example.net": [ipaddress.ip_address("203.0.113.10"), "203.0.113.11"],
        },
        LAB,
    )

    assert [str(r.destination) for r in plan.routes] == [
        "203.0.113.10/32",
        "203.0.113.11/32",
        "2001:db8:3::10/128",
    ]
    assert [r.next_hop for r in plan.routes] == [HOP4, HOP4, HOP6]
    shared = plan.routes[0]
    assert shared.host_refs == tuple(
        sorted([short_hash("a.example.com"), short_hash("b.example.net")])
    )
    assert plan.refused == ()


def test_protected_and_cdn_ranges_are_never_diverted_v4_and_v6() -> None:
    s = replace(
        LAB,
        protected_ranges=(_net("203.0.113.0/28"), _net("2001:db8:3::/64")),
        cdn_ranges=(_net("198.51.100.128/25"),),
    )
    plan = plan_routes(
        {"a.example.com": ["203.0.113.5", "2001:db8:3::5", "198.51.100.200", "203.0.113.99"]}, s
    )

    assert [str(r.destination) for r in plan.routes] == ["203.0.113.99/32"]
    assert _reasons(plan) == {
        "203.0.113.5/32": REASON_PROTECTED_RANGE,
        "2001:db8:3::5/128": REASON_PROTECTED_RANGE,
        "198.51.100.200/32": REASON_CDN_RANGE,
    }
    assert plan.refused_by_reason() == {REASON_PROTECTED_RANGE: 2, REASON_CDN_RANGE: 1}


def test_network_overlapping_a_protected_range_is_refused() -> None:
    s = replace(LAB, protected_ranges=(_net("203.0.113.64/30"),))
    plan = plan_routes({"a.example.com": ["203.0.113.0/24", "203.0.113.128/25"]}, s)

    assert [str(r.destination) for r in plan.routes] == ["203.0.113.128/25"]
    assert _reasons(plan) == {"203.0.113.0/24": REASON_PROTECTED_RANGE}


def test_address_of_a_protected_name_learned_from_dns_is_refused_other_addresses_kept() -> None:
    # The listed site points its name at a popular third party's address.
    plan = plan_routes(
        {"listed.example.com": ["203.0.113.50", "203.0.113.51", "2001:db8:9::1"]},
        LAB,
        protected_addresses=["203.0.113.50", "2001:db8:9::1", "not an address"],
    )

    assert [str(r.destination) for r in plan.routes] == ["203.0.113.51/32"]
    assert _reasons(plan) == {
        "203.0.113.50/32": REASON_PROTECTED_ADDRESS,
        "2001:db8:9::1/128": REASON_PROTECTED_ADDRESS,
    }
    assert all(r.host_ref == short_hash("listed.example.com") for r in plan.refused)


def test_more_routes_than_the_maximum_refuses_the_whole_plan() -> None:
    s = replace(LAB, max_routes=3)
    hosts = {f"h{i}.example.com": [f"203.0.113.{i}"] for i in range(1, 5)}

    with pytest.raises(RouteLimitExceeded) as caught:
        plan_routes(hosts, s)

    assert isinstance(caught.value, GuardrailViolation)
    assert (caught.value.planned, caught.value.limit) == (4, 3)
    assert "example" not in str(caught.value)
    assert "203.0.113" not in str(caught.value)


def test_the_maximum_counts_routes_not_refusals_or_duplicates() -> None:
    s = replace(LAB, max_routes=2, protected_ranges=(_net("203.0.113.200/29"),))
    plan = plan_routes(
        {
            "a.example.com": ["203.0.113.1", "203.0.113.2", "203.0.113.201"],
            "b.example.com": ["203.0.113.1", "203.0.113.202"],
        },
        s,
    )
    assert len(plan.routes) == 2
    assert len(plan.refused) == 2


def test_minimum_prefix_length_v4_and_v6() -> None:
    s = replace(LAB, min_prefix_v4=24, min_prefix_v6=48)
    plan = plan_routes(
        {
            "a.example.com": [
                "198.51.100.0/24",
                "203.0.112.0/23",
                "2001:db8:5::/48",
                "2001:db8:4::/47",
            ]
        },
        s,
    )

    assert [str(r.destination) for r in plan.routes] == ["198.51.100.0/24", "2001:db8:5::/48"]
    assert _reasons(plan) == {
        "203.0.112.0/23": REASON_PREFIX_TOO_SHORT,
        "2001:db8:4::/47": REASON_PREFIX_TOO_SHORT,
    }


def test_non_global_space_is_refused_unless_allowed() -> None:
    strict = replace(LAB, allow_non_global=False)
    plan = plan_routes({"a.example.com": ["203.0.113.7", "2001:db8:3::7"]}, strict)

    assert plan.routes == ()
    assert set(_reasons(plan).values()) == {REASON_NOT_GLOBAL}


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "169.254.1.1", "224.0.0.251", "0.0.0.0", "255.255.255.255", "::1", "fe80::1"],
)
def test_special_addresses_are_never_routable_even_in_a_lab(address: str) -> None:
    plan = plan_routes({"a.example.com": [address]}, LAB)

    assert plan.routes == ()
    assert _reasons(plan) == {str(_net(address)): REASON_NOT_ROUTABLE}


def test_network_covering_the_proxy_next_hop_is_refused() -> None:
    plan = plan_routes({"a.example.com": ["192.0.2.0/24", "192.0.2.2", "2001:db8:1::/64"]}, LAB)

    assert plan.routes == ()
    assert set(_reasons(plan).values()) == {REASON_NEXT_HOP}


def test_family_without_next_hop_is_refused() -> None:
    s = replace(LAB, next_hop_v6=None)
    plan = plan_routes({"a.example.com": ["203.0.113.8", "2001:db8:3::8"]}, s)

    assert [str(r.destination) for r in plan.routes] == ["203.0.113.8/32"]
    assert _reasons(plan) == {"2001:db8:3::8/128": REASON_NO_NEXT_HOP}


def test_invalid_input_is_refused_without_echoing_it() -> None:
    plan = plan_routes({"a.example.com": ["pages.example.com", "203.0.113.5/24", ""]}, LAB)

    assert plan.routes == ()
    assert [(r.destination, r.reason) for r in plan.refused] == [(None, REASON_INVALID)]
    text = repr(plan) + " ".join(r.describe() for r in plan.refused)
    assert "example" not in text


def test_ipv4_mapped_address_becomes_an_ipv4_route() -> None:
    plan = plan_routes({"a.example.com": ["::ffff:203.0.113.9"]}, LAB)

    assert [str(r.destination) for r in plan.routes] == ["203.0.113.9/32"]


def test_refusal_description_names_only_hashes() -> None:
    s = replace(LAB, protected_ranges=(_net("203.0.113.0/24"),))
    plan = plan_routes({"secret.example.com": ["203.0.113.4"]}, s)

    (refusal,) = plan.refused
    described = refusal.describe()
    assert short_hash("secret.example.com") in described
    assert short_hash("203.0.113.4/32") in described
    assert "secret" not in described
    assert "203.0.113" not in described
    assert REASON_PROTECTED_RANGE in described


@pytest.mark.parametrize(
    "bad",
    [
        {"table": 254},
        {"table": 0},
        {"rt_proto": 4},
        {"rt_proto": 256},
        {"ports": ()},
        {"ports": (0,)},
        {"max_routes": 0},
        {"min_prefix_v4": 33},
        {"rule_priority": 32766},
    ],
)
def test_settings_refuse_values_that_would_touch_the_kernels_own(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="routes"):
        replace(LAB, **bad)  # type: ignore[arg-type]


def test_settings_from_config_section() -> None:
    cfg = RoutesConfig(
        enabled=True,
        proxy_next_hop="192.0.2.2",
        resolvers=({"host": "192.0.2.53"},),  # type: ignore[arg-type]
        ports=(8080, 80, 80),
        table=101,
        protected_ranges=("203.0.113.0/26",),  # type: ignore[arg-type]
        dry_run=True,
        proxy_next_hop_v6="2001:db8:1::2",
        cdn_ranges=("198.51.100.0/25",),  # type: ignore[arg-type]
    )
    s = route_settings(cfg)

    assert s.next_hop_v4 == HOP4
    assert s.next_hop_v6 == HOP6
    assert s.ports == (80, 8080)
    assert s.table == 101
    assert s.dry_run is True
    assert s.protected_ranges == (_net("203.0.113.0/26"),)
    assert s.cdn_ranges == (_net("198.51.100.0/25"),)
    assert s.families() == (2, 10)


def test_result_counts_and_changed() -> None:
    quiet = ReconcileResult(dry_run=False, installed=3)
    busy = ReconcileResult(dry_run=True, added=(_net("203.0.113.1/32"),), installed=0)

    assert not quiet.changed
    assert busy.changed
    assert busy.counts()["added"] == 1
    assert quiet.counts()["installed"] == 3


async def test_reconciler_refuses_an_oversize_plan_before_touching_the_kernel() -> None:
    s = replace(LAB, max_routes=1)
    routes = tuple(
        PlannedRoute(_net(f"203.0.113.{i}/32"), HOP4, (short_hash("a.example.com"),))
        for i in (1, 2)
    )
    # A namespace name that does not exist: reaching netlink would raise another error.
    rec = RouteReconciler(s, netns="edgeagent-unit-test-never-created")

    with pytest.raises(RouteLimitExceeded):
        await rec.reconcile(RoutePlan(routes=routes))


_doc_v4 = st.integers(0, 255).map(lambda i: f"203.0.113.{i}")
_doc_v6 = st.integers(0, 0xFFFF).map(lambda i: f"2001:db8:3::{i:x}")
_prefix = st.sampled_from(["203.0.113.0/26", "203.0.113.128/27", "2001:db8:3::/120"])


@settings(max_examples=200, deadline=None)
@given(
    hosts=st.dictionaries(
        st.sampled_from([f"h{i}.example.org" for i in range(6)]),
        st.lists(st.one_of(_doc_v4, _doc_v6), max_size=6),
        max_size=6,
    ),
    protected=st.lists(_prefix, max_size=3),
    third_party=st.lists(_doc_v4, max_size=4),
)
def test_property_every_input_is_routed_or_refused_never_into_protected_space(
    hosts: dict[str, list[str]], protected: list[str], third_party: list[str]
) -> None:
    s = replace(LAB, protected_ranges=tuple(_net(p) for p in protected))
    plan = plan_routes(hosts, s, protected_addresses=third_party)

    ranges = [_net(p) for p in protected] + [_net(a) for a in third_party]
    for route in plan.routes:
        dest = route.destination
        assert not any(dest.overlaps(r) for r in ranges if r.version == dest.version)
    routed = {str(r.destination) for r in plan.routes}
    refused = {str(r.destination) for r in plan.refused}
    for addresses in hosts.values():
        for a in addresses:
            assert (str(_net(a)) in routed) != (str(_net(a)) in refused)
