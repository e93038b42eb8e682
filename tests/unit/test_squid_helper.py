"""Squid helper: channel-ID protocol in a subprocess, index swaps, corrupt files, fail modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeagent.model import Action, DesiredState, Entry, Indicator
from edgeagent.proxy.indexwriter import write_index
from edgeagent.proxy.squid_helper import Helper, read_stats

LISTED = "http://mixed.site.test/gallery/listed.html"
SIBLING = "http://mixed.site.test/gallery/sibling.html"


def _state(version: int, *items: tuple[str, str]) -> DesiredState:
    return DesiredState(
        version, tuple(Entry(Indicator.parse(s, v), Action.BLOCK, "iwf") for s, v in items), ()
    )


class HelperProcess:
    """The real console entry point in a subprocess, spoken to line by line."""

    def __init__(self, index: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeagent.proxy.squid_helper", "--index", str(index), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def ask(self, *lines: str) -> list[str]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("".join(line + "\n" for line in lines).encode())
        self.proc.stdin.flush()
        return [self.proc.stdout.readline().decode().rstrip("\n") for _ in lines]

    def close(self) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode()


@pytest.fixture
def index(tmp_path: Path) -> Path:
    path = tmp_path / "proxy-index.bin"
    write_index(
        _state(1, ("url", LISTED), ("domain", "whole.domain.test"), ("host", "h.site.test")),
        path,
    )
    return path


def test_channel_protocol_over_stdio(index: Path, tmp_path: Path) -> None:
    stats = tmp_path / "stats-%p.json"
    h = HelperProcess(index, "--stats-file", str(stats))
    try:
        answers = h.ask(
            f"0 {LISTED} GET",
            f"1 {SIBLING} GET",
            "2 http://MIXED.site.test:80/gallery/./listed.html GET",
            "3 whole.domain.test:443 CONNECT",
            "4 mixed.site.test:443 CONNECT",
            "5 unlisted.site.test:443 CONNECT",
            "6 http://a.whole.domain.test/ POST",
            "7 http://%zz%[bad/ GET",
        )
    finally:
        err = h.close()
    assert answers == [
        "0 OK message=iwf",
        "1 ERR",
        "2 OK message=iwf",
        "3 OK message=iwf",
        "4 ERR",
        "5 ERR",
        "6 OK message=iwf",
        "7 ERR",
    ]
    assert "listed.html" not in err  # no URL in cache.log
    files = list(tmp_path.glob("stats-*.json"))
    assert len(files) == 1
    counters = read_stats(files)
    assert counters["requests"] == 8
    assert counters["listed"] == 4
    assert counters["https_unenforceable"] == 1
    assert counters["connect_refused"] == 1
    assert counters["invalid"] == 1
    assert counters["policy_version"] == 1
    assert "listed.html" not in files[0].read_text()


def test_squid_forms_of_the_listed_page_over_stdio(tmp_path: Path) -> None:
    """What Squid 5 hands over (``%URI``, a raw ``#`` escaped as ``%23``) for spellings a
    hostile review got through: the listed page is refused, its siblings are not."""
    index = tmp_path / "proxy-index.bin"
    write_index(
        _state(
            1,
            ("url", "http://site.test/listed/Page.html"),
            ("url-prefix", "http://site.test/listed/dir"),
            ("url", "http://site.test/view.php?id=1"),
        ),
        index,
    )
    refused = [
        "http://site.test:8080/listed/Page.html%23x",
        "http://site.test/listed/Page.html?",
        "http://site.test/listed/Page.html?&",
        "http://site.test/listed/Page.html?a=1",
        "http://site.test/listed/Page.html;jsessionid=1",
        "http://site.test/listed/dir",
        "http://site.test/listed/dir/x",
        "http://site.test/listed/dir?x",
        "http://site.test/listed/dir%23x",
        "http://site.test/listed/dir;x/y",
        "http://site.test/view.php?x=2&id=1",
    ]
    passed = [
        "http://site.test/listed/Sibling.html",
        "http://site.test/listed/dirx",
        "http://site.test/listed/directory/x",
        "http://site.test/view.php?id=2",
        "http://site.test/view.php",
    ]
    h = HelperProcess(index)
    try:
        answers = h.ask(*(f"{i} {url} GET" for i, url in enumerate(refused + passed)))
    finally:
        h.close()
    n = len(refused)
    assert answers[:n] == [f"{i} OK message=iwf" for i in range(n)]
    assert answers[n:] == [f"{i} ERR" for i in range(n, n + len(passed))]


def test_new_index_is_noticed_without_restart(index: Path) -> None:
    h = HelperProcess(index, "--check-interval", "0")
    try:
        assert h.ask(f"0 {SIBLING}") == ["0 ERR"]
        write_index(_state(2, ("url", SIBLING)), index)
        assert h.ask(f"1 {SIBLING}", f"2 {LISTED}") == ["1 OK message=iwf", "2 ERR"]
    finally:
        err = h.close()
    assert "policy version 2" in err


def test_corrupt_or_missing_index_keeps_the_last_good_one(index: Path) -> None:
    h = HelperProcess(index, "--check-interval", "0")
    try:
        assert h.ask(f"0 {LISTED}") == ["0 OK message=iwf"]
        data = bytearray(index.read_bytes())
        data[-1] ^= 0xFF
        tmp = index.with_suffix(".new")
        tmp.write_bytes(bytes(data))
        os.replace(tmp, index)
        assert h.ask(f"1 {LISTED}") == ["1 OK message=iwf"]
        index.unlink()
        assert h.ask(f"2 {LISTED}") == ["2 OK message=iwf"]
    finally:
        err = h.close()
    assert "checksum mismatch" in err
    assert "keeping the last good index" in err


@pytest.mark.parametrize(
    ("mode", "expected"), [("open", "ERR"), ("closed", "OK message=unavailable")]
)
def test_fail_mode_before_first_index(tmp_path: Path, mode: str, expected: str) -> None:
    index = tmp_path / "later.bin"
    h = HelperProcess(index, "--fail-mode", mode, "--check-interval", "0")
    try:
        assert h.ask(f"0 {LISTED}") == [f"0 {expected}"]
        write_index(_state(3, ("url", LISTED)), index)
        assert h.ask(f"1 {LISTED}", f"2 {SIBLING}") == ["1 OK message=iwf", "2 ERR"]
    finally:
        err = h.close()
    assert f"fail-{mode}" in err


def test_in_process_counts_before_load_and_reload_throttle(tmp_path: Path) -> None:
    index = tmp_path / "i.bin"
    helper = Helper(index, fail_closed=True, check_interval=3600)
    assert helper.answer(f"9 {LISTED}".encode()) == b"9 OK message=unavailable"
    assert helper.stats.before_load_refused == 1
    write_index(_state(4, ("url", LISTED)), index)
    assert not helper.maybe_reload()  # throttled: next look in an hour
    assert helper.maybe_reload(force=True)
    assert helper.answer(LISTED.encode()) == b"OK message=iwf"


def test_read_stats_sums_files_and_skips_bad_ones(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"requests": 2, "policy_version": 5}))
    (tmp_path / "b.json").write_text(json.dumps({"requests": 3, "policy_version": 4}))
    (tmp_path / "c.json").write_text("{not json")
    total = read_stats(sorted(tmp_path.glob("*.json")))
    assert total["requests"] == 5
    assert total["policy_version"] == 4


def test_host_mode_over_stdio(tmp_path: Path) -> None:
    """``--mode host``: whole-host blocks, url-prefix for the root, allows make it "check"."""
    index = tmp_path / "proxy-index.bin"
    write_index(
        _state(
            1,
            ("url", LISTED),
            ("domain", "whole.domain.test"),
            ("host", "h.site.test"),
            ("url-prefix", "http://root.site.test/"),
            ("url-prefix", "http://192.0.2.7/"),
        ),
        index,
    )
    h = HelperProcess(index, "--mode", "host")
    try:
        answers = h.ask(
            "0 a.whole.domain.test block",
            "1 H.Site.Test block",
            "2 sub.h.site.test block",
            "3 root.site.test block",
            "4 192.0.2.7 block",
            "5 mixed.site.test block",
            "6 a.whole.domain.test check",
            "7 %zz block",
        )
    finally:
        h.close()
    assert answers == [
        "0 OK message=iwf",
        "1 OK message=iwf",
        "2 ERR",
        "3 OK message=iwf",
        "4 OK message=iwf",
        "5 ERR",  # URL-level entries only: the path prefilter and per-URL answers decide
        "6 ERR",
        "7 ERR",
    ]
    # With an allow entry in the policy a blocked host is "check", never "block".
    write_index(
        DesiredState(
            2,
            (Entry(Indicator.parse("domain", "whole.domain.test"), Action.BLOCK, "iwf"),),
            (Entry(Indicator.parse("url", "http://a.whole.domain.test/ok"), Action.ALLOW, "x"),),
        ),
        index,
    )
    h = HelperProcess(index, "--mode", "host")
    try:
        assert h.ask("0 a.whole.domain.test block", "1 a.whole.domain.test check") == [
            "0 ERR",
            "1 OK",
        ]
    finally:
        h.close()


def test_host_mode_fail_closed_before_any_index(tmp_path: Path) -> None:
    helper = Helper(tmp_path / "missing.bin", fail_closed=True, host_mode=True)
    assert helper.answer(b"0 a.site.test block") == b"0 OK message=unavailable"
    assert helper.answer(b"1 a.site.test check") == b"1 ERR"
    assert Helper(tmp_path / "missing.bin", host_mode=True).answer(b"2 a.test block") == b"2 ERR"


def test_the_canary_is_answered_with_the_version_of_the_index(tmp_path: Path) -> None:
    canary = "http://canary.edgeagent.example/edgeagent-canary"
    index = tmp_path / "index.bin"
    for version in (7, 8):
        state = DesiredState(
            version,
            (
                Entry(Indicator.parse("url", canary), Action.BLOCK, "canary"),
                Entry(Indicator.parse("url", LISTED), Action.BLOCK, "iwf"),
            ),
            (),
        )
        write_index(state, index)
        helper = Helper(index)
        assert (
            helper.answer(f"0 {canary} GET".encode()) == f"0 OK message=canary.v{version}".encode()
        )
        assert helper.answer(f"1 {LISTED} GET".encode()) == b"1 OK message=iwf"


def test_the_canary_reader_takes_the_version_from_the_redirect() -> None:
    from edgeagent.proxy.canary import _SEEN_VERSION

    def seen(location: str) -> int | None:
        m = _SEEN_VERSION.search(location)
        return int(m.group(1)) if m else None

    assert seen("http://stop.test/blocked?source=canary.v42") == 42
    assert seen("http://stop.test/blocked?source=canary.v42&x=1") == 42
    assert seen("http://stop.test/blocked?source=canary") is None
    assert seen("http://stop.test/blocked?source=iwf.v42") is None
