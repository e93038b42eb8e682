"""Takedown cases: a notice with many decisions is one case; each entry goes over once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from edgeagent.model import (
    Action,
    Decision,
    DecisionStatus,
    DesiredState,
    Entry,
    Indicator,
    NoticeSource,
    Scope,
)
from edgeagent.takedown.cases import CaseCollector, CaseOrigin

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def decision(i: int, reference: str, source: NoticeSource, received: datetime) -> Decision:
    return Decision(
        id=i,
        indicator=Indicator(Scope.URL, f"http://shop.hosted.test/{i}.html"),
        action=Action.BLOCK,
        actor="ana",
        reason="notice",
        reference=reference,
        notice_source=source,
        notice_received_at=received,
        created_at=received,
        status=DecisionStatus.ACTIVE,
    )


def test_the_decisions_of_one_notice_are_one_case() -> None:
    police = NoticeSource.LAW_ENFORCEMENT
    decisions = {
        1: replace(decision(1, "POL-1", police, T0 + timedelta(minutes=1)), jurisdiction="NL"),
        # The same notice, entered a minute apart, on hold: the whole case is held.
        2: replace(decision(2, "POL-1", police, T0), hold=True),
        3: decision(3, "POL-1", NoticeSource.HOTLINE, T0),  # same number, other sender
        4: decision(4, "POL-2", police, T0),
    }
    feed_entry = Entry(
        Indicator(Scope.URL, "http://feed.hosted.test/x.html"),
        Action.BLOCK,
        "iwf",
        reference="IWF-9",
        first_seen=T0,
    )
    state = DesiredState(1, tuple([d.as_entry() for d in decisions.values()] + [feed_entry]), ())
    collector = CaseCollector(decisions.__getitem__, lambda feed: CaseOrigin("hotline"))
    cases = {(c.origin.source, c.reference): c for c in collector.new_cases(state)}
    assert set(cases) == {
        ("law-enforcement", "POL-1"),
        ("hotline", "POL-1"),
        ("law-enforcement", "POL-2"),
        ("hotline", "IWF-9"),
    }
    first = cases[("law-enforcement", "POL-1")]
    assert {e.source for e in first.entries} == {"decision:1", "decision:2"}
    assert first.notice_received_at == T0  # the clock starts with the earliest
    assert first.origin == CaseOrigin("law-enforcement", "NL", True)
    assert cases[("law-enforcement", "POL-2")].origin == CaseOrigin("law-enforcement")
    assert collector.new_cases(state) == []  # handed over once
