"""Domain list adapter: one name per line -> ``domain`` indicators (full snapshot).

Format: UTF-8 text, one name per line; ``#`` starts a whole-line comment, `` #`` a
trailing one; blank lines are skipped; a trailing dot is allowed. Refused (counted by
reason): ``$`` directives, control characters, wildcards (``*.name`` is not ``name``),
more than one token, URLs, and anything :func:`edgeagent.canon.canonical_name` rejects.
A ``# serial: N`` header is the feed's serial (see ``integrity.extract_serial``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

from edgeagent.canon import canonical_name
from edgeagent.errors import InvalidTarget
from edgeagent.feeds.base import (
    Accepted,
    FeedSpec,
    FetchedListConfig,
    FetchedListFeed,
    Item,
    Rejected,
)
from edgeagent.feeds.textutil import REASON_WILDCARD, decode, line_problem, lines, strip_comment
from edgeagent.model import Indicator, Scope

__all__ = ["DomainListFeed", "DomainListFeedConfig", "parse", "parse_name"]

REASON_NOT_A_NAME = "not-a-name"
REASON_INVALID = "invalid-name"
# Plain ASCII letters/digits/hyphen/underscore/dots (most lines of big lists): none of
# the pre-checks below can fire, so they are skipped; canon still validates the name.
_PLAIN = re.compile(r"[A-Za-z0-9_.-]{1,253}")
_NOT_IN_NAME = frozenset("/:@ \t")


def parse_name(value: str, scope: Scope, number: int, category: str) -> Item:
    """One name token -> Accepted or Rejected (shared with the URL list's domain marker)."""
    if _PLAIN.fullmatch(value) is None:
        refused = _precheck(value, number)
        if refused is not None:
            return refused
    try:
        # Scope is known to be a name scope here: canonicalise directly (hot path).
        ind = Indicator(scope, canonical_name(value))
    except InvalidTarget:
        return Rejected.of(REASON_INVALID, value, number)
    return Accepted(ind, category=category, line=number)


def _precheck(value: str, number: int) -> Rejected | None:
    """Reasons to refuse a token that is not plain LDH text, before canonicalisation."""
    problem = line_problem(value)
    if problem is not None:
        return Rejected.of(problem, value, number)
    if "*" in value:
        return Rejected.of(REASON_WILDCARD, value, number)
    if not value or not _NOT_IN_NAME.isdisjoint(value):
        return Rejected.of(REASON_NOT_A_NAME, value, number)
    return None


def parse(data: bytes, spec: FeedSpec) -> Iterator[Item]:
    text = decode(spec.name, data)
    for number, raw in lines(text):
        value = strip_comment(raw)
        if not value:
            continue
        yield parse_name(value, Scope.DOMAIN, number, spec.category)


class DomainListFeedConfig(FetchedListConfig):
    """One domain per line (comments allowed): whole-domain entries."""

    kind: Literal["domain-list"]


class DomainListFeed(FetchedListFeed[DomainListFeedConfig]):
    KIND = "domain-list"
    Config = DomainListFeedConfig
