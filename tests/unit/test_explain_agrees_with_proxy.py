"""The lookup view ("why is this blocked?") answers for URLs what the proxy index does.

Both read a request the same way (every reading, query subsets, prefixes at ``/``
boundaries); a table of spellings is run through :meth:`PolicyIndex.explain` and
:meth:`IndexReader.match` over one policy and the two must agree on each.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeagent.model import Action, DesiredState, Entry, Indicator
from edgeagent.policy import PolicyIndex
from edgeagent.proxy.index import IndexReader, write_index

BLOCKS = (
    ("url", "http://site.test/listed/Page.html"),
    ("url", "http://site.test/shop/item?id=7&lang=en"),
    ("url-prefix", "http://site.test/dir"),
    ("url-prefix", "http://other.test/"),
)
SPELLINGS = (
    "http://site.test/listed/Page.html",
    "http://site.test/listed/Page.html#x",
    "http://site.test/listed/Page.html?",
    "http://site.test/listed/Page.html?&",
    "http://site.test/listed/Page.html?a=1",
    "http://site.test/listed/Page.html;x",
    "http://site.test/listed/Page%2ehtml",
    "http://SITE.test./listed/./Page.html",
    "http://site.test/listed/page.html",
    "http://site.test/listed/Page.html2",
    "http://site.test/shop/item?lang=en&id=7",
    "http://site.test/shop/item?id=7&lang=en&x=1",
    "http://site.test/shop/item?id=7",
    "http://site.test/shop/item",
    "http://site.test/dir",
    "http://site.test/dir/",
    "http://site.test/dir/a/b?q=1",
    "http://site.test/dirx",
    "http://site.test/dir;p/a",
    "http://site.test/di",
    "http://other.test/",
    "http://other.test/any/thing",
    "http://sub.other.test/any",
    "http://elsewhere.test/listed/Page.html",
)


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> tuple[PolicyIndex, IndexReader]:
    blocks = tuple(
        sorted(
            (Entry(Indicator.parse(s, v), Action.BLOCK, "hotline") for s, v in BLOCKS),
            key=lambda e: (e.indicator.scope.value, e.indicator.value),
        )
    )
    state = DesiredState(3, blocks, ())
    path = Path(tmp_path_factory.mktemp("index")) / "proxy.idx"
    write_index(state, path)
    return PolicyIndex(state), IndexReader.open(path)


@pytest.mark.parametrize("url", SPELLINGS)
def test_explain_and_the_proxy_agree(views: tuple[PolicyIndex, IndexReader], url: str) -> None:
    policy, index = views
    proxy_says = "stop-page" if index.match(url) is not None else "pass"
    assert policy.explain(url).proxy == proxy_says


def test_the_table_holds_both_answers(views: tuple[PolicyIndex, IndexReader]) -> None:
    policy, _ = views
    answers = {policy.explain(url).proxy for url in SPELLINGS}
    assert answers == {"stop-page", "pass"}
