"""A name with ``_`` never owns address records (a diversion) in the policy zone.

BIND's check-names refuses a whole zone (``named-checkzone -k fail``, as the publishers
run it) and the hidden primary an UPDATE when one ``A``/``AAAA`` owner is not a host
name: one hotline URL on ``foo_bar.example`` used to stop every publish. Such owners are
left out and counted; ``CNAME`` actions keep them (check-names does not apply). The
incremental delta decides exactly as the full compile does.
"""

from __future__ import annotations

import pytest

from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.rpz.compiler import (
    RpzSettings,
    StatsCounter,
    diff_records,
    policy_records,
)
from edgeagent.rpz.delta import policy_delta

SETTINGS = RpzSettings(
    proxy_ipv4="192.0.2.10",
    proxy_ipv6="2001:db8::10",
    source_actions={"divert": "divert", "nx": "nxdomain"},
)


def _state(version: int, *blocks: tuple[Scope, str, str]) -> DesiredState:
    entries = [Entry(Indicator.parse(scope, v), Action.BLOCK, src) for scope, v, src in blocks]
    return DesiredState(version, tuple(sorted(entries, key=lambda e: e.indicator)), ())


def _owners(state: DesiredState) -> tuple[set[str], StatsCounter]:
    counter = StatsCounter()
    records = list(policy_records(state, SETTINGS, 1, counter))
    return {owner for owner, _, _ in records}, counter


@pytest.mark.parametrize(
    ("blocks", "owner", "field"),
    [
        ((Scope.URL, "http://foo_bar.example/listed.html", "x"), "foo_bar.example", "ndns"),
        ((Scope.HOST, "a_b.example", "divert"), "a_b.example", "refused"),
        ((Scope.DOMAIN, "_dmarc.example", "divert"), "*._dmarc.example", "refused"),
    ],
)
def test_address_owners_with_underscore_are_left_out_and_counted(
    blocks: tuple[Scope, str, str], owner: str, field: str
) -> None:
    owners, counter = _owners(_state(1, blocks))
    assert owner not in owners
    counted = counter.not_enforceable_at_dns if field == "ndns" else counter.refused_name
    assert counted == 1


def test_cname_actions_keep_underscore_owners_and_divert_keeps_host_names() -> None:
    owners, counter = _owners(
        _state(
            1,
            (Scope.DOMAIN, "_dmarc.example", "nx"),
            (Scope.HOST, "a_b.example", "nx"),
            (Scope.URL, "http://plain-host.example/listed.html", "x"),
        )
    )
    assert {"_dmarc.example", "*._dmarc.example", "a_b.example", "plain-host.example"} <= owners
    assert counter.refused_name == counter.not_enforceable_at_dns == 0


def test_the_delta_decides_as_the_full_compile() -> None:
    old = _state(1, (Scope.URL, "http://x.a_b.example/p", "x"))
    for added in [
        (Scope.DOMAIN, "a_b.example", "divert"),
        (Scope.DOMAIN, "a_b.example", "nx"),
        (Scope.HOST, "x.a_b.example", "divert"),
        (Scope.URL, "http://ok.example/p", "x"),
    ]:
        new = _state(2, (Scope.URL, "http://x.a_b.example/p", "x"), added)
        full = diff_records(policy_records(old, SETTINGS, 1), policy_records(new, SETTINGS, 2))
        assert policy_delta(old, 1, new, 2, SETTINGS) == full, added
