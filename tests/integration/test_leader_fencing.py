"""One leader among agents on a real PostgreSQL 15, and the fence against a deposed one.

Two :class:`LockLeadership` objects on one database stand for two agents. The first takes
the lock; it then stops talking (as a paused process does) until the server ends its
session, and the second takes over. The first still *believes* it leads until its next
poll: the fence refuses its epoch check, its proxy index (the old file stays) and its
takedown notices, while the new leader's pass; a notice the old leader claimed but never
confirmed is the new leader's to send, one it confirmed is not sent again. A committed
policy change reaches the other agent by NOTIFY, not by polling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edgeagent.errors import Fenced
from edgeagent.metrics import Metrics
from edgeagent.model import (
    Action,
    DecisionStatus,
    DesiredState,
    Entry,
    Indicator,
    NoticeSource,
    Scope,
)
from edgeagent.proxy.index import IndexReader
from edgeagent.proxy.indexwriter import write_index
from edgeagent.store.base import AuditNote, NewDecision
from edgeagent.store.postgresql.leader import LockLeadership
from edgeagent.store.postgresql.store import PostgresStore
from tests.support.postgres import PgDatabase

pytestmark = pytest.mark.integration

SESSION_TIMEOUT = 1.0  # the server ends a leader session silent this long


class Roles:
    """What a leadership told its agent."""

    def __init__(self) -> None:
        self.changes: list[bool] = []
        self.policy_news = 0

    def on_role(self, leading: bool) -> None:
        self.changes.append(leading)

    def on_policy(self) -> None:
        self.policy_news += 1


def leadership(db: PgDatabase, name: str) -> LockLeadership:
    return LockLeadership(
        db.database(), poll_seconds=0.2, session_timeout_seconds=SESSION_TIMEOUT, name=name
    )


def state(version: int, *urls: str) -> DesiredState:
    blocks = tuple(Entry(Indicator.parse(Scope.URL, u), Action.BLOCK, "decision:1") for u in urls)
    return DesiredState(version, blocks, ())


async def test_a_paused_leader_is_fenced_and_the_standby_takes_over(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    first, second = leadership(pg_database, "central-1"), leadership(pg_database, "central-2")
    roles1, roles2 = Roles(), Roles()
    try:
        # The first's session last speaks inside this poll (the clock read before it, so
        # a slow machine cannot make the silence look shorter than it was).
        silent_since = time.monotonic()
        await first.poll_once(roles1.on_role)
        await second.poll_once(roles2.on_role)
        assert (first.is_leader, second.is_leader) == (True, False)
        assert roles1.changes == [True]
        assert roles2.changes == []
        first.check("the proxy index")  # the leader passes its own fence
        index = tmp_path / "proxy.idx"
        write_index(state(1, "http://a.example/x"), index, fence=first.check)
        assert first.claim("ticket:1:v3:notice:hosting")
        first.confirm("ticket:1:v3:notice:hosting")  # the channel took it
        assert first.claim("ticket:1:v2:notice:hosting")  # its send never confirmed

        # The leader stops talking (SIGSTOP, a hung loop): the server ends its session,
        # and the standby, polling meanwhile, takes the lock.
        while not second.is_leader:
            await asyncio.sleep(0.2)
            await second.poll_once(roles2.on_role)
        assert time.monotonic() - silent_since >= SESSION_TIMEOUT * 0.9
        assert roles2.changes == [True]
        assert first.is_leader  # not told yet: this is the window the fence closes
        # The store names the new leader only, whatever the old one's own row still says.
        assert [a.name for a in second.roles().agents if a.leader] == ["central-2"]

        with pytest.raises(Fenced, match="stale"):
            first.check("the proxy index")
        with pytest.raises(Fenced, match="stale"):
            write_index(state(2, "http://b.example/y"), index, fence=first.check)
        assert _index_version(index) == 1  # the old index stays
        with pytest.raises(Fenced, match="stale"):
            first.claim("ticket:1:v4:notice:hosting")

        # The new leader: its index goes in; the notice the old one sent is not repeated,
        # the one it claimed but never confirmed goes out again (under the same key).
        write_index(state(3, "http://b.example/y"), index, fence=second.check)
        assert _index_version(index) == 3
        assert not second.claim("ticket:1:v3:notice:hosting")
        assert second.claim("ticket:1:v2:notice:hosting")
        assert second.claim("ticket:1:v4:notice:hosting")
        second.confirm("ticket:1:v4:notice:hosting")
        assert not second.claim("ticket:1:v4:notice:hosting")

        # The old leader's next poll finds its session gone: it steps down at once.
        woken = asyncio.create_task(first.run(roles1.on_role, roles1.on_policy, ""))
        try:
            await _until(lambda: roles1.changes == [True, False])
        finally:
            woken.cancel()
        assert not first.is_leader
        status = second.status()
        assert (status["role"], status["leader"], status["epoch"]) == ("leader", "central-2", 2)
    finally:
        await first.close()
        await second.close()


async def test_the_lock_goes_with_a_closed_session_and_policy_news_arrive_by_notify(
    pg_database: PgDatabase,
) -> None:
    first, second = leadership(pg_database, "central-1"), leadership(pg_database, "central-2")
    roles1, roles2 = Roles(), Roles()
    store = PostgresStore(pg_database.database())
    runs = [
        asyncio.create_task(first.run(roles1.on_role, roles1.on_policy, "http://127.0.0.1:1")),
    ]
    try:
        await _until(lambda: first.is_leader)
        runs.append(
            asyncio.create_task(second.run(roles2.on_role, roles2.on_policy, "http://127.0.0.1:2"))
        )
        await _until(lambda: len(second.status()["agents"]) == 2)
        assert not second.is_leader
        agents = {a["name"]: a for a in second.status()["agents"]}
        assert agents["central-1"]["leader"]
        assert not agents["central-2"]["leader"]
        assert agents["central-2"]["api"] == "http://127.0.0.1:2"
        _assert_roles_exported(second, "central-1", {"central-1": "leader", "central-2": "standby"})

        # A decision committed anywhere is news to every listening agent.
        before = roles2.policy_news
        started = time.monotonic()
        await asyncio.to_thread(store.add_decision, _decision(), AuditNote("decision.create"))
        await _until(lambda: roles2.policy_news > before)
        assert time.monotonic() - started < 1.0  # well inside one poll interval

        # The leader goes away cleanly (its session ends): the standby leads at once.
        runs[0].cancel()
        await first.close()
        assert roles1.changes == [True]
        started = time.monotonic()
        await _until(lambda: second.is_leader)
        assert time.monotonic() - started < 2.0
        second.check("diversion routes")
        assert second.status()["epoch"] == 2
        await _until(lambda: [a.name for a in second.roles().agents] == ["central-2"], 20)
        _assert_roles_exported(second, "central-2", {"central-2": "leader"})
    finally:
        for task in runs:
            task.cancel()
        await first.close()
        await second.close()
        store.close()


def _assert_roles_exported(seen_by: LockLeadership, leader: str, roles: dict[str, str]) -> None:
    """The metrics name ``leader`` and each agent's role, as ``seen_by`` read them."""
    metrics = Metrics()
    metrics.observe_roles(seen_by.roles())
    exported = {
        (s.labels["agent"], s.labels["role"])
        for family in metrics.registry.collect()
        if family.name == "edgeagent_ha_agent_role"
        for s in family.samples
        if s.value == 1.0
    }
    assert exported == set(roles.items())
    sample = metrics.registry.get_sample_value
    assert sample("edgeagent_ha_leader_info", {"agent": leader}) == 1.0


def _index_version(path: Path) -> int:
    reader = IndexReader.open(path)
    try:
        return reader.policy_version
    finally:
        reader.close()


def _decision() -> NewDecision:
    return NewDecision(
        Indicator.parse(Scope.URL, "http://listed.example/page"),
        Action.BLOCK,
        "analyst",
        "hotline report",
        "CASE-1",
        NoticeSource.HOTLINE,
        datetime.now(UTC),
        DecisionStatus.ACTIVE,
    )


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.05)
