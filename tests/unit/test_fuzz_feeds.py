"""Fuzzing the feed parsers: url-list (lines, CSV, JSON lines), domain-list, hashed list,
local files (plain and gzip), and the serial/digest header checks.

Properties: a bad *feed* raises :class:`FeedError` with a reason, a bad *line* becomes a
``Rejected`` item with a stable reason and a short hash (never the line), nothing else
escapes; accepted entries are canonical and never wider than the line says.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from edgeagent.errors import FeedError
from edgeagent.feeds import domainlist, hashedlist, integrity, localfile, urllist
from edgeagent.feeds.base import (
    Accepted,
    FeedFormat,
    FeedKind,
    FeedSpec,
    HashedEntry,
    Item,
    Parser,
    Rejected,
)
from edgeagent.model import Indicator, Scope
from tests.support.fuzzing import (
    EXAMPLES,
    fuzz_settings,
    hostile_names,
    hostile_urls,
    outcome,
)

_REASON = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_REF = re.compile(r"[0-9a-f]{12}")


def parse_all(parser: Parser, data: bytes, spec: FeedSpec) -> list[Item] | None:
    """Every item of ``data``; ``None`` when the whole feed is refused (with a reason)."""
    items = outcome(lambda: list(parser(data, spec)), FeedError)
    if isinstance(items, FeedError):
        assert items.reason
        return None
    assert isinstance(items, list)
    lines = data.count(b"\n") + 1
    for item in items:
        if isinstance(item, Rejected):
            assert _REASON.fullmatch(item.reason), item.reason
            assert _REF.fullmatch(item.ref), item.ref
        else:
            assert 1 <= item.line <= lines
        if isinstance(item, Accepted):
            ind = item.indicator
            assert Indicator.parse(ind.scope, ind.value) == ind  # canonical already
    return items


# One list line: hostile names and URLs, directives, markers, comments, raw text.
_line = st.one_of(
    hostile_urls,
    hostile_names,
    hostile_names.map(lambda n: f"domain:{n}"),
    hostile_urls.map(lambda u: u + "/*"),
    hostile_urls.map(lambda u: u + " # comment"),
    st.sampled_from(["$INCLUDE /etc/passwd", "$ORIGIN example.", "# serial: 7", "", " ", "\r"]),
    st.text(max_size=30),
)
_line_ends = st.sampled_from(["\n", "\r\n", "\r", "\u2028", "\x0b"])
_list_text = st.builds(
    lambda lines, end, bom: ("\ufeff" if bom else "") + end.join(lines),
    st.lists(_line, max_size=12),
    _line_ends,
    st.booleans(),
)
_list_bytes = st.one_of(
    _list_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=64),
)


def _spec(kind: FeedKind, fmt: FeedFormat = FeedFormat.LINES) -> FeedSpec:
    return FeedSpec(name="fuzz", kind=kind, format=fmt, category="csam")


@fuzz_settings(default=300, long=20_000)
@given(_list_bytes)
def test_url_list_lines(data: bytes) -> None:
    EXAMPLES.count("feeds.url-list.lines")
    items = parse_all(urllist.parse, data, _spec(FeedKind.URL_LIST))
    if items is None:
        return
    text = data.decode("utf-8-sig", "replace").split("\n")
    for item in items:
        if isinstance(item, Accepted):
            marked = text[item.line - 1].strip().lower().startswith("domain:")
            allowed = {Scope.DOMAIN} if marked else {Scope.URL, Scope.URL_PREFIX}
            assert item.indicator.scope in allowed  # never widened


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


_cell = st.one_of(_line, st.sampled_from(["url", "url-prefix", "prefix", "domain", "page", "x"]))
_csv_docs = st.one_of(
    st.builds(
        _csv_text,
        st.lists(st.sampled_from(["id", "url", "category", "added", "scope", "x"]), max_size=6),
        st.lists(st.lists(_cell, max_size=7), max_size=8),
    ),
    _list_text,
)


@fuzz_settings(default=300, long=20_000)
@given(_csv_docs)
@example('url\r\nhttp://,"http://\r/\r",http://\r\nhttp://.example\r\n')
@example("id,url\n1,http://innocent.example/\r2,http://evil.example/\n")
def test_url_list_csv(text: str) -> None:
    EXAMPLES.count("feeds.url-list.csv")
    data = text.encode("utf-8")
    items = parse_all(urllist.parse, data, _spec(FeedKind.URL_LIST, FeedFormat.CSV))
    physical = data.decode("utf-8-sig").split("\n")
    for item in items or ():
        if isinstance(item, Accepted):
            # One entry per physical line at most: a lone CR never splits a line.
            assert "\r" not in physical[item.line - 1].rstrip("\r"), item


_json_leaf = st.one_of(_line, st.integers(), st.none(), st.booleans(), st.floats())
_json_records = st.dictionaries(
    st.sampled_from(["id", "url", "category", "scope", "added", "x"]),
    st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=3), max_leaves=6),
    max_size=6,
)
_jsonl_line = st.one_of(
    _json_records.map(json.dumps),
    _line,
    st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),  # deeply nested
    st.integers(1, 5000).map(lambda n: '{"url": ' * n + "1" + "}" * n),
)


@fuzz_settings(default=300, long=20_000)
@given(st.lists(_jsonl_line, max_size=8))
@example(["[" * 5000 + "]" * 5000, '{"url": ' * 2000 + "1" + "}" * 2000])
@example(['{"url": "http://a.example/", "category": ' + "[" * 900 + "]" * 900 + "}"])
def test_url_list_jsonl(lines: list[str]) -> None:
    EXAMPLES.count("feeds.url-list.jsonl")
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    parse_all(urllist.parse, data, _spec(FeedKind.URL_LIST, FeedFormat.JSONL))


@fuzz_settings(default=300, long=20_000)
@given(_list_bytes)
def test_domain_list(data: bytes) -> None:
    EXAMPLES.count("feeds.domain-list")
    items = parse_all(domainlist.parse, data, _spec(FeedKind.DOMAIN_LIST))
    for item in items or ():
        if isinstance(item, Accepted):
            assert item.indicator.scope is Scope.DOMAIN


_hex = st.text("0123456789abcdefABCDEF", min_size=60, max_size=68)
_hashed_line = st.one_of(
    _hex,
    _hex.map(lambda h: "sha256:" + h),
    st.builds(lambda h, c: f"{h} {c}", _hex, _line),
    _line,
)


@fuzz_settings(default=300, long=20_000)
@given(st.lists(_hashed_line, max_size=10), _line_ends)
def test_hashed_list(lines: list[str], end: str) -> None:
    EXAMPLES.count("feeds.hashed-url-list")
    data = end.join(lines).encode("utf-8", "surrogatepass")
    spec = _spec(FeedKind.HASHED_URL_LIST)
    items = parse_all(hashedlist.parse, data, spec)
    if items is None:
        return
    protected = hashedlist.protected_root_hashes(["protected.example"])
    for item in hashedlist.refuse_protected(items, protected):
        if isinstance(item, HashedEntry):
            assert len(item.digest) == 32
            assert item.digest not in protected


def _gzip_variants(body: bytes) -> st.SearchStrategy[bytes]:
    packed = gzip.compress(body)
    return st.sampled_from([body, packed, packed[: len(packed) // 2], packed + b"junk"])


@fuzz_settings(default=150, long=5_000)
@given(
    _list_bytes.flatmap(_gzip_variants),
    st.sampled_from(list(FeedKind)),
    st.sampled_from(list(FeedFormat)),
    st.integers(1, 4096),
)
def test_local_file(
    tmp_path: Path, body: bytes, content: FeedKind, fmt: FeedFormat, cap: int
) -> None:
    """A local list file of any content and size, read under a cap and then parsed."""
    EXAMPLES.count("feeds.local-file")
    path = tmp_path / "list.txt"
    path.write_bytes(body)
    spec = FeedSpec(
        name="fuzz",
        kind=FeedKind.LOCAL_FILE,
        path=path,
        content=content,
        format=fmt,
        max_bytes=cap,
        max_decompressed_bytes=cap,
    )
    read = outcome(lambda: localfile.read(spec), FeedError)
    if isinstance(read, FeedError):
        assert read.reason
        return
    assert isinstance(read, localfile.LocalRead)
    assert len(read.body) <= cap
    parser = {
        FeedKind.URL_LIST: urllist.parse,
        FeedKind.DOMAIN_LIST: domainlist.parse,
        FeedKind.HASHED_URL_LIST: hashedlist.parse,
    }.get(spec.list_kind)
    if parser is not None:
        parse_all(parser, read.body, spec)


_serials = st.one_of(
    st.integers(0, 2**64).map(str),
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.text(max_size=12),
    st.integers(4000, 5000).map(lambda n: "9" * n),
)


@fuzz_settings(default=300, long=20_000)
@given(_serials, _serials, st.binary(max_size=80))
def test_serial_and_digest_headers(previous: str, new: str, digest_file: bytes) -> None:
    EXAMPLES.count("feeds.integrity")
    body = f"# serial: {new}\nexample.com\n".encode("utf-8", "surrogatepass")
    serial = integrity.extract_serial(body)
    assert "\n" not in serial
    for check in (
        lambda: integrity.check_serial("fuzz", previous, serial),
        lambda: integrity.verify_digest("fuzz", body, digest_file),
    ):
        got = outcome(check, FeedError)
        assert not isinstance(got, FeedError) or got.reason
