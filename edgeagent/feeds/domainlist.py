"""Domain list adapter: one name per line -> ``domain`` indicators (full snapshot).

Format: UTF-8 text, one name per line; ``#`` starts a whole-line comment, `` #`` a
trailing one; blank lines are skipped; a trailing dot is allowed. Refused (counted by
reason): ``$`` directives, control characters, wildcards (``*.name`` is not ``name``),
more than one token, URLs, and anything :func:`edgeagent.canon.canonical_name` rejects.
A ``# serial: N`` header is the feed's serial (see ``integrity.extract_serial``).
"""

from __future__ import annotations

from collections.abc import Iterator

from edgeagent.errors import InvalidTarget
from edgeagent.feeds.base import Accepted, FeedSpec, Item, Rejected
from edgeagent.feeds.textutil import REASON_WILDCARD, decode, line_problem, lines, strip_comment
from edgeagent.model import Indicator, Scope

__all__ = ["parse", "parse_name"]

REASON_NOT_A_NAME = "not-a-name"
REASON_INVALID = "invalid-name"


def parse_name(value: str, scope: Scope, number: int, category: str) -> Item:
    """One name token -> Accepted or Rejected (shared with the URL list's domain marker)."""
    problem = line_problem(value)
    if problem is not None:
        return Rejected.of(problem, value, number)
    if "*" in value:
        return Rejected.of(REASON_WILDCARD, value, number)
    if any(c in value for c in "/:@ \t") or not value:
        return Rejected.of(REASON_NOT_A_NAME, value, number)
    try:
        ind = Indicator.parse(scope, value)
    except InvalidTarget:
        return Rejected.of(REASON_INVALID, value, number)
    return Accepted(ind, category=category, line=number)


def parse(data: bytes, spec: FeedSpec) -> Iterator[Item]:
    text = decode(spec.name, data)
    for number, raw in lines(text):
        value = strip_comment(raw)
        if not value:
            continue
        yield parse_name(value, Scope.DOMAIN, number, spec.category)
