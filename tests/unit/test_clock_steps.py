"""The wall clock stepped +1 h, then -2 h, with an injected clock (the running daemon
under libfaketime: ``tests/integration/test_faults_clock.py``).

Across the steps: SOA serials only go up (a counter in the state directory, never the
time), the audit chain verifies and keeps the order the events happened in (row ids,
not timestamps), and the store expires a decision once the clock it is given reaches
its ``expires_at``.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgeagent.model import (
    Action,
    DecisionStatus,
    DesiredState,
    Entry,
    Indicator,
    NoticeSource,
    Scope,
)
from edgeagent.rpz import publishing as publishing_module
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.zonefile import ZonefilePublisher
from edgeagent.rpz.publishing import RpzPublishing
from edgeagent.rpz.verify import Verifier
from edgeagent.store.base import NewDecision
from edgeagent.store.sqlite import SqliteStore
from tests.support.faults import zone_serial

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STEPS = (timedelta(0), timedelta(hours=1), timedelta(hours=-1))  # +1 h, then -2 h


class SteppedClock:
    """Wall time that advances a second per reading and can be stepped."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self._ticks = itertools.count()

    def __call__(self) -> datetime:
        return START + self.offset + timedelta(seconds=next(self._ticks))


def _decision(name: str, expires_at: datetime | None = None) -> NewDecision:
    return NewDecision(
        indicator=Indicator(Scope.HOST, name),
        action=Action.BLOCK,
        actor="ana",
        reason="clock test",
        reference=f"CASE-{name}",
        notice_source=NoticeSource.PUBLIC,
        notice_received_at=START,
        status=DecisionStatus.ACTIVE,
        expires_at=expires_at,
    )


def test_audit_chain_keeps_event_order_across_steps(tmp_path: Path) -> None:
    clock = SteppedClock()
    store = SqliteStore(tmp_path / "store.db", clock=clock)
    made = []
    for i, step in enumerate(STEPS):
        clock.offset = step
        d = store.add_decision(_decision(f"d{i}.example"))
        store.append_audit("ana", "decision.create", f"decision:{d.id}")
        made.append(f"decision:{d.id}")
    records = store.audit_since()
    assert [r.subject for r in records if r.action == "decision.create"] == made
    assert records[-1].at < records[0].at + timedelta(hours=1)  # the clock went back
    assert store.verify_audit().ok
    store.close()


def test_expiry_follows_the_wall_clock_across_steps(tmp_path: Path) -> None:
    clock = SteppedClock()
    store = SqliteStore(tmp_path / "store.db", clock=clock)
    soon = store.add_decision(_decision("soon.example", START + timedelta(minutes=30)))
    clock.offset = timedelta(hours=1)  # the wall clock passes soon's end
    assert [d.id for d in store.expire_due_decisions()] == [soon.id]
    clock.offset = timedelta(hours=-1)
    later = store.add_decision(_decision("later.example", clock() + timedelta(minutes=5)))
    assert store.expire_due_decisions() == []  # not before its end on the wall clock
    clock.offset = timedelta(hours=-1, minutes=6)
    assert [d.id for d in store.expire_due_decisions()] == [later.id]
    store.close()


def test_serials_only_go_up_across_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = RpzSettings()
    zone = tmp_path / f"{settings.zone}.zone"
    publisher = ZonefilePublisher(
        "files",
        policy_path=zone,
        exception_path=tmp_path / f"{settings.exception_zone}.zone",
        checkzone=None,
    )
    publishing = RpzPublishing(
        settings, [publisher], Verifier([], settings.canary, grace_seconds=0), tmp_path / "state"
    )
    serials = []
    for version, step in enumerate(STEPS, 1):
        wall = (START + step).timestamp()
        monkeypatch.setattr(publishing_module.time, "time", lambda wall=wall: wall)
        entry = Entry(Indicator(Scope.HOST, f"v{version}.example"), Action.BLOCK, "hotline")
        publishing.publish(DesiredState(version, (entry,), ()))
        serials.append(zone_serial(zone))
    assert serials == sorted(set(serials)), serials
