"""Hashed URL list adapter: hex SHA-256 of canonical lookup expressions (snapshot).

An ISP can enforce such a list on its proxy without ever holding the plain URLs. Format:
one ``HEX [category]`` per line (64 hex digits, case-insensitive, optional ``sha256:``
prefix), ``#`` comments. Each hash is that of a lookup expression as produced by
:func:`edgeagent.canon.lookup_expressions` and hashed by
:func:`edgeagent.canon.expression_hash`.

A hash cannot be canonicalised or checked against public suffixes, but it can be
compared with the hashes of the *host-root expressions* (``host/``) of every protected
name: a match would block a protected site's home page, so it is refused
(:func:`refuse_protected`). Such feeds give DNS no host names to divert: either the feed
names its hosts alongside (loaded as a URL or domain list), or the deployment diverts all
port-80 traffic to the proxy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Literal

from edgeagent import canon
from edgeagent.errors import short_hash
from edgeagent.feeds.base import (
    FeedSpec,
    FetchedListConfig,
    FetchedListFeed,
    HashedEntry,
    Item,
    Rejected,
)
from edgeagent.feeds.textutil import decode, line_problem, lines, strip_comment

__all__ = [
    "REASON_PROTECTED_ROOT",
    "HashedUrlListFeed",
    "HashedUrlListFeedConfig",
    "parse",
    "protected_root_hashes",
    "refuse_protected",
]

REASON_NOT_SHA256 = "not-sha256"
REASON_PROTECTED_ROOT = "protected-host-root"
_HEX = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")


def protected_root_hashes(names: Iterable[str]) -> frozenset[bytes]:
    """SHA-256 of each canonical name's host-root lookup expression (``name/``)."""
    return frozenset(canon.expression_hash(f"{n}/") for n in names)


def parse(data: bytes, spec: FeedSpec) -> Iterator[Item]:
    text = decode(spec.name, data)
    for number, raw in lines(text):
        value = strip_comment(raw)
        if not value:
            continue
        problem = line_problem(value)
        if problem is not None:
            yield Rejected.of(problem, value, number)
            continue
        token, _, rest = value.partition(" ")
        m = _HEX.match(token)
        if m is None:
            yield Rejected.of(REASON_NOT_SHA256, value, number)
            continue
        category = rest.strip() or spec.category
        yield HashedEntry(bytes.fromhex(m.group(1)), category, number)


def refuse_protected(items: Iterable[Item], protected: frozenset[bytes]) -> Iterator[Item]:
    """Pass items through, turning hashes of protected host roots into rejects."""
    for item in items:
        if isinstance(item, HashedEntry) and item.digest in protected:
            yield Rejected(REASON_PROTECTED_ROOT, short_hash(item.hex), item.line)
        else:
            yield item


class HashedUrlListFeedConfig(FetchedListConfig):
    """Hex SHA-256 of canonical lookup expressions (feeds the proxy index only)."""

    kind: Literal["hashed-url-list"]


class HashedUrlListFeed(FetchedListFeed[HashedUrlListFeedConfig]):
    KIND = "hashed-url-list"
    Config = HashedUrlListFeedConfig
