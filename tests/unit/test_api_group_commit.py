"""Group commit of ``POST /v1/decisions`` (:mod:`edgeagent.api.groupcommit`): requests
that wait behind a transaction share the next one, each is answered with its own outcome
only after that commit, and one request's failure is not the others'."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgeagent.api.context import ApiContext
from edgeagent.api.groupcommit import DecisionGroupCommit, Outcome
from edgeagent.api.handlers import create_then_notify
from edgeagent.decisions import DecisionRequest
from edgeagent.errors import Conflict, GuardrailViolation, StoreError, StoreUnavailable
from edgeagent.model import Action, Decision, NoticeSource, Scope
from edgeagent.store import SqliteStore
from tests.support.api import ApiHarness, decision_body, make_context, make_guard


def request(target: str, reason: str = "hotline report") -> DecisionRequest:
    return DecisionRequest(target, Scope.HOST, Action.BLOCK, reason, "CASE-1", NoticeSource.HOTLINE)


@dataclass
class HeldCommits:
    """The real decision service and SQLite store behind a gate: every transaction
    waits for :meth:`release`, so a test decides what queues behind it."""

    store: SqliteStore
    context: ApiContext
    fail_when: str = ""  # a reason that makes the batch holding it fail (StoreError)
    unavailable: bool = False
    batches: list[list[str]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def commit(self, requests: Sequence[tuple[DecisionRequest, str]]) -> list[Outcome]:
        self.batches.append([r.target for r, _ in requests])
        self.started.set()
        await self.gate.wait()
        if self.unavailable:
            raise StoreUnavailable("store.dsn: lost the database")
        if any(r.reason == self.fail_when for r, _ in requests):
            raise StoreError("recording decisions failed")
        return await asyncio.to_thread(create_then_notify, self.context, requests)


@pytest.fixture
def held(tmp_path: Path) -> Iterator[HeldCommits]:
    store = SqliteStore(tmp_path / "store.db")
    yield HeldCommits(store, make_context(store, make_guard(tmp_path / "protected")))
    store.close()


async def started_behind_a_first_commit(
    held: HeldCommits, group: DecisionGroupCommit, targets: Sequence[DecisionRequest]
) -> list[asyncio.Task[Decision]]:
    """A first request whose commit is held, then ``targets`` queued behind it."""
    tasks = [asyncio.create_task(group.create(request("first.example"), "analyst"))]
    await held.started.wait()
    tasks += [asyncio.create_task(group.create(r, "analyst")) for r in targets]
    await asyncio.sleep(0)  # every request is waiting now
    return tasks


async def test_requests_waiting_behind_a_commit_share_the_next_one(held: HeldCommits) -> None:
    group = DecisionGroupCommit(held.commit)
    before = held.store.policy_version()
    later = [request(f"h{i}.example") for i in range(5)]
    later += [request("h0.example"), request("com")]  # a duplicate; a public suffix
    tasks = await started_behind_a_first_commit(held, group, later)
    assert not any(t.done() for t in tasks)  # nobody is answered before the commit
    held.gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert held.batches == [["first.example"], [r.target for r in later]]
    stored = [o for o in outcomes if isinstance(o, Decision)]
    assert [d.indicator.value for d in stored] == ["first.example"] + [
        f"h{i}.example" for i in range(5)
    ]
    assert isinstance(outcomes[6], Conflict)
    assert f"decision {stored[1].id}" in str(outcomes[6])
    assert isinstance(outcomes[7], GuardrailViolation)
    assert held.store.count_decisions() == 6
    assert held.store.policy_version() == before + 2  # one change per transaction
    assert held.store.verify_audit().ok
    await group.close()


async def test_a_failed_batch_is_tried_again_one_by_one(held: HeldCommits) -> None:
    held.fail_when = "bad"
    group = DecisionGroupCommit(held.commit)
    later = [request("a.example"), request("b.example", reason="bad"), request("c.example")]
    tasks = await started_behind_a_first_commit(held, group, later)
    held.gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(o).__name__ for o in outcomes] == [
        "Decision",
        "Decision",
        "StoreError",
        "Decision",
    ]
    assert held.batches[1:] == [
        ["a.example", "b.example", "c.example"],
        ["a.example"],
        ["b.example"],
        ["c.example"],
    ]
    assert held.store.count_decisions() == 3


async def test_a_lost_database_fails_the_batch_once(held: HeldCommits) -> None:
    held.unavailable = True
    group = DecisionGroupCommit(held.commit)
    tasks = await started_behind_a_first_commit(held, group, [request("a.example")] * 3)
    held.gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert len(held.batches) == 2  # no retry one by one: every request would meet it
    assert held.store.count_decisions() == 0


async def test_a_request_whose_caller_left_before_its_commit_is_not_stored(
    held: HeldCommits,
) -> None:
    group = DecisionGroupCommit(held.commit)
    tasks = await started_behind_a_first_commit(
        held, group, [request("gone.example"), request("kept.example")]
    )
    tasks[1].cancel()
    held.gate.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert held.batches[1:] == [["kept.example"]]
    assert {d.indicator.value for d in held.store.list_decisions()} == {
        "first.example",
        "kept.example",
    }


async def test_concurrent_posts_are_stored_exactly_once(api: ApiHarness) -> None:
    """Twenty concurrent POSTs, two for each of ten targets: ten 201, ten 409."""
    bodies = [decision_body(f"c{i % 10}.example", reference=f"C-{i}") for i in range(20)]
    answers = await asyncio.gather(*(api.call("POST", "/v1/decisions", json=b) for b in bodies))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] * 10 + [409] * 10
    created = [body["id"] for status, body in answers if status == 201]
    stored = api.store.list_decisions()
    assert sorted(d.id for d in stored) == sorted(created)
    assert sorted(d.indicator.value for d in stored) == [f"c{i}.example" for i in range(10)]
    creates = [r for r in api.store.audit_since() if r.action == "decision.create"]
    assert sorted(r.subject for r in creates) == sorted(f"decision:{i}" for i in created)
    assert api.store.verify_audit().ok
