"""The proxy path filter: never hides a listed URL, and the C++ adapter computes the same keys.

The filter is only safe if, for every request the index lists through a url or url-prefix
entry, the filter says "maybe". The property tests build entries from generated paths and
send generated spellings of them; the conformance tests feed the same raw paths to the
C++ adapter's test driver (``probe-main``, built by ``make -C resolvers/squid/ecap``) and
compare its keys and answers with the Python reference byte for byte.
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeagent import canon
from edgeagent.errors import InvalidTarget
from edgeagent.lab.proxy import PREFILTER_DIR
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.proxy.index import IndexReader, build_index
from edgeagent.proxy.pathfilter import (
    PathFilter,
    PathFilterError,
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


# --------------------------------------------------------------------------- C++ adapter


@pytest.fixture(scope="module")
def probe_main() -> Path:
    res = subprocess.run(
        ["make", "-s", "-C", str(PREFILTER_DIR)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, f"building the eCAP prefilter failed:\n{res.stderr}"
    return PREFILTER_DIR / "build" / "probe-main"


def _corpus() -> list[bytes]:
    rnd = random.Random(20261125)
    alphabet = "abAZ09/.%\\?#=&-_~2eEfF5c;3"
    out = [
        b"/",
        b"//",
        b"/a/b/",
        b"/a/./b/../c//d/",
        b"/%2e%2E/x",
        b"/%252e%252e/x",
        b"/%zz/%4",
        b"/a%2Fb/c",
        b"/a?b/c?d#e",
        b"/q?",
        b"\\a\\b?c\\d",
        b"/" + b"x/" * 40,
        b"/a b",
        b"*",
        b"/a#b",
        b"/a%23b",
        b"/a;x/b;y",
        b"/a/..;x/b",
        b"/a;x#y;z/c",
        b"/a%3Bx%23y",
    ]
    for _ in range(3000):
        n = rnd.randint(0, 24)
        out.append(("/" + "".join(rnd.choice(alphabet) for _ in range(n))).encode())
    return out


def test_adapter_keys_match_the_python_reference(probe_main: Path, tmp_path: Path) -> None:
    corpus = _corpus()
    state = _state(
        ("url", f"http://{HOST}/a/b/"),
        ("url", f"http://{HOST}/a?b/c?d"),
        ("url-prefix", f"http://{HOST}/x/"),
        ("url-prefix", f"http://{HOST}/a/b/c"),
    )
    fpath = tmp_path / "idx.bin.paths"
    write_path_filter(state, fpath)
    reference = PathFilter.open(fpath)
    res = subprocess.run(
        [str(probe_main), str(fpath)],
        input=b"\n".join(corpus) + b"\n",
        capture_output=True,
        check=True,
    )
    lines = res.stdout.decode().splitlines()
    assert len(lines) == len(corpus)
    wanted = 0
    for raw, line in zip(corpus, lines, strict=True):
        keys_text, _, wants = line.rpartition(" wants=")
        keys = probe_keys(raw)
        expected = "-" if keys is None else " ".join(f"{k:016x}" for k in keys)
        assert keys_text == expected, raw
        assert wants == ("1" if reference.wants(raw) else "0"), raw
        wanted += wants == "1"
    assert 0 < wanted < len(corpus)


def test_adapter_uses_the_filter_only_in_step_with_the_index(
    probe_main: Path, tmp_path: Path
) -> None:
    """A filter whose policy version is not the index's (stale, or the index is missing)
    could hide a new entry: the adapter then asks about every request."""
    state = _state(("url", f"http://{HOST}/a"))
    fpath = tmp_path / "idx.bin.paths"
    write_path_filter(state, fpath)  # policy version 7
    index = tmp_path / "idx.bin"

    def answers() -> list[str]:
        res = subprocess.run(
            [str(probe_main), str(fpath), "--index", str(index)],
            input=b"/a\n/b\n",
            capture_output=True,
            check=True,
        )
        return [ln.rsplit(" ", 1)[1] for ln in res.stdout.decode().splitlines()]

    assert answers() == ["wants=1", "wants=1"]  # no index yet
    index.write_bytes(build_index(state)[0])
    assert answers() == ["wants=1", "wants=0"]
    index.write_bytes(build_index(replace(state, version=8))[0])
    assert answers() == ["wants=1", "wants=1"]


def test_adapter_without_a_usable_filter_asks_for_everything(
    probe_main: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.paths"
    bad.write_bytes(b"garbage")
    for path in (tmp_path / "missing.paths", bad):
        res = subprocess.run(
            [str(probe_main), str(path)], input=b"/a\n/b/c\n", capture_output=True, check=True
        )
        assert [ln.rsplit(" ", 1)[1] for ln in res.stdout.decode().splitlines()] == [
            "wants=1",
            "wants=1",
        ]


def test_adapter_under_sanitizers_on_random_bytes(tmp_path: Path) -> None:
    """Arbitrary bytes (what a client can put in a request path) through the driver built
    with AddressSanitizer and UBSan: no finding, and the same keys as the reference."""
    res = subprocess.run(
        ["make", "-s", "-C", str(PREFILTER_DIR), "build/probe-main-asan"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    rnd = random.Random(7)
    alphabet = b"/%.\\?#abcAF0129ef\x00\x01\x7f\x80\xff "
    corpus = [b"/"] + [
        bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 300))) for _ in range(5000)
    ]
    fpath = tmp_path / "f.paths"
    write_path_filter(
        _state(("url", f"http://{HOST}/a/b/"), ("url-prefix", f"http://{HOST}/x")), fpath
    )
    run = subprocess.run(
        [str(PREFILTER_DIR / "build" / "probe-main-asan"), str(fpath)],
        input=b"\n".join(corpus) + b"\n",
        capture_output=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    lines = run.stdout.decode().splitlines()
    assert len(lines) == len(corpus)
    for raw, line in zip(corpus, lines, strict=True):
        keys = probe_keys(raw)
        expected = "-" if keys is None else " ".join(f"{k:016x}" for k in keys)
        assert line.rpartition(" wants=")[0] == expected, raw
