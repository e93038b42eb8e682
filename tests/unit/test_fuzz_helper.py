"""Fuzzing the Squid helper's line protocol (edgeagent/proxy/squid_helper.py).

Properties, in URL and host mode: any request line gets exactly one answer line, which
echoes the line's channel id and carries a verdict of the documented grammar; the channel
id never changes the verdict; a byte stream of many lines (split anywhere by the pipe)
gets one answer per non-blank line, in order.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.model import Action, DesiredState, Entry, Indicator
from edgeagent.proxy.indexwriter import write_index
from edgeagent.proxy.squid_helper import Helper, serve
from tests.support.fuzzing import EXAMPLES, fuzz_settings, hostile_names, hostile_urls

LISTED = "http://mixed.site.test/gallery/listed.html"
_VERDICT = re.compile(rb"ERR|OK|OK message=[a-z0-9_:.-]+")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("helper") / "proxy-index.bin"
    blocks = [
        ("url", LISTED),
        ("url-prefix", "http://mixed.site.test/dir/"),
        ("domain", "whole.domain.test"),
        ("host", "h.site.test"),
        ("ip", "192.0.2.7"),
    ]
    entries = [Entry(Indicator.parse(s, v), Action.BLOCK, "iwf") for s, v in blocks]
    entries.sort(key=lambda e: e.indicator)
    write_index(DesiredState(1, tuple(entries), ()), path)
    return path


def _token(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


_channels = st.one_of(
    st.integers(0, 10**6).map(lambda n: str(n).encode()),
    st.sampled_from([b"OK", b"ERR", b"BH", b"-1", b"0x1", b"\xff", b"%20", b"9" * 40]),
)
_targets = st.one_of(
    hostile_urls.map(_token),
    hostile_names.map(_token),
    hostile_names.map(lambda n: _token(n) + b":443"),
    st.sampled_from([_token(LISTED), b"whole.domain.test:443", b"192.0.2.7:80"]),
    st.binary(max_size=40),
)
_methods = st.sampled_from([b"GET", b"CONNECT", b"POST", b"block", b"check", b"", b"get"])
_lines = st.builds(
    lambda parts, sep: sep.join(parts),
    st.lists(st.one_of(_channels, _targets, _methods), max_size=5),
    st.sampled_from([b" ", b"  ", b"\t", b" \x0b "]),
)


def _verdict(answer: bytes, channel: bytes) -> bytes:
    assert b"\n" not in answer
    assert b"\r" not in answer
    if channel:
        assert answer.startswith(channel + b" "), answer
        answer = answer[len(channel) + 1 :]
    assert _VERDICT.fullmatch(answer), answer
    return answer


@fuzz_settings(default=400, long=30_000)
@given(_lines, st.booleans())
def test_any_line_gets_one_well_formed_answer(index: Path, line: bytes, host_mode: bool) -> None:
    EXAMPLES.count("proxy.squid_helper.line")
    helper = Helper(index, host_mode=host_mode, check_interval=3600)
    parts = line.split()
    channel = parts[0] if len(parts) > 1 else b""
    verdict = _verdict(helper.answer(line), channel)
    if len(parts) > 1:
        # The channel id never changes the verdict.
        rest = b" ".join(parts[1:])
        assert _verdict(helper.answer(b"77 " + rest), b"77") == verdict


@fuzz_settings(default=100, long=5_000)
@given(st.lists(_lines, max_size=20), st.lists(st.integers(1, 64), max_size=10))
def test_a_stream_gets_one_answer_per_line_in_order(
    index: Path, lines: list[bytes], cuts: list[int]
) -> None:
    """``serve`` over real pipes, the input written in arbitrary pieces."""
    EXAMPLES.count("proxy.squid_helper.stream")
    # Each line carries a channel id and at least one more token, as Squid sends them
    # (a line of one token is a URL without a channel id).
    lines = [line for line in lines if b"\n" not in line and line.split()]
    numbered = [b"%d %s" % (i, line) for i, line in enumerate(lines)]
    data = b"".join(line + b"\n" for line in numbered)
    helper = Helper(index, check_interval=3600)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()

    def feed() -> None:
        pos = 0
        for cut in [*cuts, len(data)]:
            os.write(in_w, data[pos : pos + cut])
            pos += cut
        if pos < len(data):
            os.write(in_w, data[pos:])
        os.close(in_w)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        serve(helper, in_r, out_w)
    finally:
        writer.join()
        os.close(in_r)
        os.close(out_w)
    with os.fdopen(out_r, "rb") as out:
        answers = out.read().split(b"\n")
    assert answers.pop() == b""
    assert len(answers) == len(numbered)
    for i, answer in enumerate(answers):
        _verdict(answer, b"%d" % i)
