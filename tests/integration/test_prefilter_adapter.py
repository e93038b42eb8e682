"""The C++ side of the proxy path filter: Squid's eCAP adapter computes the Python keys.

The conformance tests feed raw paths to the adapter's test driver (``probe-main``, built
by ``make -C prefilter``) and compare its keys and answers with the Python
reference (:mod:`edgeagent.proxy.pathfilter`) byte for byte; a second build runs under
AddressSanitizer and UBSan on arbitrary bytes.
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from edgeagent.lab.proxy import PREFILTER_DIR
from edgeagent.model import Action, DesiredState, Entry, Indicator
from edgeagent.proxy.indexwriter import build_index
from edgeagent.proxy.pathfilter import PathFilter, probe_keys, write_path_filter

pytestmark = pytest.mark.integration

HOST = "h.example.com"


def _blocks(*entries: tuple[str, str]) -> DesiredState:
    """Policy version 7, blocking each ``(scope, value)``."""
    blocks = tuple(Entry(Indicator.parse(s, v), Action.BLOCK, "iwf") for s, v in entries)
    return DesiredState(7, blocks, ())


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
    state = _blocks(
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
    state = _blocks(("url", f"http://{HOST}/a"))
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
        _blocks(("url", f"http://{HOST}/a/b/"), ("url-prefix", f"http://{HOST}/x")), fpath
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
