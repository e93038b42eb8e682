"""The proxy path filter: never hides a listed URL.

The filter is only safe if, for every request the index lists through a url or url-prefix
entry, the filter says "maybe". The property tests build entries from generated paths and
send generated spellings of them. The C++ adapter's conformance with this reference is
tested in ``tests/integration/test_prefilter_adapter.py`` (it needs ``make`` and ``g++``).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeagent import canon
from edgeagent.errors import InvalidTarget
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.proxy.index import IndexReader
from edgeagent.proxy.indexwriter import build_index
from edgeagent.proxy.pathfilter import (
    PathFilter,
    PathFilterError,
    PathFilterModel,
    build_path_filter,
    entry_filter_key,
    filter_path,
    probe_keys,
    request_paths,
    write_path_filter,
)

HOST = "h.example.com"
SEGMENT = st.text(alphabet="abcXYZ019-_.~!$&'()*+,;=:@%", min_size=0, max_size=6)


def _state(*entries: tuple[str, str], allows: tuple[tuple[str, str], ...] = ()) -> DesiredState:
    return DesiredState(
        7,
        tuple(Entry(Indicator.parse(s, v), Action.BLOCK, "iwf") for s, v in entries),
        tuple(Entry(Indicator.parse(s, v), Action.ALLOW, "decision:1") for s, v in allows),
    )


def _filter(state: DesiredState, tmp_path: Path) -> PathFilter:
    path = tmp_path / "f.paths"
    path.write_bytes(build_path_filter(state)[0])
    return PathFilter.open(path)


def _spellings(path: str, rnd: random.Random) -> list[str]:
    """Equivalent raw spellings of canonical ``path`` (what a client may send)."""
    out = [path]
    enc = "".join(f"%{ord(c):02x}" if c.isalnum() and rnd.random() < 0.5 else c for c in path)
    out.append(enc)
    out.append(path.replace("/", "//", 1))
    out.append(path.replace("/", "/./", 1))
    out.append("/zz/.." + path)
    out.append("/%2e/" + path.lstrip("/"))
    out.append(path.replace("/", "\\", 1) if path.count("/") > 1 else path)
    out.append(path + "#frag")
    out.append(path + "%23frag")  # what Squid hands over for a raw "#"
    out.append(path.replace("a", "%2561", 1))  # double escape, unescaped until stable
    out.append(path + ";jsessionid=1")
    out.append(path.replace("/", "/x;p=1/..;q/", 1))
    base = path.split("?", 1)[0]
    out.extend(base + tail for tail in ("?", "?&", "?zz=1", "?zz=1#x"))
    if "?" in path:
        query = path.split("?", 1)[1]
        out.append(f"{base}?zz=1&{query}")  # an extra parameter
        out.append(f"{base}?{'&'.join(reversed(query.split('&')))}")  # another order
    return out


# --------------------------------------------------------------------------- Python side


def test_filter_keeps_listed_urls_in_every_spelling(tmp_path: Path) -> None:
    state = _state(
        ("url", f"http://{HOST}/gallery/listed.html"),
        ("url", f"http://{HOST}/view.php?id=7&x=a%20b"),
        ("url-prefix", f"http://{HOST}/private/"),
    )
    f = _filter(state, tmp_path)
    for raw in (
        "/gallery/listed.html",
        "/%67allery/listed%2Ehtml",
        "//gallery//listed.html",
        "/gallery/./listed.html",
        "/x/../gallery/listed.html",
        "\\gallery\\listed.html",
        "/view.php?id=%37&x=a%20b",
        "/view.php?id=8",  # the helper weighs the query
        "/private",
        "/private/",
        "/private/a/b/c.html?q=1",
        "/%70rivate/a",
        "/gallery/listed.html#x",
        "/gallery/listed.html%23x",
        "/gallery/listed.html?",
        "/gallery/listed.html?&",
        "/gallery/listed.html?a=1",
        "/gallery/listed.html;jsessionid=1",
        "/gallery/x/..;y/listed.html",
        "/private#x",
        "/private;x/y",
    ):
        assert f.wants(raw.encode()), raw
    for raw in (
        "/gallery/sibling.html",
        "/gallery/listed.htmlx",
        "/privatex/a",
        "/",
        "/view.phpx?id=7",
    ):
        assert not f.wants(raw.encode()), raw


def test_raw_paths_the_filter_does_not_judge(tmp_path: Path) -> None:
    f = _filter(_state(("url", f"http://{HOST}/a")), tmp_path)
    for raw in (b"*", b"", b"relative", b"/a b", b"/\xc3\xa9", b"/a\t", b"/\x7f"):
        assert request_paths(raw) is None
        assert f.wants(raw)


_RAW_PIECES = st.sampled_from([*"ab/.;#?=&\\%", "%23", "%2523", "%3B", "%3F", "%2e", ".."])


@settings(max_examples=400, deadline=None)
@given(st.lists(_RAW_PIECES, max_size=16).map(lambda ps: ("/" + "".join(ps)).encode()))
def test_request_paths_are_the_paths_of_the_helpers_readings(raw: bytes) -> None:
    """The filter reads a raw path exactly as :func:`canon.request_urls` reads the URL the
    helper gets, so every reading the helper may find listed is probed."""
    expected: list[bytes] = []
    for url in canon.request_urls(f"http://{HOST}{raw.decode()}"):
        path = canon.unescape_until_stable(url[len(f"http://{HOST}") :].split("?")[0].encode())
        if path not in expected:
            expected.append(path)
    assert request_paths(raw) == expected


def test_host_level_and_hashed_entries(tmp_path: Path) -> None:
    assert entry_filter_key(Scope.URL_PREFIX, f"http://{HOST}/") is None  # whole host
    assert entry_filter_key(Scope.HOST, HOST) is None
    f = _filter(_state(("host", HOST), ("url-prefix", f"http://{HOST}/")), tmp_path)
    assert not f.match_all
    assert not f.keys
    digest = "ab" * 32
    _data, match_all = build_path_filter(_state(("url-hash", digest)))
    assert match_all
    assert build_path_filter(DesiredState(1, (), ()), any_hashed=True)[1]


def test_a_filter_kept_by_change_is_the_one_built_afresh() -> None:
    """Entries come and go (two URLs sharing a key, a url-prefix, a hashed entry, a
    host entry the filter ignores); the model moved by each change writes the very bytes
    a whole build of that state does."""
    url_a, url_b = f"http://{HOST}/a?x=1", f"http://{HOST}/a?y=2"  # one key
    versions = [
        [("url", url_a), ("host", HOST)],
        [("url", url_a), ("url", url_b), ("url-prefix", f"http://{HOST}/p/")],
        [("url", url_b), ("url-prefix", f"http://{HOST}/p/"), ("url-hash", "cd" * 32)],
        [("url-prefix", f"http://{HOST}/p/")],
        [],
    ]
    states = [DesiredState(n, _state(*sorted(v)).blocks, ()) for n, v in enumerate(versions)]
    model = PathFilterModel.of(states[0])
    for state in states:
        model.change(state)
        assert model.render() == build_path_filter(state)
    assert not model.keys
    assert not model.hashed


def test_file_checks(tmp_path: Path) -> None:
    path = filter_path(tmp_path / "idx.bin")
    assert path.name == "idx.bin.paths"
    stats = write_path_filter(_state(("url", f"http://{HOST}/a")), path)
    assert stats.count == 1
    assert path.stat().st_mode & 0o777 == 0o640
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(PathFilterError, match="checksum"):
        PathFilter.open(path)
    path.write_bytes(b"EAPXIDX1" + bytes(100))
    with pytest.raises(PathFilterError, match="magic"):
        PathFilter.open(path)
    path.write_bytes(b"short")
    with pytest.raises(PathFilterError, match="truncated"):
        PathFilter.open(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    segments=st.lists(SEGMENT, min_size=1, max_size=5),
    query=st.one_of(st.none(), SEGMENT),
    prefix_depth=st.integers(min_value=1, max_value=5),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_property_index_match_implies_filter_maybe(
    segments: list[str], query: str | None, prefix_depth: int, seed: int
) -> None:
    """Whatever the index lists through url/url-prefix entries, the filter lets through."""
    raw_path = "/" + "/".join(segments) + ("" if query is None else "?" + query)
    try:
        url = canon.canonical_url(f"http://{HOST}{raw_path}")
    except InvalidTarget:
        return
    path = url[len(f"http://{HOST}") :].split("?", 1)[0]
    prefix = "/".join(path.split("/")[: prefix_depth + 1])
    entries = [("url", url)]
    if prefix.strip("/"):
        entries.append(("url-prefix", f"http://{HOST}{prefix}"))
    state = _state(*entries)
    data, _ = build_index(state)
    # A private file per example: a shared name lets a concurrent run rewrite it under the
    # reader's mmap (SIGBUS).
    fd, name = tempfile.mkstemp(prefix="edgeagent-pf-", suffix=".bin")
    os.close(fd)
    idx_file = Path(name)
    idx_file.write_bytes(data)
    try:
        reader = IndexReader.open(idx_file)
        keys = {k for s, v in entries if (k := entry_filter_key(Scope(s), v)) is not None}
        for spelled in _spellings(raw_path, random.Random(seed)):
            try:
                listed = reader.match(f"http://{HOST}{spelled}") is not None
            except InvalidTarget:
                continue
            probes = probe_keys(spelled.encode())
            if listed:
                assert probes is None or keys & set(probes), spelled
        reader.close()
    finally:
        idx_file.unlink()
