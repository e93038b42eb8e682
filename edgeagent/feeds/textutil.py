"""Line handling shared by the list adapters: decoding, comments, injection checks.

Reasons returned here are stable counter keys (see ``blocklists/samples/README.md``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from edgeagent.errors import FeedError

__all__ = [
    "REASON_CONTROL",
    "REASON_DIRECTIVE",
    "REASON_TOO_LONG",
    "REASON_WILDCARD",
    "decode",
    "line_problem",
    "lines",
    "strip_comment",
]

REASON_DIRECTIVE = "directive"  # $INCLUDE, $ORIGIN, ...: never followed
REASON_CONTROL = "control-character"  # embedded CR/LF/NUL etc.: injection attempt
REASON_WILDCARD = "wildcard"  # ``*`` anywhere in a name: we never guess its extent
REASON_TOO_LONG = "too-long"

MAX_LINE = 8192
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\u0085]")


def decode(feed: str, data: bytes) -> str:
    """UTF-8 text of a list (BOM tolerated); anything else is not a list."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data[:65536]:
        raise FeedError(feed, "binary data instead of a text list")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FeedError(feed, "list is not UTF-8 text") from exc


def lines(text: str) -> Iterator[tuple[int, str]]:
    """(number, line) pairs split on ``\\n`` only; a trailing ``\\r`` is dropped.

    Splitting on LF alone matters: ``str.splitlines`` would also split on CR, VT, FF and
    U+2028, turning one injected line into two "valid" ones.
    """
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line[:-1] if line.endswith("\r") else line


def strip_comment(line: str) -> str:
    """The line without a whole-line ``#`` comment or a trailing `` #`` comment."""
    s = line.strip(" \t")
    if "#" not in s:  # fast path: most lines of big lists carry no comment
        return s
    if s.startswith("#"):
        return ""
    cut = s.find(" #")
    tab = s.find("\t#")
    cuts = [c for c in (cut, tab) if c >= 0]
    if cuts:
        s = s[: min(cuts)]
    return s.strip(" \t")


def line_problem(value: str) -> str | None:
    """A reason to refuse ``value`` before canonicalisation, or None."""
    if len(value) > MAX_LINE:
        return REASON_TOO_LONG
    if value.startswith("$"):
        return REASON_DIRECTIVE
    if _CONTROL.search(value):
        return REASON_CONTROL
    return None
