"""Canonicalisation: Safe Browsing v4 examples (on reserved names), zone safety, IDNA."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeagent import canon
from edgeagent.errors import InvalidTarget

# The Safe Browsing v4 "URLs and Hashing" examples, with every real domain and address
# replaced by a reserved name or a documentation address (192.0.2.1 == 3221225985).
SB_EXAMPLES = [
    ("http://a.example/%25%32%35", "http://a.example/%25"),
    ("http://a.example/%25%32%35%25%32%35", "http://a.example/%25%25"),
    ("http://a.example/%2525252525252525", "http://a.example/%25"),
    ("http://a.example/asdf%25%32%35asd", "http://a.example/asdf%25asd"),
    ("http://a.example/%%%25%32%35asd%%", "http://a.example/%25%25%25asd%25%25"),
    ("http://www.example.com/", "http://www.example.com/"),
    (
        "http://%31%39%32%2e%30%2e%32%2e%31/%2E%73%65%63%75%72%65/"
        "%77%77%77%2E%65%78%61%6D%70%6C%65%2E%63%6F%6D/",
        "http://192.0.2.1/.secure/www.example.com/",
    ),
    (
        "http://198.51.100.11/uploads/%20%20%20%20/.verify/.secure=update-x=y/",
        "http://198.51.100.11/uploads/%20%20%20%20/.verify/.secure=update-x=y/",
    ),
    (
        "http://a.example/%257Ea%2521b%2540c%2523d%2524e%25f%255E00%252611%252A22%252833"
        "%252944_55%252B",
        "http://a.example/~a!b@c%23d$e%25f^00&11*22(33)44_55+",
    ),
    ("http://3221225985/blah", "http://192.0.2.1/blah"),
    ("http://www.example.com/blah/..", "http://www.example.com/"),
    ("www.example.com/", "http://www.example.com/"),
    ("www.example.com", "http://www.example.com/"),
    ("http://www.example.net/blah#frag", "http://www.example.net/blah"),
    ("http://www.EXAmple.com/", "http://www.example.com/"),
    ("http://www.example.com.../", "http://www.example.com/"),
    ("http://www.example.com/foo\tbar\rbaz\n2", "http://www.example.com/foobarbaz2"),
    ("http://www.example.com/q?", "http://www.example.com/q?"),
    ("http://www.example.com/q?r?", "http://www.example.com/q?r?"),
    ("http://www.example.com/q?r?s", "http://www.example.com/q?r?s"),
    ("http://a.example/foo#bar#baz", "http://a.example/foo"),
    ("http://a.example/foo;", "http://a.example/foo;"),
    ("http://a.example/foo?bar;", "http://a.example/foo?bar;"),
    ("http://notrailingslash.example", "http://notrailingslash.example/"),
    ("  http://www.example.com/  ", "http://www.example.com/"),
    ("https://www.example.com/", "https://www.example.com/"),
    ("http://a.example/ab%23cd", "http://a.example/ab%23cd"),
    ("http://a.example//twoslashes?more//slashes", "http://a.example/twoslashes?more//slashes"),
]

# Our deliberate differences (module docstring): ports, IDNA, IP forms, userinfo, ...
OUR_EXAMPLES = [
    ("http://www.example.com:1234/", "http://www.example.com:1234/"),
    ("http://www.example.com:80/", "http://www.example.com/"),
    ("https://www.example.com:443/x", "https://www.example.com/x"),
    ("http://www.example.com:443/", "http://www.example.com:443/"),
    ("http://www.example.com:/", "http://www.example.com/"),
    ("HTTPS://A.Example/X", "https://a.example/X"),
    ("http://user:secret@a.example/", "http://a.example/"),
    ("http://Faß.example/ä", "http://xn--fa-hia.example/%C3%A4"),
    ("http://b%C3%BCcher.example/", "http://xn--bcher-kva.example/"),
    ("http://[2001:DB8:0::1]:8080/x", "http://[2001:db8::1]:8080/x"),
    ("a.example:8080/x", "http://a.example:8080/x"),
    ("//a.example/x", "http://a.example/x"),
    ("http:a.example/x", "http://a.example/x"),
    ("http:\\\\a.example\\x\\y?a\\b", "http://a.example/x/y?a\\b"),
    ("http://0300.0.2.1/", "http://192.0.2.1/"),
    ("http://0xc0.0x0.0x2.0x1/", "http://192.0.2.1/"),
    ("http://0xC0000201/", "http://192.0.2.1/"),
    ("http://192.0.513/", "http://192.0.2.1/"),
    ("http://192.513/", "http://192.0.2.1/"),
    ("http://a.example/a//../b", "http://a.example/a/b"),
    ("http://a.example/a/./b/../c/.", "http://a.example/a/c/"),
    ("http://a.example/../../x", "http://a.example/x"),
    ("http://a.example/x%3Fy", "http://a.example/x?y"),
    ("http://a.example/%00%7f", "http://a.example/%00%7F"),
    ("http://a.example?q", "http://a.example/?q"),
    ("http://a.example/%252525252525252525252525252541", "http://a.example/A"),
]


@pytest.mark.parametrize(("text", "expected"), SB_EXAMPLES + OUR_EXAMPLES)
def test_canonical_url_examples(text: str, expected: str) -> None:
    assert canon.canonical_url(text) == expected
    assert canon.canonical_url(expected) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("http://host%23.example/", "'#'"),  # SB keeps it escaped; we need a real host
        ("http://\x01\x80.example/", "control character"),
        ("http:// leadingspace.example/", "whitespace"),
        ("%20leadingspace.example/", "whitespace"),
        ("ftp://a.example/", "only http and https"),
        ("mailto:x@a.example", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("http:///", "no host"),
        ("", "no host"),
        ("http://a.example:99999/", "invalid port"),
        ("http://a.example:8o/", "invalid port"),
        ("http://256.1.1.1/", "invalid IPv4"),
        ("http://192.0.2.1.5/", "numeric top-level label"),
        ("http://a.123/", "numeric top-level label"),
        ("http://[2001:db8::1/", "unterminated IPv6"),
        ("http://[zz::1]/", "invalid IPv6"),
        ("http://*.a.example/", "wildcard"),
        ("http://a.example/" + "x" * canon.MAX_URL_LENGTH, "longer than"),
    ],
)
def test_canonical_url_refuses(text: str, reason: str) -> None:
    with pytest.raises(InvalidTarget) as info:
        canon.canonical_url(text)
    assert reason in info.value.reason


def test_url_errors_do_not_reveal_the_url() -> None:
    with pytest.raises(InvalidTarget) as info:
        canon.canonical_url("http://secret-entry.example:99999/private/path")
    assert "secret" not in str(info.value)
    assert "private" not in str(info.value)
    assert info.value.target_hash


def test_lookup_expressions_sb_example() -> None:
    assert canon.lookup_expressions("http://a.b.c.example/1/2.html?param=1") == [
        "a.b.c.example/1/2.html?param=1",
        "a.b.c.example/1/2.html",
        "a.b.c.example/",
        "a.b.c.example/1/",
        "b.c.example/1/2.html?param=1",
        "b.c.example/1/2.html",
        "b.c.example/",
        "b.c.example/1/",
        "c.example/1/2.html?param=1",
        "c.example/1/2.html",
        "c.example/",
        "c.example/1/",
    ]


def test_lookup_expressions_only_last_five_labels() -> None:
    assert canon.lookup_expressions("http://a.b.c.d.e.f.example/1.html") == [
        "a.b.c.d.e.f.example/1.html",
        "a.b.c.d.e.f.example/",
        "c.d.e.f.example/1.html",
        "c.d.e.f.example/",
        "d.e.f.example/1.html",
        "d.e.f.example/",
        "e.f.example/1.html",
        "e.f.example/",
        "f.example/1.html",
        "f.example/",
    ]


def test_lookup_expressions_ip_host_has_no_suffixes() -> None:
    assert canon.lookup_expressions("http://192.0.2.4/1/") == ["192.0.2.4/1/", "192.0.2.4/"]
    assert canon.lookup_expressions("http://[2001:db8::4]/") == ["[2001:db8::4]/"]


def test_lookup_expressions_path_prefixes_capped_and_port_ignored() -> None:
    exprs = canon.lookup_expressions("https://a.example:8443/1/2/3/4/5/6.html")
    assert exprs == [
        "a.example/1/2/3/4/5/6.html",
        "a.example/",
        "a.example/1/",
        "a.example/1/2/",
        "a.example/1/2/3/",
    ]


def test_lookup_expressions_at_most_thirty_and_unique() -> None:
    exprs = canon.lookup_expressions("http://a.b.c.d.e.f.g.example/1/2/3/4/5.html?q=1")
    assert len(exprs) == 30
    assert len(set(exprs)) == 30


def test_url_expression_is_first_lookup_expression() -> None:
    url = canon.canonical_url("http://www.example.com:8080/dir/page.html?x=1")
    assert canon.url_expression(url) == "www.example.com/dir/page.html?x=1"
    assert canon.lookup_expressions(url)[0] == canon.url_expression(url)
    assert canon.url_host(url) == "www.example.com"
    assert canon.url_host("http://[2001:db8::1]:81/") == "2001:db8::1"


@pytest.mark.parametrize(
    ("url", "expression"),
    [
        ("http://a.example/p", "a.example/p"),
        ("http://a.example/p?", "a.example/p"),
        ("http://a.example/p?&&", "a.example/p"),
        ("http://a.example/p?b=2&a=1", "a.example/p?a=1&b=2"),
        ("http://a.example/p?a=1&&a=1&", "a.example/p?a=1"),
        ("http://a.example/p?flag&q=a+b", "a.example/p?flag=&q=a%20b"),
        ("http://a.example/p?q=a%20b", "a.example/p?q=a%20b"),
        ("http://a.example/p?id=1&id=2", "a.example/p?id=1&id=2"),
    ],
)
def test_url_expression_has_the_canonical_query(url: str, expression: str) -> None:
    assert canon.url_expression(canon.canonical_url(url)) == expression


def test_query_params() -> None:
    assert canon.query_params("") == ()
    assert canon.query_params("&") == ()
    assert canon.query_params("z=1&a&a=") == ("a=", "z=1")
    assert canon.query_params("q=x+y") == ("q=x%20y",)


@pytest.mark.parametrize(
    ("text", "readings"),
    [
        ("http://a.example/p", ["http://a.example/p"]),
        ("HTTP://A.example:80/./p?x", ["http://a.example/p?x"]),
        # A fragment sent in the request line, raw or as Squid hands it over (%23): the
        # origin drops it; a literal %23 (or %2523) is a real character. Both readings.
        ("http://a.example/p#x", ["http://a.example/p%23x", "http://a.example/p"]),
        ("http://a.example/p%23x", ["http://a.example/p%23x", "http://a.example/p"]),
        ("http://a.example/p%2523x?q", ["http://a.example/p%23x?q", "http://a.example/p"]),
        ("http://a.example/p#", ["http://a.example/p%23", "http://a.example/p"]),
        ("http://a.example/p?a=1#x", ["http://a.example/p?a=1%23x", "http://a.example/p?a=1"]),
        # The fragment is cut before dot segments are resolved.
        ("http://a.example/d/p#x/../q", ["http://a.example/d/q", "http://a.example/d/p"]),
        # Path parameters, removed before dot segments are resolved (servlet containers).
        (
            "http://a.example/p;jsessionid=1",
            ["http://a.example/p;jsessionid=1", "http://a.example/p"],
        ),
        ("http://a.example/a;x/b;y?q", ["http://a.example/a;x/b;y?q", "http://a.example/a/b?q"]),
        ("http://a.example/a/..;x/b", ["http://a.example/a/..;x/b", "http://a.example/b"]),
        (
            "http://a.example/p;x#y",
            [
                "http://a.example/p;x%23y",
                "http://a.example/p;x",
                "http://a.example/p",
            ],
        ),
    ],
)
def test_request_readings(text: str, readings: list[str]) -> None:
    assert canon.request_urls(text) == readings


def test_url_prefix_matches_requests_below_it() -> None:
    entry = canon.canonical_url("http://a.example/dir/?ignored=1")
    prefix = canon.url_prefix_expression(entry)
    assert prefix == "a.example/dir/"
    assert canon.url_prefix_indexable(entry)
    request = "http://a.example/dir/sub/page.html?x"
    assert prefix in canon.lookup_expressions(request)
    assert prefix not in canon.lookup_expressions("http://a.example/other/page.html")
    assert canon.url_prefix_expression("http://a.example/") in canon.lookup_expressions(request)


def test_url_prefix_indexable_limits() -> None:
    assert not canon.url_prefix_indexable("http://a.example/dir")
    assert not canon.url_prefix_indexable("http://a.example/1/2/3/4/")
    deep = canon.url_prefix_expression("http://a.example/1/2/3/")
    assert canon.url_prefix_indexable("http://a.example/1/2/3/")
    assert deep in canon.lookup_expressions("http://a.example/1/2/3/4/5/x.html")


def test_split_canonical_refuses_non_canonical() -> None:
    with pytest.raises(InvalidTarget):
        canon.url_expression("a.example/x")


def test_expression_hash() -> None:
    # FIPS 180-2 test vector for SHA-256("abc").
    assert canon.expression_hash("abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert canon.expression_hash("a.example/") != canon.expression_hash("a.example/x")


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("www.Example.COM", "www.example.com"),
        ("a.example.", "a.example"),
        ("Faß.example", "xn--fa-hia.example"),  # IDNA2008; IDNA2003 would say fass.example
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--fa-hia.example", "xn--fa-hia.example"),
        ("ａ．example", "a.example"),  # UTS 46 maps fullwidth letters and dots
        ("a。b.example", "a.b.example"),
        ("_dmarc.a.example", "_dmarc.a.example"),
        ("foo_bar.example", "foo_bar.example"),
        ("ab--cd.example", "ab--cd.example"),
        ("com", "com"),  # a valid name; the guardrails refuse blocking it
        ("0a.example", "0a.example"),
        ("123.example", "123.example"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
        (".".join(["a" * 63] * 3 + ["b" * 61]), ".".join(["a" * 63] * 3 + ["b" * 61])),
    ],
)
def test_canonical_name_accepts(text: str, expected: str) -> None:
    assert canon.canonical_name(text) == expected
    assert canon.canonical_name(expected) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty name"),
        (".", "root"),
        ("..", "empty label"),
        (".a.example", "empty label"),
        ("a..b.example", "empty label"),
        ("a.example..", "empty label"),
        ("a.example\n", "whitespace"),
        ("a.example\nevil.example. 60 IN A 192.0.2.1", "whitespace"),
        ("a\tb.example", "whitespace"),
        ("a b.example", "whitespace"),
        (" a.example", "whitespace"),
        ("a\x00.example", "control character"),
        ("a\x7f.example", "control character"),
        ("$INCLUDE", "'$'"),
        ("$ORIGIN.example", "'$'"),
        ("a.example;comment", "';'"),
        ("*.com", "wildcard"),
        ("a.*.example", "wildcard"),
        ("@", "'@'"),
        ("user@a.example", "'@'"),
        ("a\\.example", "'\\\\'"),
        ('a"b.example', "'\"'"),
        ("a'b.example", '"\'"'),
        ("a(b).example", "'('"),
        ("a.example/x", "'/'"),
        ("a.example:80", "':'"),
        ("a" * 64 + ".example", "longer than 63"),
        (".".join(["a" * 63] * 4), "longer than 253"),
        ("a" * 2000, "longer than 253"),
        ("192.0.2.1", "IP address"),
        ("3221225985", "IP address"),
        ("0xc0000201", "IP address"),
        ("2001:db8::1", "IP address"),
        ("[2001:db8::1]", "IP address"),
        ("1.2.3.4.5", "numeric top-level"),
        ("a.123", "numeric top-level"),
        ("999.0.2.1", "invalid IPv4"),
        ("-a.example", "hyphen"),
        ("a-.example", "hyphen"),
        ("xn--a.example", "A-label"),
        ("xn---bbk.example", "A-label"),  # non-canonical Punycode ("fake A-label")
        ("a＠b.example", "'@'"),  # fullwidth @ maps to @
        ("a\u202eb.example", "UTS 46"),
        ("\u0300a.example", "IDNA2008"),  # leading combining mark
        ("ab\u0300\u0301.exampl\u00e9\u0000", "control character"),
        ("\ud800.example", "not valid Unicode"),
    ],
)
def test_canonical_name_refuses_with_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidTarget) as info:
        canon.canonical_name(text)
    assert reason in info.value.reason
    if len(text) > 1:
        assert text not in str(info.value)


def test_canonical_name_single_label_limits() -> None:
    assert canon.canonical_name("a" * 63) == "a" * 63
    with pytest.raises(InvalidTarget):
        canon.canonical_name("a" * 64)


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 2001:DB8:0:0::1 ", "2001:db8::1"),
    ],
)
def test_canonical_ip(text: str, expected: str) -> None:
    assert canon.canonical_ip(text) == expected


@pytest.mark.parametrize("text", ["192.0.2", "a.example", "fe80::1%eth0", "192.0.2.01"])
def test_canonical_ip_refuses(text: str) -> None:
    with pytest.raises(InvalidTarget):
        canon.canonical_ip(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("192.0.2.7/24", "192.0.2.0/24"),  # host bits cleared, documented
        ("2001:DB8::/32", "2001:db8::/32"),
        ("198.51.100.1", "198.51.100.1/32"),
    ],
)
def test_canonical_cidr(text: str, expected: str) -> None:
    assert canon.canonical_cidr(text) == expected


@pytest.mark.parametrize("text", ["192.0.2.0/33", "a.example/24", "2001:db8::/129", ""])
def test_canonical_cidr_refuses(text: str) -> None:
    with pytest.raises(InvalidTarget):
        canon.canonical_cidr(text)


def test_short_ref_is_stable_and_opaque() -> None:
    ref = canon.short_ref("host:a.example")
    assert ref == canon.short_ref("host:a.example")
    assert "example" not in ref
    assert re.fullmatch(r"[0-9a-f]{12}", ref)


# --------------------------------------------------------------------------- properties


def _accepted(fn: Callable[[str], str], text: str) -> str | None:
    """``fn(text)``, or ``None`` when it refuses the input (always with a reason)."""
    try:
        return fn(text)
    except InvalidTarget as exc:
        if not exc.reason:
            raise
        return None


_ZONE_SAFE = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
_PROPS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)

_label_chars = st.sampled_from(
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") + list("äößçéñΩжя中ａ")
)
_labels = st.text(_label_chars, min_size=1, max_size=20)
_names = st.lists(_labels, min_size=1, max_size=5).map(".".join)
_plausible_names = st.one_of(
    _names,
    _names.map(lambda n: n + "."),
    _names.map(lambda n: n + ".example"),
    st.text(st.characters(codec="utf-8"), max_size=30),
)


@_PROPS
@given(st.one_of(st.text(), _plausible_names))
def test_canonical_name_output_is_zone_safe(text: str) -> None:
    name = _accepted(canon.canonical_name, text)
    if name is None:
        return
    assert _ZONE_SAFE.fullmatch(name)
    assert len(name) <= 253
    assert canon.canonical_name(name) == name


_path_chars = st.sampled_from([*"abcXYZ019/.%#?&=;~ \t\\:@", "%2e", "%2F", "%25", "%3F", "é"])
_paths = st.lists(_path_chars, max_size=25).map("".join)
_urls = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["http://", "https://", "HTTP://", "", "//", "http:"]),
    st.one_of(
        _names,
        st.sampled_from(["192.0.2.1", "3221225985", "0xc0.0.2.1", "[2001:db8::1]", "u@a.example"]),
    ),
    st.sampled_from(["", ":80", ":443", ":8080", ":"]),
    st.one_of(st.just(""), _paths.map(lambda p: "/" + p)),
)


@_PROPS
@given(st.one_of(_urls, st.text(max_size=60)))
def test_canonical_url_is_idempotent(text: str) -> None:
    url = _accepted(canon.canonical_url, text)
    if url is None:
        return
    assert canon.canonical_url(url) == url
    assert re.fullmatch(r"https?://[^/]+/[\x21-\x7e]*", url)
    exprs = canon.lookup_expressions(url)
    assert exprs == canon.lookup_expressions(text)
    assert 1 <= len(exprs) <= 30
    assert len(set(exprs)) == len(exprs)
    assert exprs[0].split("?")[0] == canon.url_expression(url).split("?")[0]


@_PROPS
@given(st.one_of(_urls, st.text(max_size=60)))
def test_request_readings_are_canonical(text: str) -> None:
    readings = _accepted(canon.request_urls, text)
    if readings is None:
        return
    assert readings
    assert len(set(readings)) == len(readings)
    assert all(canon.canonical_url(r) == r for r in readings)
    assert len(readings) <= 4
    if "#" not in text:
        assert readings[0] == canon.canonical_url(text)


_ldh_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_ldh_hosts = st.lists(_ldh_labels, min_size=1, max_size=4).map(
    lambda ls: ".".join([*ls, "example"])
)


@_PROPS
@given(_ldh_hosts, st.lists(st.from_regex(r"[A-Za-z0-9._~-]{1,8}", fullmatch=True), max_size=6))
def test_plausible_urls_are_accepted(host: str, segments: list[str]) -> None:
    # Keeps the idempotency property from being vacuous: ordinary URLs must pass.
    path = "/" + "/".join(segments)
    url = canon.canonical_url(f"http://{host.upper()}{path}")
    assert canon.url_host(url) == host
    assert url.startswith(f"http://{host}/")
