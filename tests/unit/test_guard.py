"""Guardrails: public suffixes, protected names, four-eyes, change limits, Plan.

No real domain appears here: public suffixes are bare suffixes (``com``, ``co.uk``) or are
picked from the shipped Public Suffix List at run time; everything else is reserved.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import publicsuffixlist
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.canon import canonical_name
from edgeagent.errors import (
    ChangeLimitExceeded,
    ConfigError,
    GuardrailViolation,
    ProtectedNameRefused,
    PublicSuffixRefused,
    ReservedNameRefused,
)
from edgeagent.guard import (
    BUNDLED_PSL_FILE,
    REASON_ADDRESS_BLOCK,
    REASON_COVERS_PROTECTED,
    REASON_COVERS_RESERVED,
    REASON_PREFIX_TOO_SHORT,
    REASON_PROTECTED,
    REASON_PUBLIC_SUFFIX,
    REASON_RESERVED,
    REASON_TOO_LONG_FOR_ZONE,
    ChangeLimits,
    Guard,
    GuardVerdict,
    NameTooLongForZone,
    Plan,
    PrefixTooShort,
    ProtectedNames,
    Protection,
    PublicSuffixes,
    plan_generation,
)
from edgeagent.model import Action, Entry, Indicator, Scope

PROTECTED_DIR = Path(__file__).resolve().parents[2] / "blocklists" / "protected"
RESERVED_SUFFIXES = (".example", ".test", ".invalid", "example.com", "example.net", "example.org")


@cache
def suffixes() -> PublicSuffixes:
    return PublicSuffixes.load()


@cache
def library() -> publicsuffixlist.PublicSuffixList:
    return publicsuffixlist.PublicSuffixList()


@cache
def psl_rules() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(ICANN rules, private rules) of the bundled list, as written (U-labels, ``*.``, ``!``)."""
    icann: list[str] = []
    private: list[str] = []
    section: list[str] | None = None
    for line in BUNDLED_PSL_FILE.read_text(encoding="utf-8").splitlines():
        if "===BEGIN ICANN DOMAINS===" in line:
            section = icann
        elif "===BEGIN PRIVATE DOMAINS===" in line:
            section = private
        elif "===END" in line:
            section = None
        elif section is not None and line.strip() and not line.startswith("//"):
            section.append(line.split()[0].lower())
    return tuple(icann), tuple(private)


def private_suffix() -> str:
    """A plain (no wildcard, ASCII, two or more labels) private-section suffix."""
    return next(r for r in psl_rules()[1] if r[0] not in "*!" and r.isascii() and "." in r)


@pytest.fixture(scope="module")
def guard() -> Guard:
    return Guard.load(PROTECTED_DIR)


def dom(name: str) -> Indicator:
    return Indicator(Scope.DOMAIN, name)


def block(ind: Indicator, source: str = "feed") -> Entry:
    return Entry(ind, Action.BLOCK, source)


# --------------------------------------------------------------------------- suffixes


@pytest.mark.parametrize(
    ("name", "public"),
    [
        ("com", True),
        ("co.uk", True),
        ("", True),  # the root
        ("example", True),  # unknown single label: implicit "*" rule
        # a registrable name under a multi-label suffix, built so that no possibly real
        # domain is spelled out in the repository
        ("example" + ".co.uk", False),
        ("example.com", False),
        ("www.example.com", False),
    ],
)
def test_is_public_suffix_basics(name: str, public: bool) -> None:
    assert suffixes().is_public_suffix(name) is public


def test_wildcard_and_exception_rules_follow_the_list() -> None:
    icann, _ = psl_rules()
    wild = next(r[2:] for r in icann if r.startswith("*.") and r.isascii())
    exception = next(r[1:] for r in icann if r.startswith("!"))
    ps = suffixes()
    assert ps.is_public_suffix(wild)  # a wildcard's parent is implicitly public
    assert ps.is_public_suffix(f"probe.{wild}")
    assert not ps.is_public_suffix(f"a.probe.{wild}")
    assert not ps.is_public_suffix(exception)  # "!" carves out a registrable name
    assert not ps.is_public_suffix(f"a.{exception}")


def test_private_section_suffix_is_public() -> None:
    rule = private_suffix()
    assert suffixes().is_public_suffix(rule)
    assert not suffixes().is_public_suffix(f"probe.{rule}")
    assert suffixes().registrable_domain(f"a.probe.{rule}") == f"probe.{rule}"


def test_idn_rules_are_matched_as_a_labels() -> None:
    icann, _ = psl_rules()
    rule = next(r for r in icann if not r.isascii() and r[0] not in "*!")
    assert suffixes().is_public_suffix(canonical_name(rule))


def test_agrees_with_publicsuffixlist_on_every_rule() -> None:
    """Our set-lookup fast path and the library's algorithm give the same answers."""
    lib = library()
    ps = suffixes()
    icann, private = psl_rules()
    checked = 0
    for rule in icann + private:
        base = canonical_name(rule.lstrip("!").removeprefix("*."))
        dot = base.find(".")
        for name in (base, f"probe.{base}", f"a.probe.{base}", base[dot + 1 :] if dot > 0 else ""):
            if name:
                assert ps.is_public_suffix(name) == lib.is_public(name), name
                checked += 1
    assert checked > 30_000


@settings(max_examples=300)
@given(
    index=st.integers(min_value=0),
    labels=st.lists(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), max_size=3),
)
def test_agrees_with_publicsuffixlist_on_names_under_rules(index: int, labels: list[str]) -> None:
    lib = library()
    rules = psl_rules()[0] + psl_rules()[1]
    base = canonical_name(rules[index % len(rules)].lstrip("!").removeprefix("*."))
    name = ".".join([*labels, base])
    assert suffixes().is_public_suffix(name) == lib.is_public(name)


def _psl_text(version: str | None) -> str:
    header = f"// VERSION: {version}_00-00-00_UTC\n" if version else ""
    return (
        f"{header}// ===BEGIN ICANN DOMAINS===\ntest\n// ===END ICANN DOMAINS===\n"
        "// ===BEGIN PRIVATE DOMAINS===\nshared.example\n// ===END PRIVATE DOMAINS===\n"
    )


def test_load_prefers_a_newer_system_list(tmp_path: Path) -> None:
    newer = tmp_path / "newer.dat"
    newer.write_text(_psl_text("2999-01-01"), encoding="utf-8")
    ps = PublicSuffixes.load(system_file=newer)
    assert ps.origin == str(newer)
    assert ps.is_public_suffix("shared.example")
    assert "2999-01-01" in ps.describe()


def test_load_keeps_bundled_list_over_older_or_broken_system_list(tmp_path: Path) -> None:
    older = tmp_path / "older.dat"
    older.write_text(_psl_text(None), encoding="utf-8")
    os.utime(older, (0, 0))  # no VERSION header: the mtime (1970) counts
    assert PublicSuffixes.load(system_file=older).origin == str(BUNDLED_PSL_FILE)
    broken = tmp_path / "broken.dat"
    broken.write_text("com\n", encoding="utf-8")  # no section markers
    assert PublicSuffixes.load(system_file=broken).origin == str(BUNDLED_PSL_FILE)
    assert PublicSuffixes.load(system_file=tmp_path / "missing").origin == str(BUNDLED_PSL_FILE)


def test_load_explicit_broken_file_is_a_config_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.dat"
    broken.write_text("com\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.dat"):
        PublicSuffixes.load(broken)


# --------------------------------------------------------------------------- protected


def test_shipped_protected_lists_load_and_use_reserved_names_only() -> None:
    protected = ProtectedNames.load_dir(PROTECTED_DIR, public_suffixes=suffixes())
    names = list(protected)
    assert "protected.example" in names
    assert "search.example.com" in names
    assert all(n.endswith(RESERVED_SUFFIXES) for n in names), names


def test_parse_comments_blank_lines_and_canonicalisation() -> None:
    lines = [
        "# header",
        "",
        "   ",
        "Encyclopedia.Example.   # trailing comment",
        "cdn.example.net#no space",
    ]
    names, problems = ProtectedNames.parse(lines, "x.txt")
    assert problems == []
    assert names == {"encyclopedia.example", "cdn.example.net"}


def test_invalid_lines_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(
        "good.example\nbad name.example\n*.wild.example\n", encoding="utf-8"
    )
    (tmp_path / "b.txt").write_text("# ok\n\nco.uk\nsemi;colon.example\n", encoding="utf-8")
    (tmp_path / "ignored.md").write_text("not a list\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        ProtectedNames.load_dir(tmp_path, public_suffixes=suffixes())
    where = [p.path for p in info.value.problems]
    assert where == ["a.txt:2", "a.txt:3", "b.txt:3", "b.txt:4"]
    assert "public suffix" in info.value.problems[2].reason
    assert "a.txt:2" in str(info.value)


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        ProtectedNames.load_dir(tmp_path / "nope")


def test_match_protects_and_covers() -> None:
    protected = ProtectedNames(["b.example", "cdn.example.net"])
    assert protected.match("b.example") == "b.example"
    assert protected.match("a.b.example") == "b.example"
    assert protected.match("x.y.cdn.example.net") == "cdn.example.net"
    assert protected.match("ab.example") is None  # label boundary, not string suffix
    assert protected.match("example") is None
    assert protected.protects("a.b.example")
    assert not protected.protects("example.net")
    assert protected.covers_protected("example")
    assert protected.covers_protected("example.net")
    assert protected.covers_protected("b.example")
    assert not protected.covers_protected("a.b.example")  # under it: protects(), not covers
    assert not protected.covers_protected("le")  # not a label boundary
    assert not ProtectedNames().covers_protected("")
    assert ProtectedNames().match("b.example") is None


names_st = st.lists(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True), max_size=4)


@given(prefix=names_st, base=st.sampled_from(["b.example", "cdn.example.net", "x.test"]))
def test_protection_holds_for_every_subdomain_and_parent(prefix: list[str], base: str) -> None:
    protected = ProtectedNames([base])
    name = ".".join([*prefix, base])
    assert protected.match(name) == base
    parts = base.split(".")
    for i in range(len(parts)):
        assert protected.covers_protected(".".join(parts[i:]))


# --------------------------------------------------------------------------- guard


@pytest.mark.parametrize("text", ["com", "co.uk", "CO.UK.", "com."])
@pytest.mark.parametrize("scope", [Scope.DOMAIN, Scope.HOST])
def test_public_suffix_block_is_refused_without_override(
    guard: Guard, text: str, scope: Scope
) -> None:
    ind = Indicator.parse(scope, text)
    verdict = guard.check_indicator(ind, Action.BLOCK)
    assert not verdict.allowed
    assert verdict.reason == REASON_PUBLIC_SUFFIX
    with pytest.raises(PublicSuffixRefused) as info:
        guard.enforce(ind, Action.BLOCK, second_person="supervisor", actor="analyst")
    assert info.value.target_hash == ind.ref
    assert text.lower().rstrip(".") not in str(info.value)


def _name_of(octets: int) -> str:
    """A valid name of exactly ``octets`` octets under ``.example`` (labels of 60)."""
    body = octets - len(".example")
    labels = ["a" * 60] * (body // 61)
    rest = body - 61 * len(labels)
    if rest:
        labels.append("b" * rest)
    name = ".".join(labels) + ".example"
    assert len(name) == octets
    return name


ZONES = ("block.rpz.invalid", "allow-longer.rpz.invalid")  # the longest is 24 octets


@pytest.mark.parametrize(
    ("scope", "action", "template", "fits"),
    [
        (Scope.HOST, Action.BLOCK, "{}", 253 - 1 - 24),
        (Scope.DOMAIN, Action.BLOCK, "{}", 253 - 1 - 24 - 2),
        (Scope.URL, Action.BLOCK, "http://{}/page.html", 253 - 1 - 24),
        (Scope.URL_PREFIX, Action.BLOCK, "http://{}/dir/", 253 - 1 - 24),
        (Scope.HOST, Action.ALLOW, "{}", 253 - 1 - 24),
        (Scope.DOMAIN, Action.ALLOW, "{}", 253 - 1 - 24 - 2),
    ],
)
def test_a_name_too_long_once_the_policy_zone_is_appended_is_refused(
    scope: Scope, action: Action, template: str, fits: int
) -> None:
    # Valid alone, but the zone's owner (name + "." + zone, "*." before a domain) would
    # pass 253 octets: the compiler leaves it out, so it must never be accepted at all.
    guard = Guard.load(PROTECTED_DIR, policy_zones=ZONES)
    longest = Indicator.parse(scope, template.format(_name_of(fits)))
    assert guard.check_indicator(longest, action).allowed
    over = Indicator.parse(scope, template.format(_name_of(fits + 1)))
    verdict = guard.check_indicator(over, action)
    assert (verdict.allowed, verdict.reason) == (False, REASON_TOO_LONG_FOR_ZONE)
    with pytest.raises(NameTooLongForZone) as info:
        guard.enforce(over, action, second_person="supervisor", actor="analyst")
    assert "policy zone cannot hold" in str(info.value)
    assert f"at most {fits if scope is not Scope.DOMAIN else fits + 2} for a host" in str(
        info.value
    )
    assert info.value.target_hash == over.ref
    assert "aaaa" not in str(info.value)
    # Without policy zones (no DNS enforcer) only the name's own limit applies.
    assert Guard.load(PROTECTED_DIR).check_indicator(over, action).allowed


def test_a_feed_entry_too_long_for_the_policy_zone_holds_its_generation() -> None:
    guard = Guard.load(PROTECTED_DIR, policy_zones=ZONES)
    entries = [block(dom(_name_of(227))), block(dom(_name_of(226)))]
    plan = plan_generation("police", set(), entries, guard)
    assert dict(plan.refused) == {REASON_TOO_LONG_FOR_ZONE: 1}
    assert plan.proposed_count == 1
    assert "1 too long for the policy zone" in " ".join(plan.safety_problems())


def test_url_allows_addresses_and_hashes_have_no_owner_to_fit() -> None:
    guard = Guard.load(PROTECTED_DIR, policy_zones=ZONES)
    url = Indicator.parse(Scope.URL, f"http://{_name_of(253)}/page.html")
    assert guard.check_indicator(url, Action.ALLOW).allowed
    literal = Indicator.parse(Scope.URL, "http://[2001:db8::1]/page.html")
    assert guard.check_indicator(literal, Action.BLOCK).allowed


def test_root_block_is_refused(guard: Guard) -> None:
    verdict = guard.check_indicator(dom(""), Action.BLOCK)
    assert (verdict.allowed, verdict.reason) == (False, REASON_PUBLIC_SUFFIX)
    with pytest.raises(PublicSuffixRefused):
        guard.enforce(dom(""), Action.BLOCK, second_person="supervisor", actor="analyst")


def test_private_section_suffix_block_is_refused(guard: Guard) -> None:
    ind = Indicator.parse(Scope.DOMAIN, private_suffix())
    assert guard.check_indicator(ind, Action.BLOCK).reason == REASON_PUBLIC_SUFFIX
    with pytest.raises(PublicSuffixRefused):
        guard.enforce(ind, Action.BLOCK, second_person="supervisor", actor="analyst")


@pytest.mark.parametrize(
    ("ind", "reason"),
    [
        (dom("test"), REASON_PUBLIC_SUFFIX),  # a top-level name unblocks a whole TLD
        (dom("example"), REASON_PUBLIC_SUFFIX),
        (dom("com"), REASON_PUBLIC_SUFFIX),
        (dom("co.uk"), REASON_PUBLIC_SUFFIX),
        (Indicator(Scope.HOST, "co.uk"), REASON_PUBLIC_SUFFIX),
        (dom(""), REASON_PUBLIC_SUFFIX),
        (Indicator(Scope.CIDR, "0.0.0.0/1"), REASON_PREFIX_TOO_SHORT),
        (Indicator(Scope.CIDR, "::/1"), REASON_PREFIX_TOO_SHORT),
        (Indicator(Scope.CIDR, "192.0.0.0/8"), REASON_PREFIX_TOO_SHORT),
        (Indicator(Scope.CIDR, "2001:db8::/32"), REASON_PREFIX_TOO_SHORT),
    ],
)
def test_wide_allows_are_refused_without_override(
    guard: Guard, ind: Indicator, reason: str
) -> None:
    refused = refused_whoever_signs(guard, ind, Action.ALLOW, reason)
    assert refused.reason.startswith("an allow of a ")


def refused_whoever_signs(
    guard: Guard, ind: Indicator, action: Action, reason: str
) -> GuardrailViolation:
    """Assert the guard refuses ``ind`` for ``reason`` even with a second person."""
    verdict = guard.check_indicator(ind, action)
    assert (verdict.allowed, verdict.reason) == (False, reason)
    with pytest.raises(GuardrailViolation) as info:
        guard.enforce(ind, action, second_person="supervisor", actor="analyst")
    assert info.value.target_hash == ind.ref
    assert not ind.value or ind.value not in str(info.value)
    return info.value


def test_private_section_suffix_allow_is_refused(guard: Guard) -> None:
    ind = Indicator.parse(Scope.DOMAIN, private_suffix())
    assert guard.check_indicator(ind, Action.ALLOW).reason == REASON_PUBLIC_SUFFIX


def test_prefix_minimum_applies_to_allows(guard: Guard) -> None:
    strict = Guard(guard.public_suffixes, guard.protected, min_prefix_v4=28, min_prefix_v6=64)
    assert not strict.check_indicator(Indicator(Scope.CIDR, "192.0.2.0/24"), Action.ALLOW).allowed
    assert strict.check_indicator(Indicator(Scope.CIDR, "192.0.2.0/28"), Action.ALLOW).allowed
    assert not strict.check_indicator(Indicator(Scope.CIDR, "2001:db8::/48"), Action.ALLOW).allowed


@pytest.mark.parametrize("ind", [dom("protected.example"), dom("example.com")])
def test_domain_allow_covering_a_protected_name_needs_a_second_person(
    guard: Guard, ind: Indicator
) -> None:
    verdict = guard.check_indicator(ind, Action.ALLOW)
    assert (verdict.allowed, verdict.needs_second_person) == (True, True)
    assert verdict.reason == REASON_COVERS_PROTECTED
    with pytest.raises(ProtectedNameRefused):
        guard.enforce(ind, Action.ALLOW, second_person=None, actor="analyst")
    assert guard.enforce(ind, Action.ALLOW, second_person="supervisor", actor="analyst")


def test_narrow_allows_are_fine(guard: Guard) -> None:
    for ind in (
        Indicator(Scope.HOST, "protected.example"),  # one host: the over-block fix
        dom("sub.protected.example"),
        dom("listed.example"),
        Indicator.parse(Scope.URL, "http://search.example.com/page"),
        Indicator.parse(Scope.URL, "http://co.uk/page"),  # one page
        Indicator(Scope.IP, "192.0.2.7"),
        Indicator(Scope.CIDR, "192.0.2.0/24"),
        Indicator(Scope.CIDR, "2001:db8:1::/48"),
    ):
        verdict = guard.enforce(ind, Action.ALLOW, second_person=None, actor="analyst")
        assert verdict == GuardVerdict(True, False, "")


def test_ordinary_block_is_fine(guard: Guard) -> None:
    for ind in (
        dom("listed.example"),
        Indicator(Scope.HOST, "www.listed.example"),
        Indicator.parse(Scope.URL, "http://listed.example/page"),
    ):
        verdict = guard.enforce(ind, Action.BLOCK, second_person=None, actor="analyst")
        assert verdict.allowed
        assert not verdict.needs_second_person
        assert verdict.reason == ""


@pytest.mark.parametrize(
    ("ind", "reason"),
    [
        (dom("protected.example"), REASON_PROTECTED),
        (Indicator(Scope.HOST, "protected.example"), REASON_PROTECTED),
        (Indicator(Scope.HOST, "img.cdn.example.net"), REASON_PROTECTED),
        (dom("deep.sub.protected.example"), REASON_PROTECTED),
        (dom("example.com"), REASON_COVERS_PROTECTED),  # parent of search.example.com
        (dom("example.net"), REASON_COVERS_PROTECTED),
        (Indicator.parse(Scope.URL, "http://search.example.com/some/page"), REASON_PROTECTED),
        (Indicator.parse(Scope.URL_PREFIX, "http://a.cdn.example.net/dir/"), REASON_PROTECTED),
    ],
)
def test_protected_blocks_need_a_second_person(guard: Guard, ind: Indicator, reason: str) -> None:
    verdict = guard.check_indicator(ind, Action.BLOCK)
    assert verdict.allowed
    assert verdict.needs_second_person
    assert verdict.reason == reason
    with pytest.raises(ProtectedNameRefused) as info:
        guard.enforce(ind, Action.BLOCK, second_person=None, actor="analyst")
    assert info.value.target_hash == ind.ref
    assert ind.value not in str(info.value)
    with pytest.raises(ProtectedNameRefused, match="differ"):
        guard.enforce(ind, Action.BLOCK, second_person=" Analyst ", actor="analyst")
    with pytest.raises(ProtectedNameRefused):
        guard.enforce(ind, Action.BLOCK, second_person="  ", actor="analyst")
    assert guard.enforce(ind, Action.BLOCK, second_person="supervisor", actor="analyst") == verdict


def test_host_block_of_a_parent_does_not_cover_protected_children(guard: Guard) -> None:
    verdict = guard.check_indicator(Indicator(Scope.HOST, "example.com"), Action.BLOCK)
    assert verdict == guard.check_indicator(dom("listed.example"), Action.BLOCK)


@pytest.mark.parametrize("url", ["http://co.uk/page", "http://com/", "http://example/x"])
def test_url_on_a_public_suffix_host_is_refused(guard: Guard, url: str) -> None:
    ind = Indicator.parse(Scope.URL, url)
    assert guard.check_indicator(ind, Action.BLOCK).reason == REASON_PUBLIC_SUFFIX
    with pytest.raises(PublicSuffixRefused):
        guard.enforce(ind, Action.BLOCK, second_person="supervisor", actor="analyst")


def test_url_on_an_address_host_is_fine(guard: Guard) -> None:
    for value in ("http://192.0.2.10/x", "http://[2001:db8::1]/x"):
        verdict = guard.check_indicator(Indicator(Scope.URL, value), Action.BLOCK)
        assert verdict.allowed
        assert not verdict.needs_second_person


@pytest.mark.parametrize(
    ("scope", "value", "allowed"),
    [
        (Scope.CIDR, "192.0.2.0/24", True),
        (Scope.CIDR, "192.0.2.128/25", True),
        (Scope.CIDR, "198.51.0.0/16", False),
        (Scope.CIDR, "0.0.0.0/0", False),
        (Scope.CIDR, "2001:db8:1::/48", True),
        (Scope.CIDR, "2001:db8::/32", False),
        (Scope.IP, "203.0.113.7", True),
        (Scope.IP, "2001:db8::7", True),
    ],
)
def test_address_blocks(guard: Guard, scope: Scope, value: str, allowed: bool) -> None:
    ind = Indicator.parse(scope, value)
    verdict = guard.check_indicator(ind, Action.BLOCK)
    assert verdict.allowed is allowed
    if allowed:
        assert verdict.needs_second_person
        assert verdict.reason == REASON_ADDRESS_BLOCK
        with pytest.raises(ProtectedNameRefused):
            guard.enforce(ind, Action.BLOCK, second_person=None, actor="analyst")
        assert guard.enforce(ind, Action.BLOCK, second_person="supervisor", actor="analyst")
    else:
        assert verdict.reason == REASON_PREFIX_TOO_SHORT
        with pytest.raises(PrefixTooShort) as info:
            guard.enforce(ind, Action.BLOCK, second_person="supervisor", actor="analyst")
        assert isinstance(info.value, GuardrailViolation)
        assert value not in str(info.value)


def test_prefix_minimum_is_configurable(guard: Guard) -> None:
    strict = Guard(guard.public_suffixes, guard.protected, min_prefix_v4=28, min_prefix_v6=64)
    assert not strict.check_indicator(Indicator(Scope.CIDR, "192.0.2.0/24"), Action.BLOCK).allowed
    assert strict.check_indicator(Indicator(Scope.CIDR, "192.0.2.0/28"), Action.BLOCK).allowed
    with pytest.raises(ConfigError) as info:
        Guard(guard.public_suffixes, guard.protected, min_prefix_v4=33, min_prefix_v6=-1)
    assert [p.path for p in info.value.problems] == ["min_prefix_v4", "min_prefix_v6"]


def test_guard_load_rejects_public_suffix_in_protected_list(tmp_path: Path) -> None:
    (tmp_path / "local.txt").write_text("ok.example\ncom\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"local\.txt:2"):
        Guard.load(tmp_path)


# --------------------------------------------------------------------------- reserved

# The agent's own names in the config below: the RPZ canary, the stop-page host, the two
# policy zones and (proxy on) the proxy canary's host.
RESERVED_CONFIG = """
[rpz]
zone = "block.rpz.invalid"
exception_zone = "allow.rpz.invalid"
default_action = "stop-page"
stop_page_host = "stop.agent.test"
canary_name = "canary.agent.test"
[proxy]
enabled = true
canary_url = "http://proxy-canary.agent.test/edgeagent-canary"
"""


@pytest.fixture(scope="module")
def reserved_guard(tmp_path_factory: pytest.TempPathFactory) -> Guard:
    """The guard exactly as the daemon builds it from a config."""
    from edgeagent.config import load_config
    from edgeagent.service import build_guard

    path = tmp_path_factory.mktemp("cfg") / "edgeagent.toml"
    path.write_text(RESERVED_CONFIG, encoding="utf-8")
    return build_guard(load_config(path))


def test_reserved_names_come_from_the_settings(reserved_guard: Guard) -> None:
    assert reserved_guard.protected.reserved == (
        "allow.rpz.invalid",
        "block.rpz.invalid",
        "canary.agent.test",
        "proxy-canary.agent.test",
        "stop.agent.test",
    )
    # The protected lists still load beside them; iteration shows protected names only.
    assert "protected.example" in reserved_guard.protected
    assert "canary.agent.test" not in list(reserved_guard.protected)


@pytest.mark.parametrize(
    ("ind", "reason"),
    [
        (Indicator(Scope.HOST, "canary.agent.test"), REASON_RESERVED),
        (dom("canary.agent.test"), REASON_RESERVED),
        (Indicator(Scope.HOST, "stop.agent.test"), REASON_RESERVED),
        (dom("block.rpz.invalid"), REASON_RESERVED),
        (Indicator(Scope.HOST, "x.block.rpz.invalid"), REASON_RESERVED),  # under a zone
        (dom("deep.x.allow.rpz.invalid"), REASON_RESERVED),
        (Indicator.parse(Scope.URL, "http://stop.agent.test/page"), REASON_RESERVED),
        (Indicator.parse(Scope.URL_PREFIX, "http://proxy-canary.agent.test/x/"), REASON_RESERVED),
        (dom("agent.test"), REASON_COVERS_RESERVED),  # a parent covers the stop page
        (dom("rpz.invalid"), REASON_COVERS_RESERVED),
    ],
)
def test_reserved_names_are_refused_without_override(
    reserved_guard: Guard, ind: Indicator, reason: str
) -> None:
    refused = refused_whoever_signs(reserved_guard, ind, Action.BLOCK, reason)
    assert isinstance(refused, ReservedNameRefused)


def test_names_beside_reserved_ones_are_ordinary(reserved_guard: Guard) -> None:
    for ind in (
        Indicator(Scope.HOST, "www.agent.test"),  # a sibling, not under a reserved name
        dom("notcanary.agent.test"),
        Indicator(Scope.HOST, "host.block.rpz.invalid.example"),
    ):
        assert reserved_guard.check_indicator(ind, Action.BLOCK) == GuardVerdict(True, False, "")


def test_reserved_beats_protected_along_the_chain() -> None:
    names = ProtectedNames(["site.example"], reserved=["own.site.example"])
    assert names.protection("a.own.site.example") is Protection.RESERVED
    assert names.protection("www.site.example") is Protection.PROTECTED
    assert names.protection("other.example") is Protection.NONE
    assert names.cover_protection("site.example") is Protection.RESERVED
    assert names.cover_protection("example") is Protection.RESERVED
    assert names.cover_protection("www.site.example") is Protection.NONE
    guard = Guard(suffixes(), names)
    verdict = guard.check_indicator(dom("site.example"), Action.BLOCK)
    assert (verdict.allowed, verdict.reason) == (False, REASON_COVERS_RESERVED)
    protected = ProtectedNames(["own.site.example"], reserved=["site.example"])
    assert protected.protection("x.own.site.example") is Protection.RESERVED


@pytest.mark.parametrize(
    ("ind", "reason"),
    [
        (Indicator(Scope.HOST, "canary.agent.test"), REASON_RESERVED),
        (dom("x.block.rpz.invalid"), REASON_RESERVED),
        (dom("agent.test"), REASON_COVERS_RESERVED),  # would pass the canary through
        (
            Indicator.parse(Scope.URL, "http://proxy-canary.agent.test/edgeagent-canary"),
            REASON_RESERVED,
        ),
    ],
)
def test_allows_of_reserved_names_are_refused(
    reserved_guard: Guard, ind: Indicator, reason: str
) -> None:
    refused = refused_whoever_signs(reserved_guard, ind, Action.ALLOW, reason)
    assert isinstance(refused, ReservedNameRefused)
    assert refused.reason.startswith("an allow touching the agent's own names")


def test_reserved_names_are_refused_in_a_feed_generation(reserved_guard: Guard) -> None:
    entries = [
        block(dom("listed.example")),
        block(Indicator(Scope.HOST, "canary.agent.test")),
        block(Indicator(Scope.HOST, "x.block.rpz.invalid")),
        block(dom("agent.test")),
    ]
    plan = plan_generation("feed-a", (), entries, reserved_guard)
    assert dict(plan.refused) == {REASON_RESERVED: 2, REASON_COVERS_RESERVED: 1}
    assert [e.indicator.value for e in plan.accepted] == ["listed.example"]


# --------------------------------------------------------------------------- limits


def held(limits: ChangeLimits, previous: int, proposed: int, added: int, removed: int) -> str:
    caught: ChangeLimitExceeded | None = None
    try:
        limits.check_generation("feed-a", previous, proposed, added, removed)
    except ChangeLimitExceeded as exc:
        caught = exc
    if caught is None:
        return ""
    assert (caught.feed, caught.previous, caught.proposed) == ("feed-a", previous, proposed)
    assert (caught.added, caught.removed) == (added, removed)
    return caught.reason


def test_change_limits() -> None:
    lim = ChangeLimits()
    assert "shrink" in held(lim, 1000, 100, 0, 900)  # 90 % removed
    assert "growth" in held(lim, 1000, 10_000, 9000, 0)  # 10x
    assert "empty list" in held(lim, 1000, 0, 0, 1000)
    assert "empty list" in held(lim, 5, 0, 0, 5)  # empty is held even under the floor
    assert "empty first generation" in held(lim, 0, 0, 0, 0)
    assert held(lim, 0, 100_000, 100_000, 0) == ""  # first generation: nothing to compare
    assert held(lim, 1000, 1000, 250, 250) == ""  # exactly at the limits
    assert held(lim, 1000, 999, 0, 251) != ""
    # The floor: small lists and single decisions are never held for size.
    assert held(lim, 1, 2, 1, 0) == ""
    assert held(lim, 2, 1, 0, 1) == ""
    assert held(lim, 40, 10, 0, 30) == ""
    assert held(lim, 10, 60, 50, 0) == ""
    both = held(lim, 1000, 3000, 2900, 900)
    assert "shrink" in both
    assert "growth" in both


def test_change_limits_validate() -> None:
    with pytest.raises(ConfigError) as info:
        ChangeLimits(max_removal_share=1.5, max_addition_share=-1, floor=-2)
    assert len(info.value.problems) == 3


@given(
    previous=st.integers(min_value=0, max_value=10_000),
    added=st.integers(min_value=0, max_value=50),
    removed_share=st.floats(min_value=0, max_value=1),
)
def test_floor_never_holds_small_changes(previous: int, added: int, removed_share: float) -> None:
    removed = min(previous, 50, int(previous * removed_share))
    proposed = previous - removed + added
    if proposed > 0:
        assert held(ChangeLimits(), previous, proposed, added, removed) == ""


# --------------------------------------------------------------------------- plan


def _names(prefix: str, n: int) -> list[Indicator]:
    return [dom(f"{prefix}{i}.listed.example") for i in range(n)]


def test_plan_diff_counts_and_dedupes(guard: Guard) -> None:
    previous = set(_names("a", 100))
    proposed = [block(i) for i in _names("a", 90) + _names("b", 20)]
    proposed += proposed[:5]  # duplicates count once
    plan = plan_generation("feed-a", previous, proposed, guard)
    assert (plan.previous_count, plan.proposed_count, plan.added, plan.removed) == (
        100,
        110,
        20,
        10,
    )
    assert plan.has_changes
    assert len(plan.accepted) == 110
    assert plan.safety_problems() == []
    plan.raise_if_unsafe()
    assert "100 -> 110" in plan.summary()


def test_plan_reports_refused_and_protected_entries(guard: Guard) -> None:
    previous = _names("a", 10)  # any iterable, not only a set
    refused = [dom("com"), Indicator.parse(Scope.HOST, "co.uk"), dom("")]
    protected = [dom("sub.protected.example"), Indicator(Scope.CIDR, "192.0.2.0/24")]
    entries = [block(i) for i in [*previous, *refused, *protected]]
    entries.append(block(Indicator(Scope.CIDR, "192.0.0.0/8")))
    plan = plan_generation("feed-a", previous, entries, guard)
    assert dict(plan.refused) == {REASON_PUBLIC_SUFFIX: 3, REASON_PREFIX_TOO_SHORT: 1}
    assert plan.needs_approval == tuple(sorted(i.ref for i in protected))
    assert plan.proposed_count == 12
    assert plan.added == 2
    problems = plan.safety_problems()
    assert any("4 entries refused" in p for p in problems)
    assert any("2 entries need a second person" in p for p in problems)
    with pytest.raises(ChangeLimitExceeded) as info:
        plan.raise_if_unsafe()
    for i in [*refused, *protected]:
        assert not i.value or i.value not in str(info.value)


def test_plan_holds_shrink_growth_and_empty(guard: Guard) -> None:
    previous = set(_names("a", 1000))
    shrink = plan_generation("f", previous, [block(i) for i in _names("a", 100)], guard)
    assert any(p.startswith("shrink") for p in shrink.safety_problems())
    growth = plan_generation("f", previous, [block(i) for i in _names("b", 10_000)], guard)
    assert any(p.startswith("growth") for p in growth.safety_problems())
    empty = plan_generation("f", previous, [], guard)
    with pytest.raises(ChangeLimitExceeded, match="empty list"):
        empty.raise_if_unsafe()
    # Looser limits passed in explicitly override the guard's.
    shrink.raise_if_unsafe(ChangeLimits(max_removal_share=0.95))


def test_plan_single_decision_is_never_held(guard: Guard) -> None:
    for previous, proposed in ((set(), _names("a", 1)), (set(_names("a", 1)), _names("b", 1))):
        plan = plan_generation("decisions", previous, [block(i) for i in proposed], guard)
        assert plan.safety_problems() == []


def test_plan_is_a_frozen_value() -> None:
    plan = Plan("f", 1, 1, 0, 0)
    with pytest.raises(AttributeError):
        plan.added = 3  # type: ignore[misc]
    assert plan == Plan("f", 1, 1, 0, 0)
    assert not plan.has_changes


def test_rules_idna2008_rejects_are_counted_not_matched() -> None:
    ps = PublicSuffixes("\u2603.example\nok.example\n", origin="inline")
    assert ps.unencodable == 1
    assert "1 rules not IDNA2008" in ps.describe()
    assert ps.is_public_suffix("ok.example")
