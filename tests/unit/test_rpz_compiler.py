"""Unit tests: RPZ compiler, zone-text helpers, serials, deltas, atomic writes."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import dns.name
import dns.zone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.atomic import remove_stale_temps, stage_file, write_atomic
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.rpz.compiler import (
    Record,
    RpzAction,
    RpzSettings,
    StatsCounter,
    compile_stats,
    diff_records,
    exception_records,
    exception_zone_text,
    policy_records,
    policy_zone_text,
)
from edgeagent.rpz.enforcer import RpzConfig, compiler_settings
from edgeagent.rpz.zonetext import next_serial, rpz_ip_owner, safe_owner, serial_gt, serial_lag

PROXY = RpzSettings(proxy_ipv4="192.0.2.80", proxy_ipv6="2001:db8::80")
CANARY = RpzSettings().canary


def block(scope: Scope, value: str, source: str = "feed") -> Entry:
    return Entry(Indicator(scope, value), Action.BLOCK, source)


def allow(scope: Scope, value: str) -> Entry:
    return Entry(Indicator(scope, value), Action.ALLOW, "decision:9")


def state(*blocks: Entry, allows: tuple[Entry, ...] = ()) -> DesiredState:
    return DesiredState(1, tuple(sorted(blocks, key=lambda e: e.indicator)), allows)


def records(s: DesiredState, cfg: RpzSettings = PROXY, serial: int = 7) -> set[Record]:
    out = set(policy_records(s, cfg, serial))
    return {r for r in out if r[0] != CANARY}


def parse(text: str, origin: str) -> dns.zone.Zone:
    return dns.zone.from_text(text, origin=origin, relativize=True, allow_include=False)


def test_domain_blocks_name_and_subdomains() -> None:
    assert records(state(block(Scope.DOMAIN, "bad.example"))) == {
        ("bad.example", "CNAME", "."),
        ("*.bad.example", "CNAME", "."),
    }


def test_host_blocks_only_the_name() -> None:
    assert records(state(block(Scope.HOST, "h.example"))) == {("h.example", "CNAME", ".")}


def test_actions_by_source() -> None:
    cfg = RpzSettings(
        proxy_ipv4="192.0.2.80",
        stop_page_host="stop.example",
        source_actions={"decision": "stop-page", "quiet": RpzAction.NODATA, "d": "divert"},
    )
    got = records(
        state(
            block(Scope.HOST, "a.example", "decision:12"),
            block(Scope.HOST, "b.example", "quiet"),
            block(Scope.HOST, "c.example", "other"),
            block(Scope.HOST, "d.example", "d"),
        ),
        cfg,
    )
    assert got == {
        ("a.example", "CNAME", "stop.example."),
        ("b.example", "CNAME", "*."),
        ("c.example", "CNAME", "."),
        ("d.example", "A", "192.0.2.80"),
    }


def test_url_diverts_host_when_proxy_configured() -> None:
    s = state(
        block(Scope.URL, "http://u.example/a"),
        block(Scope.URL_PREFIX, "http://u.example/b/"),
    )
    assert records(s) == {("u.example", "A", "192.0.2.80"), ("u.example", "AAAA", "2001:db8::80")}
    assert compile_stats(s, PROXY).by_scope == {"url": 2}


def test_url_without_proxy_is_not_enforceable_and_never_widened() -> None:
    s = state(block(Scope.URL, "http://u.example/a"), block(Scope.URL, "http://v.example/"))
    assert records(s, RpzSettings()) == set()
    assert compile_stats(s, RpzSettings()).not_enforceable_at_dns == 2


def test_block_beats_divert() -> None:
    s = state(
        block(Scope.DOMAIN, "bad.example"),
        block(Scope.HOST, "h.example"),
        block(Scope.URL, "http://x.bad.example/p"),
        block(Scope.URL, "http://bad.example/p"),
        block(Scope.URL, "http://h.example/p"),
    )
    recs = records(s)
    assert all(r[1] == "CNAME" for r in recs)
    assert compile_stats(s, PROXY).divert_shadowed == 3


def test_domain_and_host_same_name_gives_one_owner() -> None:
    s = state(block(Scope.DOMAIN, "d.example", "decision:1"), block(Scope.HOST, "d.example"))
    owners = [r[0] for r in policy_records(s, PROXY, 1)]
    assert owners.count("d.example") == 1


def test_ip_and_cidr_with_same_owner_give_one_record() -> None:
    s = state(block(Scope.IP, "192.0.2.1"), block(Scope.CIDR, "192.0.2.1/32", "decision:3"))
    assert [r[0] for r in policy_records(s, PROXY, 1)].count("32.1.2.0.192.rpz-ip") == 1


def test_unsorted_blocks_are_refused() -> None:
    s = DesiredState(1, (block(Scope.HOST, "h.example"), block(Scope.DOMAIN, "d.example")), ())
    with pytest.raises(ValueError, match="sorted"):
        list(policy_records(s, PROXY, 1))


@pytest.mark.parametrize(
    ("network", "owner"),
    [
        ("192.0.2.66/32", "32.66.2.0.192.rpz-ip"),
        ("198.51.100.0/24", "24.0.100.51.198.rpz-ip"),
        ("2001:db8::/48", "48.zz.db8.2001.rpz-ip"),
        ("2001:db8:0:6::66/128", "128.66.zz.6.0.db8.2001.rpz-ip"),
        ("2001:db8:1:2:3:4:5:6/128", "128.6.5.4.3.2.1.db8.2001.rpz-ip"),
        ("::1/128", "128.1.zz.rpz-ip"),
        ("::/0", "0.zz.rpz-ip"),
        ("2001:db8:0:1:1:0:0:1/128", "128.1.zz.1.1.0.db8.2001.rpz-ip"),
    ],
)
def test_rpz_ip_owner(network: str, owner: str) -> None:
    assert rpz_ip_owner(ipaddress.ip_network(network)) == owner


def test_ip_triggers_within_prefix_limits() -> None:
    s = state(
        block(Scope.IP, "192.0.2.66"),
        block(Scope.CIDR, "198.51.100.0/24"),
        block(Scope.CIDR, "198.51.0.0/16"),
        block(Scope.CIDR, "2001:db8:1::/48"),
        block(Scope.CIDR, "2001:db8::/32"),
        block(Scope.IP, "2001:db8::5"),
    )
    assert {r[0] for r in records(s)} == {
        "32.66.2.0.192.rpz-ip",
        "24.0.100.51.198.rpz-ip",
        "48.zz.1.db8.2001.rpz-ip",
        "128.5.zz.db8.2001.rpz-ip",
    }
    stats = compile_stats(s, PROXY)
    assert stats.refused_ip_prefix == 2
    assert stats.by_scope == {"ip": 2, "cidr": 2}


def test_allows_go_to_exception_zone() -> None:
    s = state(
        block(Scope.DOMAIN, "bad.example"),
        allows=(
            allow(Scope.DOMAIN, "ok.bad.example"),
            allow(Scope.HOST, "h.bad.example"),
            allow(Scope.IP, "192.0.2.7"),
            allow(Scope.URL, "http://bad.example/fine"),
        ),
    )
    assert set(exception_records(s, PROXY)) == {
        ("ok.bad.example", "CNAME", "rpz-passthru."),
        ("*.ok.bad.example", "CNAME", "rpz-passthru."),
        ("h.bad.example", "CNAME", "rpz-passthru."),
        ("32.7.2.0.192.rpz-ip", "CNAME", "rpz-passthru."),
    }
    stats = compile_stats(s, PROXY)
    assert (stats.allows, stats.allows_not_at_dns) == (3, 1)
    zone = parse("".join(exception_zone_text(s, PROXY, 3)), PROXY.exception_zone)
    assert zone.get_soa().serial == 3


def test_canary_carries_serial_and_zone_parses() -> None:
    s = state(block(Scope.DOMAIN, "bad.example"), block(Scope.URL, "http://u.example/"))
    counter = StatsCounter()
    text = "".join(policy_zone_text(s, PROXY, 42, counter))
    zone = parse(text, PROXY.zone)
    assert zone.get_soa().serial == 42
    txt = zone.find_rdataset(CANARY, "TXT")
    assert [r.to_text() for r in txt] == ['"edgeagent-canary serial=42"']
    # every record of the text is in the record stream, and the count matches
    parsed = {
        (n.to_text(), rds.rdtype.name, rd.to_text())
        for n, rds in zone.iterate_rdatasets()
        for rd in rds
        if rds.rdtype.name not in ("SOA", "NS")
    }
    assert parsed == set(policy_records(s, PROXY, 42))
    assert counter.freeze().records == len(parsed)


@pytest.mark.parametrize(
    "name",
    [
        "x.rpz-ip",
        "a.rpz-nsdname",
        "a" * 64 + ".example",  # label too long
        ("a" * 60 + ".") * 4 + "example",  # too long once the zone is appended
        "under score.example",
        "evil.example.",
    ],
)
def test_unfit_names_are_refused(name: str) -> None:
    s = state(block(Scope.HOST, name), block(Scope.DOMAIN, name))
    assert records(s) == set()
    assert compile_stats(s, PROXY).refused_name == 2


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([Scope.DOMAIN, Scope.HOST, Scope.URL]),
            st.text(alphabet="abz09-_.*@$;() \\\"'\t\n.", min_size=1, max_size=80),
        ),
        max_size=20,
    )
)
def test_owner_names_always_relative_and_in_zone(items: list[tuple[Scope, str]]) -> None:
    """Whatever the (possibly hostile) values, every owner is relative and the zone parses."""
    blocks = []
    for scope, raw in items:
        value = f"http://{raw}/p" if scope is Scope.URL else raw
        blocks.append(block(scope, value))
    dedup = {e.indicator: e for e in blocks}
    s = DesiredState(1, tuple(sorted(dedup.values(), key=lambda e: e.indicator)), ())
    text = "".join(policy_zone_text(s, PROXY, 5))
    origin = dns.name.from_text(PROXY.zone)
    zone = parse(text, PROXY.zone)  # raises on any unparsable line
    for line in text.splitlines()[1:]:
        assert not line.split(" ", 1)[0].endswith(".")
    for name in zone.nodes:
        assert name.derelativize(origin).is_subdomain(origin)


def test_diff_records_is_proportional_to_change() -> None:
    old = state(*[block(Scope.HOST, f"h{i}.example") for i in range(1000)])
    new = state(*[block(Scope.HOST, f"h{i}.example") for i in range(1, 1001)])
    removed, added = diff_records(policy_records(old, PROXY, 1), policy_records(new, PROXY, 2))
    assert removed == {
        ("h0.example", "CNAME", "."),
        (CANARY, "TXT", '"edgeagent-canary serial=1"'),
    }
    assert added == {
        ("h1000.example", "CNAME", "."),
        (CANARY, "TXT", '"edgeagent-canary serial=2"'),
    }


def test_serials_are_monotonic_across_wrap() -> None:
    assert next_serial(None) == 1
    assert next_serial(41) == 42
    assert next_serial(2**32 - 1) == 0
    assert serial_gt(0, 2**32 - 1)
    assert serial_gt(5, 4)
    assert not serial_gt(4, 5)
    assert not serial_gt(7, 7)
    assert serial_lag(3, 2**32 - 2) == 5
    assert serial_lag(3, 5) == 0


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="divert"):
        RpzSettings(default_action=RpzAction.DIVERT)
    with pytest.raises(ValueError, match="canary"):
        RpzSettings(canary="Bad Name")
    with pytest.raises(ValueError, match="proxy_ipv4"):
        RpzSettings(proxy_ipv4="2001:db8::1")
    with pytest.raises(ValueError, match="exception_zone"):
        RpzSettings(exception_zone=RpzSettings().zone)
    with pytest.raises(ValueError, match="stop_page_host"):
        RpzSettings(source_actions={"decision": "stop-page"})
    assert safe_owner("a.example", "z.invalid", wildcard=True) == "*.a.example"


def test_the_compiler_has_the_defaults_of_the_rpz_section() -> None:
    """One set of defaults: zone names, canary, SOA timers, TTL are those of ``[rpz]``
    (which ``edgeagent render`` writes the snippets from), whoever builds the settings."""
    assert RpzSettings() == compiler_settings(RpzConfig(), {})


def test_write_atomic_mode_and_check(tmp_path: Path) -> None:
    target = tmp_path / "zone"
    write_atomic(target, ["a\n", b"b\n"], 0o640)
    assert target.read_text() == "a\nb\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640

    def refuse(p: Path) -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        write_atomic(target, "new\n", 0o640, check=refuse)
    assert target.read_text() == "a\nb\n"
    assert list(tmp_path.iterdir()) == [target]


def test_staged_file_discard_and_stale_temps(tmp_path: Path) -> None:
    target = tmp_path / "zone"
    target.write_text("old")
    staged = stage_file(target, "new", 0o600)
    assert staged.tmp_path.exists()
    staged.discard()
    assert target.read_text() == "old"
    (tmp_path / ".zone.tmp-123-abcd").write_text("partial")
    assert remove_stale_temps(target) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["zone"]
