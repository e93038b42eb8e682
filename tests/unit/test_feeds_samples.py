"""Every sample feed line yields exactly the result annotated next to it (fail2ban style).

The annotations and how they are read: :mod:`tests.support.samples`.
"""

from __future__ import annotations

import pytest

from edgeagent.feeds import domainlist, hashedlist, urllist
from edgeagent.feeds.base import Accepted, FeedFormat, FeedKind, FeedSpec, HashedEntry, Item
from tests.support.samples import SAMPLES, inline_expectations, sidecar_expectations


def _result(item: Item) -> str:
    if isinstance(item, Accepted):
        return str(item.indicator.scope)
    if isinstance(item, HashedEntry):
        return "hash"
    return f"rejected: {item.reason}"


CASES = [
    ("police-domains.txt", FeedKind.DOMAIN_LIST, FeedFormat.LINES, False),
    ("court-orders.txt", FeedKind.DOMAIN_LIST, FeedFormat.LINES, False),
    ("hotline-urls.txt", FeedKind.URL_LIST, FeedFormat.LINES, False),
    ("hotline-urls.csv", FeedKind.URL_LIST, FeedFormat.CSV, True),
    ("hotline-urls.jsonl", FeedKind.URL_LIST, FeedFormat.JSONL, True),
    ("hashed-urls.txt", FeedKind.HASHED_URL_LIST, FeedFormat.LINES, False),
]


@pytest.mark.parametrize(("name", "kind", "fmt", "sidecar"), CASES)
def test_sample_lines_match_annotations(
    name: str, kind: FeedKind, fmt: FeedFormat, sidecar: bool
) -> None:
    path = SAMPLES / name
    expected = sidecar_expectations(path) if sidecar else inline_expectations(path)
    assert expected, "sample has no annotations"
    spec = FeedSpec(name="sample", kind=kind, format=fmt, category="S")
    data = path.read_bytes()
    if kind is FeedKind.DOMAIN_LIST:
        items = list(domainlist.parse(data, spec))
    elif kind is FeedKind.URL_LIST:
        items = list(urllist.parse(data, spec))
    else:
        protected = hashedlist.protected_root_hashes(["protected.example"])
        items = list(hashedlist.refuse_protected(hashedlist.parse(data, spec), protected))
    got = {item.line: _result(item) for item in items}
    assert len(got) == len(items), "two items claim the same line"
    assert got == expected


def test_every_sample_is_documented() -> None:
    readme = (SAMPLES / "README.md").read_text()
    for path in SAMPLES.iterdir():
        if path.name != "README.md" and not path.name.endswith(".expected"):
            assert path.name in readme, path.name


def test_rejects_never_carry_plain_text() -> None:
    spec = FeedSpec(name="sample", kind=FeedKind.DOMAIN_LIST)
    items = list(domainlist.parse(b"*.secret-name.example\n", spec))
    assert len(items) == 1
    assert "secret" not in repr(items[0])
