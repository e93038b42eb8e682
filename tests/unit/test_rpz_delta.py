"""The O(change) delta must equal the full record diff, interactions included."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.rpz.compiler import (
    RpzAction,
    RpzSettings,
    diff_records,
    exception_records,
    policy_records,
)
from edgeagent.rpz.delta import changed_indicators, exception_delta, policy_delta

PROXY = RpzSettings(
    proxy_ipv4="192.0.2.80",
    stop_page_host="stop.example",
    source_actions={"decision": RpzAction.STOP_PAGE, "iwf": RpzAction.DIVERT},
)
PLAIN = RpzSettings(stop_page_host="stop.example", source_actions={"decision": RpzAction.STOP_PAGE})

# A small universe so that random policies collide: domains shadowing hosts and URL
# hosts, ip/cidr twins, a name equal to the canary's parent, a refused cidr.
NAMES = ("a.example", "b.a.example", "c.b.a.example", "example", "x.example.org")
UNIVERSE = (
    *(Indicator(Scope.DOMAIN, n) for n in NAMES),
    *(Indicator(Scope.HOST, n) for n in NAMES),
    *(Indicator(Scope.URL, f"http://{n}/p") for n in NAMES),
    Indicator(Scope.URL, "https://b.a.example:8443/q"),
    Indicator(Scope.URL_PREFIX, "http://c.b.a.example/dir/"),
    Indicator(Scope.URL, "http://192.0.2.9/x"),
    Indicator(Scope.URL_HASH, "ab" * 32),
    Indicator(Scope.IP, "192.0.2.1"),
    Indicator(Scope.CIDR, "192.0.2.1/32"),
    Indicator(Scope.CIDR, "192.0.2.0/24"),
    Indicator(Scope.CIDR, "10.0.0.0/8"),
    Indicator(Scope.IP, "2001:db8::1"),
    Indicator(Scope.CIDR, "2001:db8::1/128"),
    Indicator(Scope.CIDR, "2001:db8::/48"),
)
SOURCES = ("feed", "decision:1", "iwf")
# A few changes to a policy: set an indicator's source, or remove it (None).
changes = st.lists(
    st.tuples(st.sampled_from(UNIVERSE), st.none() | st.sampled_from(SOURCES)), max_size=4
)

policies = st.dictionaries(
    st.sampled_from(UNIVERSE), st.sampled_from(SOURCES), max_size=len(UNIVERSE)
)


def _entries(d: dict[Indicator, str], action: Action) -> tuple[Entry, ...]:
    return tuple(Entry(i, action, s) for i, s in sorted(d.items()))


def _derive(old: tuple[Entry, ...], d: dict[Indicator, str], action: Action) -> tuple[Entry, ...]:
    """Like the policy engine: unchanged entries are the very same objects."""
    keep = {e.indicator: e for e in old if d.get(e.indicator) == e.source}
    return tuple(keep.get(i) or Entry(i, action, s) for i, s in sorted(d.items()))


def _state(v: int, blocks: tuple[Entry, ...], allows: tuple[Entry, ...] = ()) -> DesiredState:
    return DesiredState(v, blocks, allows)


def _apply(
    d: dict[Indicator, str], edits: list[tuple[Indicator, str | None]]
) -> dict[Indicator, str]:
    out = dict(d)
    for ind, src in edits:
        if src is None:
            out.pop(ind, None)
        else:
            out[ind] = src
    return out


@settings(max_examples=600, deadline=None)
@given(policies, changes, policies, changes, st.booleans(), st.booleans())
def test_delta_equals_full_diff(
    b1: dict[Indicator, str],
    b_edits: list[tuple[Indicator, str | None]],
    a1: dict[Indicator, str],
    a_edits: list[tuple[Indicator, str | None]],
    shared: bool,
    proxy: bool,
) -> None:
    s = PROXY if proxy else PLAIN
    b2, a2 = _apply(b1, b_edits), _apply(a1, a_edits)
    if not proxy:
        b1 = {i: src for i, src in b1.items() if src != "iwf"}
        b2 = {i: src for i, src in b2.items() if src != "iwf"}
    old = _state(1, _entries(b1, Action.BLOCK), _entries(a1, Action.ALLOW))
    if shared:
        new = _state(
            2, _derive(old.blocks, b2, Action.BLOCK), _derive(old.allows, a2, Action.ALLOW)
        )
    else:
        new = _state(2, _entries(b2, Action.BLOCK), _entries(a2, Action.ALLOW))
    got = policy_delta(old, 7, new, 8, s)
    assert got is not None
    assert got == diff_records(policy_records(old, s, 7), policy_records(new, s, 8))
    got_x = exception_delta(old, new, s)
    assert got_x is not None
    assert got_x == diff_records(exception_records(old, s), exception_records(new, s))


@given(policies, policies)
def test_changed_indicators_is_the_symmetric_difference(
    d1: dict[Indicator, str], d2: dict[Indicator, str]
) -> None:
    old = _entries(d1, Action.BLOCK)
    new = _derive(old, d2, Action.BLOCK)
    expected = {i for i in d1.keys() | d2.keys() if d1.get(i) != d2.get(i)}
    got = changed_indicators(old, new)
    assert got is not None
    assert set(got) == expected
    assert len(got) == len(expected)


def test_changed_indicators_gives_up_past_the_limit() -> None:
    old = tuple(Entry(Indicator(Scope.HOST, f"h{i}.example"), Action.BLOCK, "f") for i in range(50))
    assert changed_indicators(old, (), limit=10) is None
    assert changed_indicators((), old, limit=10) is None
    assert changed_indicators(old, old, limit=0) == []


def test_canary_collision_falls_back_to_the_full_diff() -> None:
    canary = Entry(Indicator(Scope.HOST, PLAIN.canary), Action.BLOCK, "feed")
    assert policy_delta(_state(1, ()), 1, _state(2, (canary,)), 2, PLAIN) is None


def test_one_change_in_a_large_policy_is_cheap() -> None:
    n = 200_000
    blocks = tuple(
        Entry(Indicator(Scope.DOMAIN, f"d{i:07d}.example.com"), Action.BLOCK, "feed")
        for i in range(n)
    )
    added = Entry(Indicator(Scope.HOST, "one.example.net"), Action.BLOCK, "decision:1")
    new_blocks = tuple(sorted((*blocks, added), key=lambda e: e.indicator))
    started = time.perf_counter()
    removed, adds = policy_delta(_state(1, blocks), 1, _state(2, new_blocks), 2, PLAIN) or (
        frozenset(),
        frozenset(),
    )
    seconds = time.perf_counter() - started
    assert {r[0] for r in adds} == {"one.example.net", PLAIN.canary}
    assert len(removed) == 1  # the old canary TXT
    assert seconds < 0.1  # the full diff takes about 0.5 s here
