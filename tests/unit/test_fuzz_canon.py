"""Fuzzing the canonicaliser (edgeagent/canon.py) with hostile names, URLs and addresses.

Properties: only :class:`InvalidTarget` escapes, always with a reason that does not echo
the input; accepted names are zone-safe; every canonical form is a fixed point
(``canon(canon(x)) == canon(x)``); a canonical URL's host is itself canonical. Example
counts go to ``var/reliability/hostile-inputs.json`` (see ``tests/support/fuzzing.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from hypothesis import example, given
from hypothesis import strategies as st

from edgeagent import canon
from edgeagent.errors import InvalidTarget
from edgeagent.model import Indicator, Scope
from tests.support.fuzzing import (
    EXAMPLES,
    fuzz_settings,
    hostile_names,
    hostile_urls,
    ipv4_forms,
    outcome,
)

_ZONE_SAFE = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
_CANONICAL_URL = re.compile(r"https?://(?P<host>[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?/[!-~]*")


def refused_or(fn: Callable[[str], str], text: str) -> str | None:
    """``fn(text)``; ``None`` when refused, after checking the refusal is well formed."""
    got = outcome(lambda: fn(text), InvalidTarget)
    if not isinstance(got, InvalidTarget):
        assert isinstance(got, str)
        return got
    assert got.reason, "a refusal without a reason"
    if len(text.strip()) >= 6 and text not in got.reason:
        assert text not in str(got), "the error echoes the input"
    return None


@fuzz_settings(default=600, long=50_000)
@given(hostile_names)
def test_names(text: str) -> None:
    EXAMPLES.count("canon.canonical_name")
    name = refused_or(canon.canonical_name, text)
    if name is None:
        return
    assert _ZONE_SAFE.fullmatch(name), name
    assert len(name) <= 253
    assert canon.canonical_name(name) == name
    assert canon.canonical_name(name + ".") == name
    assert canon.canonical_name(name.upper()) == name


@fuzz_settings(default=600, long=50_000)
@given(hostile_urls)
@example("http://[fe80::1%25eth0]/")
@example("[::%250]")
def test_urls(text: str) -> None:
    EXAMPLES.count("canon.canonical_url")
    url = refused_or(canon.canonical_url, text)
    if url is None:
        return
    m = _CANONICAL_URL.fullmatch(url)
    assert m is not None, url
    assert canon.canonical_url(url) == url
    host = canon.url_host(url)
    if not m.group("host").startswith("[") and not host.replace(".", "").isdigit():
        assert canon.canonical_name(host) == host
    expressions = canon.lookup_expressions(url)
    assert 1 <= len(expressions) <= 30
    assert expressions == canon.lookup_expressions(text)
    assert canon.url_prefix_expression(url).startswith(m.group("host"))


_addresses = st.one_of(
    ipv4_forms,
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: f"{a}%eth0"),
    st.builds(lambda a, n: f"{a}/{n}", st.ip_addresses().map(str), st.integers(-1, 130)),
    st.text(alphabet="0123456789abcdefx.:/% ", max_size=45),
)


@fuzz_settings(default=300, long=20_000)
@given(_addresses)
def test_addresses_and_prefixes(text: str) -> None:
    EXAMPLES.count("canon.canonical_ip_cidr")
    ip = refused_or(canon.canonical_ip, text)
    if ip is not None:
        assert canon.canonical_ip(ip) == ip
        assert "%" not in ip
    cidr = refused_or(canon.canonical_cidr, text)
    if cidr is not None:
        assert canon.canonical_cidr(cidr) == cidr
        assert "/" in cidr


@fuzz_settings(default=200, long=10_000)
@given(st.sampled_from(list(Scope)), st.one_of(hostile_names, hostile_urls))
def test_indicators_of_every_scope(scope: Scope, text: str) -> None:
    """``Indicator.parse`` (what feeds and decisions call) for every scope."""
    EXAMPLES.count("model.Indicator.parse")
    ind = outcome(lambda: Indicator.parse(scope, text), InvalidTarget)
    if isinstance(ind, InvalidTarget):
        assert ind.reason
        return
    assert isinstance(ind, Indicator)
    assert Indicator.parse(scope, ind.value) == ind
    assert len(ind.ref) == 12
    if scope.is_name or scope.is_url:
        host = ind.host
        assert host is not None
        assert host == host.lower()
