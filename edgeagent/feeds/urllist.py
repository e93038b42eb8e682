"""URL list adapter: hotline page lists -> ``url`` / ``url-prefix`` / ``domain`` (snapshot).

Formats (``FeedSpec.format``):

- ``lines``: one entry per line, ``#`` whole-line and `` #`` trailing comments.
  ``URL`` -> ``url``; ``URL*`` (a path ending in ``/*``) -> ``url-prefix`` of that path;
  ``domain:NAME`` -> ``domain``. Nothing else widens an entry.
- ``csv``: a header row with at least ``url``; the optional columns are ``id`` (kept as
  the entry's reference), ``category``, ``added`` and ``scope`` (``url``,
  ``url-prefix``/``prefix``, ``domain``). Quoted fields may span lines; a URL that then
  contains a line break is refused as an injection.
- ``jsonl``: one JSON object per line with the same field names.

A URL without a scheme is taken as ``http://``. A bare host is the URL of its root page,
never the host. Refused (counted): directives, control characters, wildcards in the host,
non-http(s) schemes, URLs that :func:`edgeagent.canon.canonical_url` rejects, unknown
``scope`` values, a ``domain`` marker on something that is not a name.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from edgeagent.errors import FeedError, InvalidTarget
from edgeagent.feeds import domainlist
from edgeagent.feeds.base import (
    Accepted,
    FeedFormat,
    FeedSpec,
    FetchedListConfig,
    FetchedListFeed,
    Item,
    Rejected,
)
from edgeagent.feeds.textutil import (
    REASON_CONTROL,
    REASON_WILDCARD,
    decode,
    line_problem,
    lines,
    strip_comment,
)
from edgeagent.model import Indicator, Scope

__all__ = ["UrlListFeed", "UrlListFeedConfig", "parse", "parse_entry"]

REASON_INVALID = "invalid-url"
REASON_SCHEME = "unsupported-scheme"
REASON_SCOPE = "unknown-scope"
REASON_JSON = "bad-json"
REASON_NO_URL = "missing-url"

_SCOPES = {
    "": Scope.URL,
    "url": Scope.URL,
    "page": Scope.URL,
    "url-prefix": Scope.URL_PREFIX,
    "prefix": Scope.URL_PREFIX,
    "domain": Scope.DOMAIN,
}


def _host_part(url: str) -> str:
    rest = url.split("://", 1)[1] if "://" in url else url
    for sep in "/?#":
        rest = rest.split(sep, 1)[0]
    return rest.rsplit("@", 1)[-1]


def parse_entry(
    value: str, scope_text: str, number: int, category: str, reference: str = ""
) -> Item:
    """One URL (or domain-marked name) plus its declared scope -> Accepted or Rejected."""
    problem = line_problem(value)
    if problem is not None:
        return Rejected.of(problem, value, number)
    scope = _SCOPES.get(scope_text.strip().lower())
    if scope is None:
        return Rejected.of(REASON_SCOPE, value, number)
    if scope is Scope.DOMAIN:
        item = domainlist.parse_name(value, Scope.DOMAIN, number, category)
        if isinstance(item, Accepted) and reference:
            return Accepted(item.indicator, category=category, reference=reference, line=number)
        return item
    if value.endswith("/*"):
        # An explicit prefix marker; the star is not part of the URL.
        value = value[:-1]
        scope = Scope.URL_PREFIX
    if "*" in _host_part(value) or "*" in value:
        return Rejected.of(REASON_WILDCARD, value, number)
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            return Rejected.of(REASON_SCHEME, value, number)
    elif ":" in value.split("/", 1)[0] and not value.split("/", 1)[0].rsplit(":", 1)[1].isdigit():
        return Rejected.of(REASON_SCHEME, value, number)  # mailto:, javascript:, ...
    try:
        ind = Indicator.parse(scope, value)
    except (InvalidTarget, ValueError):
        return Rejected.of(REASON_INVALID, value, number)
    return Accepted(ind, category=category, reference=reference, line=number)


def _from_record(rec: Mapping[str, Any], number: int, default_category: str, raw: str) -> Item:
    """One CSV row or JSON object; ``raw`` is its text, hashed to name a rejected record."""
    url = rec.get("url")
    if not isinstance(url, str) or not url.strip():
        return Rejected.of(REASON_NO_URL, raw, number)
    fields = [rec.get(key) for key in ("category", "id", "scope")]
    if any(isinstance(value, list | dict) for value in fields):
        # Text expected; a nested structure is malformed (and str() of a deep one recurses).
        return Rejected.of(REASON_JSON, raw, number)
    category = str(fields[0] or default_category)
    ref = str(fields[1] or "")
    scope = str(fields[2] or "")
    for text in (category, ref, scope):
        problem = line_problem(text)
        if problem is not None:
            return Rejected.of(problem, url, number)
    return parse_entry(url.strip(), scope, number, category, ref)


def _lines(text: str, spec: FeedSpec) -> Iterator[Item]:
    for number, raw in lines(text):
        value = strip_comment(raw)
        if not value:
            continue
        if value.lower().startswith("domain:"):
            yield parse_entry(value[7:].strip(), "domain", number, spec.category)
        else:
            yield parse_entry(value, "", number, spec.category)


# The csv module ends a record at a lone CR, where lines() (LF only) sees none: one line
# would become two entries. A lone CR is swapped for this stand-in, which the reader keeps
# inside its field, and a record holding one is refused as a whole.
_LONE_CR = "\x85"  # NEL: a control character, refused wherever it stands anyway


def _csv(text: str, spec: FeedSpec) -> Iterator[Item]:
    body = "\n".join(
        "" if line.lstrip().startswith("#") else line.replace("\r", _LONE_CR)
        for _, line in lines(text)
    )
    reader = csv.reader(io.StringIO(body, newline=""), strict=False)
    header: list[str] | None = None
    end = 0
    try:
        for row in reader:
            number, end = end + 1, reader.line_num  # a quoted field may span lines
            if not row or all(not c.strip() for c in row):
                continue
            if header is None:
                header = [c.strip().lower() for c in row]
                if "url" not in header:
                    raise FeedError(spec.name, "CSV header has no 'url' column")
                continue
            if any(_LONE_CR in c for c in row):
                yield Rejected.of(REASON_CONTROL, ",".join(row), number)
                continue
            if len(row) > len(header):
                yield Rejected.of("extra-columns", ",".join(row), number)
                continue
            record = dict(zip(header, row, strict=False))
            yield _from_record(record, number, spec.category, ",".join(row))
    except csv.Error as exc:  # e.g. a field over the csv module's size limit
        raise FeedError(spec.name, f"CSV syntax error at line {reader.line_num}") from exc


def _jsonl(text: str, spec: FeedSpec) -> Iterator[Item]:
    for number, raw in lines(text):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        try:
            rec = json.loads(s)
        except (ValueError, RecursionError):
            # RecursionError: a deeply nested line exhausts the decoder's stack.
            yield Rejected.of(REASON_JSON, s, number)
            continue
        if not isinstance(rec, dict):
            yield Rejected.of(REASON_JSON, s, number)
            continue
        yield _from_record(rec, number, spec.category, s)


def parse(data: bytes, spec: FeedSpec) -> Iterator[Item]:
    text = decode(spec.name, data)
    if spec.format is FeedFormat.CSV:
        return _csv(text, spec)
    if spec.format is FeedFormat.JSONL:
        return _jsonl(text, spec)
    return _lines(text, spec)


class UrlListFeedConfig(FetchedListConfig):
    """Hotline page list: one URL per line, or CSV / JSON lines with id, url, category."""

    kind: Literal["url-list"]


class UrlListFeed(FetchedListFeed[UrlListFeedConfig]):
    KIND = "url-list"
    Config = UrlListFeedConfig
