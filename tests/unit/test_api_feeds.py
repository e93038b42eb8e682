"""Feed routes: status for the NOC, sync by analysts, held generations for supervisors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edgeagent.api import create_app
from edgeagent.api.feed_routes import feed_routes
from edgeagent.api.routes import ROUTES
from edgeagent.feeds.base import FeedFormat, FeedKind, FeedSpec
from edgeagent.feeds.runner import FeedRunner
from edgeagent.metrics import Metrics
from edgeagent.store import SqliteStore
from tests.support.api import add_tokens, make_context, make_guard


def _write(path: Path, n: int) -> None:
    path.write_text("".join(f"site{i}.listed.example\n" for i in range(n)), encoding="utf-8")


class Harness:
    def __init__(self, client: TestClient[Any, Any], tokens: dict[str, str], lst: Path) -> None:
        self.client, self.tokens, self.list = client, tokens, lst

    async def call(self, method: str, path: str, who: str, json: Any = None) -> tuple[int, Any]:
        resp = await self.client.request(
            method, path, json=json, headers={"Authorization": f"Bearer {self.tokens[who]}"}
        )
        return resp.status, await resp.json()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Harness]:
    store = SqliteStore(tmp_path / "store.sqlite3")
    guard = make_guard(tmp_path / "protected")
    tokens = add_tokens(store)
    lst = tmp_path / "police.txt"
    _write(lst, 200)
    spec = FeedSpec(
        name="police",
        kind=FeedKind.LOCAL_FILE,
        content=FeedKind.DOMAIN_LIST,
        format=FeedFormat.LINES,
        path=lst,
    )
    runner = FeedRunner([spec], store, guard, Metrics())
    app = create_app(make_context(store, guard), (*ROUTES, *feed_routes(runner)))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Harness(client, tokens, lst)
    finally:
        await client.close()
        await runner.close()
        store.close()


async def test_sync_approve_and_discard_a_held_generation(api: Harness) -> None:
    status, body = await api.call("POST", "/v1/feeds/police/sync", "analyst")
    assert (status, body["outcome"], body["entries"]) == (200, "live", 200)

    _write(api.list, 20)  # a 90 % shrink: held, the 200 stay live
    status, body = await api.call("POST", "/v1/feeds/police/sync", "analyst")
    assert (status, body["outcome"]) == (200, "held")
    assert "shrink" in body["reason"] or "remov" in body["reason"]

    status, feed = await api.call("GET", "/v1/feeds/police", "noc")
    assert status == 200
    assert feed["entries"] == 200
    assert feed["held"]["entries"] == 20
    # What approving it would change: counts for everyone, the entries for a supervisor.
    live = feed["held"]["changes"]["live_generation"]
    assert feed["held"]["changes"] == {"live_generation": live, "added": 0, "removed": 180}
    assert "listed.example" not in repr(feed)
    status, feed = await api.call("GET", "/v1/feeds/police", "analyst")
    assert "added_entries" not in feed["held"]["changes"]
    status, feed = await api.call("GET", "/v1/feeds/police", "supervisor")
    changes = feed["held"]["changes"]
    assert (changes["added_entries"], changes["truncated"]) == ([], False)
    removed = {e["target"] for e in changes["removed_entries"]}
    assert removed == {f"site{i}.listed.example" for i in range(20, 200)}
    assert changes["removed_entries"][0]["action"] == "block"

    status, body = await api.call(
        "POST", "/v1/feeds/police/approve", "analyst", json={"reason": "checked"}
    )
    assert status == 403
    status, body = await api.call("POST", "/v1/feeds/police/approve", "supervisor", json={})
    assert status == 400
    assert body["error"]["field"] == "reason"
    status, body = await api.call(
        "POST", "/v1/feeds/police/approve", "supervisor", json={"reason": "hotline confirmed"}
    )
    assert (status, body["status"], body["entries"]) == (200, "live", 20)

    _write(api.list, 0)  # empty: held
    status, body = await api.call("POST", "/v1/feeds/police/sync", "analyst")
    assert body["outcome"] == "held"
    status, body = await api.call(
        "POST", "/v1/feeds/police/discard", "supervisor", json={"reason": "broken export"}
    )
    assert (status, body["status"]) == (200, "discarded")
    status, feeds = await api.call("GET", "/v1/feeds", "noc")
    assert feeds["feeds"]["police"]["entries"] == 20
    assert feeds["feeds"]["police"]["held_generation"] is None


async def test_unknown_feed_and_nothing_held(api: Harness) -> None:
    status, body = await api.call("POST", "/v1/feeds/nope/sync", "analyst")
    assert (status, body["error"]["field"]) == (404, "name")
    status, body = await api.call(
        "POST", "/v1/feeds/police/approve", "supervisor", json={"reason": "x"}
    )
    assert status == 404
    status, _ = await api.call("POST", "/v1/feeds/police/sync", "noc")
    assert status == 403
