"""Policy merge and lookup: pure functions over frozen values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.config import BUNDLED_LISTS_DIR
from edgeagent.guard import Guard
from edgeagent.model import Action, Entry, Indicator, Scope
from edgeagent.policy import BasePolicy, PolicyIndex, merge, overlay


@pytest.fixture(scope="module")
def guard() -> Guard:
    return Guard.load(Path(BUNDLED_LISTS_DIR) / "protected")


def entry(scope: str, value: str, action: str = "block", source: str = "feed-a", **kw) -> Entry:
    return Entry(Indicator.parse(scope, value), Action(action), source, **kw)


def test_merge_deduplicates_and_names_every_source(guard: Guard) -> None:
    state = merge(
        7,
        [
            entry("domain", "bad.example", source="police"),
            entry("domain", "BAD.example.", source="hotline"),
            entry("url", "http://mixed.example/page", source="hotline"),
        ],
        guard,
    )
    assert state.version == 7
    assert [e.indicator.value for e in state.blocks] == ["bad.example", "http://mixed.example/page"]
    assert state.sources[Indicator(Scope.DOMAIN, "bad.example")] == ("police", "hotline")
    assert state.count_by_scope() == {"domain": 1, "url": 1}


def test_public_suffixes_and_root_never_enter_the_policy(guard: Guard) -> None:
    state = merge(
        1, [entry("domain", "com"), entry("domain", "co.uk"), entry("host", "ok.example")], guard
    )
    assert [e.indicator.value for e in state.blocks] == ["ok.example"]
    assert state.refused == {"public suffix": 2}


def test_wide_allows_never_enter_the_policy(guard: Guard) -> None:
    # An allow stored before the guard judged allows (or from a feed) is dropped too.
    state = merge(
        1,
        [
            entry("domain", "listed.example"),
            entry("domain", "test", action="allow", source="decision:1"),
            entry("cidr", "0.0.0.0/1", action="allow", source="decision:2"),
            entry("host", "listed.example", action="allow", source="decision:3"),
        ],
        guard,
    )
    assert [e.indicator.value for e in state.blocks] == ["listed.example"]
    assert [e.indicator.value for e in state.allows] == ["listed.example"]
    assert state.refused == {"public suffix": 1, "prefix too short": 1}


def test_allow_removes_the_same_block_and_is_kept_for_passthru(guard: Guard) -> None:
    state = merge(
        2,
        [
            entry("domain", "shared.example"),
            entry("host", "shared.example"),
            entry("host", "shared.example", action="allow", source="decision:4"),
        ],
        guard,
    )
    assert [(e.indicator.scope, e.indicator.value) for e in state.blocks] == [
        (Scope.DOMAIN, "shared.example")
    ]
    assert [e.indicator.value for e in state.allows] == ["shared.example"]


def test_expired_entries_are_dropped(guard: Guard) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    state = merge(
        3,
        [
            entry("host", "old.example", expires_at=now - timedelta(seconds=1)),
            entry("host", "new.example", expires_at=now + timedelta(days=1)),
        ],
        guard,
        now=now,
    )
    assert [e.indicator.value for e in state.blocks] == ["new.example"]


@pytest.fixture(scope="module")
def index(guard: Guard) -> PolicyIndex:
    return PolicyIndex(
        merge(
            1,
            [
                entry("domain", "whole.example", source="police"),
                entry("host", "one.example"),
                entry("url", "http://mixed.example/bad/page.html"),
                entry("url-prefix", "http://mixed.example/gallery/"),
                entry("cidr", "192.0.2.0/24"),
                entry("host", "ok.whole.example", action="allow", source="decision:9"),
            ],
            guard,
        )
    )


def test_domain_entry_blocks_subdomains_host_entry_does_not(index: PolicyIndex) -> None:
    assert index.explain("deep.sub.whole.example").dns == "block"
    assert index.explain("one.example").dns == "block"
    assert index.explain("sub.one.example").dns == "none"


def test_url_entry_diverts_the_host_and_stops_only_that_page(index: PolicyIndex) -> None:
    listed = index.explain("http://MIXED.example/bad/./page.html")
    assert (listed.dns, listed.proxy) == ("divert", "stop-page")
    sibling = index.explain("http://mixed.example/good.html")
    assert (sibling.dns, sibling.proxy) == ("divert", "pass")
    name_only = index.explain("mixed.example")
    assert name_only.dns == "divert"  # never widened to a block


def test_url_prefix_matches_at_any_depth(index: PolicyIndex) -> None:
    assert index.explain("http://mixed.example/gallery/a/b/c.jpg?x=1").proxy == "stop-page"
    assert index.explain("http://mixed.example/galleryx").proxy == "pass"


def test_addresses_and_allows(index: PolicyIndex) -> None:
    assert index.explain("192.0.2.44").dns == "block"
    assert index.explain("198.51.100.1").dns == "none"
    allowed = index.explain("ok.whole.example")
    assert allowed.dns == "passthru"
    assert allowed.matches[0].entry.source == "decision:9"


def test_unlisted_name(index: PolicyIndex) -> None:
    t = index.explain("clean.example")
    assert (t.dns, t.proxy, t.matches) == ("none", "pass", ())


def test_hashed_entries_match_at_the_proxy_only(guard: Guard) -> None:
    from edgeagent import canon

    digest = canon.expression_hash("hashed.example/secret/page.html").hex()
    state = merge(1, [entry("url-hash", digest.upper(), source="hashed-feed")], guard)
    assert state.blocks[0].indicator.value == digest
    treatment = PolicyIndex(state).explain("http://HASHED.example/secret/page.html")
    assert (treatment.dns, treatment.proxy) == ("none", "stop-page")
    assert PolicyIndex(state).explain("http://hashed.example/other").proxy == "pass"


def test_a_malformed_digest_is_refused() -> None:
    from edgeagent.errors import InvalidTarget

    with pytest.raises(InvalidTarget, match="SHA-256"):
        Indicator.parse("url-hash", "abc123")


_values = st.sampled_from(["a.example", "b.example", "c.example", "x.b.example"])
_entries = st.builds(
    entry,
    st.sampled_from(["domain", "host"]),
    _values,
    st.sampled_from(["block", "allow"]),
    st.sampled_from(["feed-a", "feed-b", "decision:1", "decision:2"]),
)


@settings(max_examples=200, deadline=None)
@given(feeds=st.lists(_entries, max_size=12), decisions=st.lists(_entries, max_size=6))
def test_overlay_equals_a_full_merge(
    guard: Guard, feeds: list[Entry], decisions: list[Entry]
) -> None:
    full = merge(5, [*decisions, *feeds], guard)
    fast = overlay(BasePolicy.of(merge(0, feeds, guard)), decisions, guard, 5)
    assert fast.blocks == full.blocks
    assert fast.allows == full.allows
    for e in full.blocks + full.allows:
        assert fast.sources_of(e) == full.sources_of(e)
