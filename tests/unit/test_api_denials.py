"""A wrong-token flood: limited per source, audited as a few rows with counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from edgeagent.api.app import DENIED_BUDGET, flush_denials
from edgeagent.api.denials import SourceBudget
from edgeagent.store import SqliteStore
from tests.support.api import ApiHarness, FakeClock, add_tokens, make_context, make_guard

FLOOD = 300
BUDGET = 30


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    store = SqliteStore(tmp_path / "store.db")
    tokens = add_tokens(store)
    ctx = make_context(
        store,
        make_guard(tmp_path / "protected"),
        clock=FakeClock(),
        denied_per_minute=BUDGET,
        denial_audit_seconds=3600,  # flushed by the test
    )
    async with ApiHarness(store, ctx, tokens) as harness:
        yield harness
    store.close()


def _app(api: ApiHarness) -> web.Application:
    assert api.client is not None
    app: web.Application = api.client.server.app  # type: ignore[union-attr]
    return app


def _denials(api: ApiHarness) -> list[tuple[str, dict[str, Any]]]:
    return [(r.actor, dict(r.detail)) for r in api.store.audit_since() if r.action == "auth.denied"]


async def _wrong(api: ApiHarness, i: int) -> int:
    headers = {"Authorization": f"Bearer ea_wrong-token-{i}"}
    return (await api.call("GET", "/v1/status", None, headers=headers))[0]


async def test_a_wrong_token_flood_writes_a_few_rows_with_counts(api: ApiHarness) -> None:
    assert (await api.call("GET", "/v1/status", "noc"))[0] == 200  # verified before the flood
    statuses = Counter([await _wrong(api, i) for i in range(FLOOD)])
    assert statuses == {401: BUDGET, 429: FLOOD - BUDGET}
    # The first denial of each kind is audited at once, the rest only counted so far.
    rows = _denials(api)
    assert [(d["status"], d["count"]) for _, d in rows] == [(401, 1), (429, 1)]
    # A token verified moments ago still works from the limited address.
    assert (await api.call("GET", "/v1/status", "noc"))[0] == 200

    await flush_denials(_app(api))
    rows = _denials(api)
    assert len(rows) == 4
    assert {actor for actor, _ in rows} == {"anonymous"}
    counted: Counter[int] = Counter()
    for _, detail in rows:
        counted[detail["status"]] += detail["count"]
    assert counted == statuses
    assert {d["reason"] for _, d in rows} == {
        "unknown token",
        "too many denied requests from this address",
    }
    await flush_denials(_app(api))
    assert len(_denials(api)) == 4  # nothing new: nothing written


async def test_limited_answer_says_when_to_retry_and_the_budget_refills(api: ApiHarness) -> None:
    for i in range(BUDGET):
        assert await _wrong(api, i) == 401
    assert api.client is not None
    resp = await api.client.get("/v1/status", headers={"Authorization": "Bearer ea_x"})
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"]["code"] == "rate-limited"
    clock = api.context.clock
    assert isinstance(clock, FakeClock)
    clock.now += 60.0  # a minute: the whole budget again
    assert await _wrong(api, 0) == 401


async def test_counts_left_at_shutdown_are_written(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    ctx = make_context(store, make_guard(tmp_path / "p"), clock=FakeClock())
    async with ApiHarness(store, ctx, add_tokens(store)) as api:
        for i in range(5):
            await _wrong(api, i)
    rows = [r for r in store.audit_since() if r.action == "auth.denied"]
    store.close()
    assert [r.detail["count"] for r in rows] == [1, 4]


def test_sources_are_keyed_hashes_kept_only_until_refilled() -> None:
    clock = FakeClock()
    budget = SourceBudget(BUDGET, clock)
    source = budget.source("127.0.0.1")
    assert len(source) == 16
    assert b"127.0.0.1" not in source
    assert source == budget.source("127.0.0.1")
    assert source != SourceBudget(BUDGET, clock).source("127.0.0.1")  # a key per instance
    budget.spend(source)
    assert len(budget) == 1
    clock.now += 120.0  # refilled: the same as never seen
    budget.spend(budget.source("192.0.2.9"))
    assert len(budget) == 1


async def test_the_source_budget_is_per_address(api: ApiHarness) -> None:
    budget = _app(api)[DENIED_BUDGET]
    other = budget.source("192.0.2.9")
    for _ in range(BUDGET):
        budget.spend(budget.source("127.0.0.1"))
    assert await _wrong(api, 0) == 429
    assert budget.wait(other) == 0.0
