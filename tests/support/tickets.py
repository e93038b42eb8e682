"""Takedown tickets for the tests: one to start from, walks through states, the store contract.

- :func:`make_ticket`: one URL, received at :data:`T0`, due an hour later;
- :func:`walk`: a ticket taken through states by the real transition rules;
- :class:`TicketStoreContract`: what every ticket store does (subclass it per backend).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from edgeagent.errors import Conflict, NotFound
from edgeagent.takedown.report import DISTRIBUTION_MINUTES, report_csv
from edgeagent.takedown.tickets import (
    Ticket,
    TicketEvent,
    TicketState,
    TicketUrl,
    apply_transition,
    check_transition,
)
from edgeagent.takedown.ticketstore import TicketStorage

S = TicketState
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_ticket(source: str = "hotline", **kw: object) -> Ticket:
    """A ticket in state ``received``; ``kw`` replaces any of its fields."""
    url = TicketUrl("http://shop.hosted.test/a", "ref1", ("198.51.100.10",), T0, T0)
    base = Ticket(
        id=0,
        reference="HL-1",
        source=source,
        jurisdiction="",
        customer_id="cust-a",
        service_id="srv-1",
        contact="noc@a.example",
        assignment_origin="crm:2",
        notice_received_at=T0,
        opened_at=T0 + timedelta(minutes=1),
        deadline=T0 + timedelta(minutes=60),
        state=TicketState.RECEIVED,
        urls=(url,),
        events=(TicketEvent(T0, "system", "open", "opened", "", "received"),),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def walk(t: Ticket, *states: TicketState, start: datetime = T0) -> Ticket:
    for i, s in enumerate(states, start=1):
        target = check_transition(t, s, needs_authorisation=False)
        t = apply_transition(t, target, "alice", f"step {i}", start + timedelta(minutes=10 * i))
    return t


class TicketStoreContract:
    """What every ticket store does; a subclass provides ``open_tickets`` (a factory that
    opens the same fresh storage every time it is called)."""

    def test_create_update_and_queries(self, open_tickets: Callable[[], TicketStorage]) -> None:
        store = open_tickets()
        t = store.create(make_ticket())
        assert t.id == 1
        assert t.version == 0
        t2 = store.update(walk(t, S.UNDER_REVIEW))
        assert t2.version == 1
        with pytest.raises(Conflict):
            store.update(walk(t, S.UNDER_REVIEW))  # stale version
        with pytest.raises(NotFound):
            store.get(99)
        with pytest.raises(NotFound):
            store.update(replace(t, id=99))
        assert store.find_open("cust-a", "HL-1") == t2
        assert store.find_open("cust-a", "HL-2") is None
        other = store.create(
            make_ticket(reference="HL-2", notice_received_at=T0 + timedelta(days=1))
        )
        assert [x.id for x in store.list_tickets(state="under-review")] == [1]
        assert [x.id for x in store.list_tickets()] == [other.id, 1]
        assert [x.id for x in store.list_tickets(limit=1, offset=1)] == [1]
        assert store.report(T0, T0 + timedelta(seconds=1)).rows[0].count == 1
        closed = store.update(walk(t2, S.FOUND_LEGAL, S.RESTORED))
        assert closed.closed
        assert store.find_open("cust-a", "HL-1") is None
        assert [x.id for x in store.open_tickets()] == [other.id]
        assert [x.id for x in store.list_tickets(open_only=True)] == [other.id]
        store.close()
        reopened = open_tickets()
        assert reopened.get(1) == closed
        reopened.close()

    def test_purge_removes_only_closed_unchanged_tickets_without_legal_hold(
        self, open_tickets: Callable[[], TicketStorage]
    ) -> None:
        store = open_tickets()
        done = store.update(walk(store.create(make_ticket()), S.UNDER_REVIEW, S.FOUND_LEGAL))
        done = store.update(walk(done, S.RESTORED))
        kept = store.create(make_ticket())
        kept = store.update(walk(replace(kept, legal_hold=True), S.UNDER_REVIEW, S.FOUND_LEGAL))
        kept = store.update(walk(kept, S.RESTORED))
        live = store.create(make_ticket())
        assert [t.id for t in store.closed_tickets(legal_hold=False)] == [done.id]
        assert [t.id for t in store.closed_tickets(legal_hold=True)] == [kept.id]
        assert not store.purge(live)  # open
        assert not store.purge(kept)  # legal hold
        assert not store.purge(replace(done, version=done.version - 1))  # changed since read
        assert store.purge(done)
        with pytest.raises(NotFound):
            store.get(done.id)
        assert {t.id for t in store.list_tickets()} == {kept.id, live.id}
        store.close()

    def test_sla_counts_due_soon_and_assignee(
        self, open_tickets: Callable[[], TicketStorage]
    ) -> None:
        store = open_tickets()
        late = store.create(make_ticket())  # deadline T0 + 60 min
        later = store.create(make_ticket(reference="HL-2", deadline=T0 + timedelta(hours=3)))
        removed = store.create(make_ticket(reference="HL-3", source="law-enforcement"))
        removed = store.update(walk(removed, S.UNDER_REVIEW, S.TEMPORARILY_REMOVED))
        mine = store.update(replace(later, assignee="ana"))
        now = T0 + timedelta(hours=2)
        assert store.sla_counts(now) == {"hotline": (2, 1), "law-enforcement": (1, 0)}
        due = store.list_tickets(due_before=T0 + timedelta(hours=4))
        assert [t.id for t in due] == [late.id, mine.id]  # soonest first; removed is not due
        assert [t.id for t in store.list_tickets(due_before=now)] == [late.id]
        assert store.count_due(T0 + timedelta(hours=4), 10) == 2
        assert store.count_due(T0 + timedelta(hours=4), 1) == 1  # capped
        assert store.count_due(now, 10) == 1
        assert [t.id for t in store.list_tickets(assignee="ana")] == [mine.id]
        assert {t.id for t in store.list_tickets(assignee="")} == {late.id, removed.id}
        store.close()

    def test_report_figures_distribution_and_csv(
        self, open_tickets: Callable[[], TicketStorage]
    ) -> None:
        store = open_tickets()
        for _ in range(3):  # removed after 20 minutes each
            store.create(walk(make_ticket("hotline"), S.UNDER_REVIEW, S.TEMPORARILY_REMOVED))
        slow = walk(make_ticket("public"), S.UNDER_REVIEW)
        late = T0 + timedelta(minutes=90)
        store.create(apply_transition(slow, S.TEMPORARILY_REMOVED, "bob", "late", late))
        store.create(make_ticket("public"))  # still live
        outside = make_ticket("police", notice_received_at=T0 + timedelta(days=1))
        store.create(walk(outside, S.UNDER_REVIEW, S.TEMPORARILY_REMOVED))
        rep = store.report(T0, T0 + timedelta(days=1))
        store.close()
        total, hotline, public = rep.rows
        assert (total.count, total.removed) == (5, 4)
        assert total.median_minutes == 20
        assert total.within_60 == 3 / 5
        assert total.within_120 == 4 / 5
        assert hotline.group == "hotline"
        assert hotline.within_60 == 1.0
        assert public.group == "public"
        assert public.within_60 == 0.0
        assert public.within_120 == 0.5
        assert public.p90_minutes == 90
        assert rep.distribution == (3, 0, 1, 0, 0, 0, 0)  # <= 30 min: 3, <= 120 min: 1
        text = report_csv(rep)
        assert text.splitlines()[0].startswith("group,count,removed,median_minutes")
        assert text.splitlines()[1] == "all,5,4,20.000,69.000,0.600,0.800"
        js = rep.to_json()
        assert js["total"]["count"] == 5
        assert set(js["by_source"]) == {"hotline", "public"}

    def test_report_matches_the_figures_computed_from_every_ticket(
        self, open_tickets: Callable[[], TicketStorage]
    ) -> None:
        """The store's aggregates against the definition, over random tickets: each
        percentile interpolated between ranks, shares of all tickets, bucket counts."""
        rng = random.Random(17)
        store = open_tickets()
        made = []
        for i in range(120):
            t = make_ticket(
                rng.choice(("hotline", "police", "public")),
                reference=f"R-{i}",
                notice_received_at=T0 + timedelta(minutes=rng.randrange(0, 3000)),
            )
            if rng.random() < 0.8:  # removed after 1 s .. 2 days
                after = timedelta(seconds=rng.randrange(1, 2 * 86400))
                t = replace(t, removed_at=t.notice_received_at + after)
            made.append(store.create(t))
        start, end = T0 + timedelta(minutes=100), T0 + timedelta(minutes=2900)
        rep = store.report(start, end)
        store.close()
        chosen = [t for t in made if start <= t.notice_received_at < end]
        groups = {"all": chosen} | {
            s: [t for t in chosen if t.source == s] for s in sorted({t.source for t in chosen})
        }
        assert [r.group for r in rep.rows] == list(groups)
        for row, tickets in zip(rep.rows, groups.values(), strict=True):
            minutes = sorted(m for t in tickets if (m := t.minutes_to_removal) is not None)
            assert (row.count, row.removed) == (len(tickets), len(minutes))
            assert row.median_minutes == _percentile(minutes, 50)
            assert row.p90_minutes == _percentile(minutes, 90)
            assert row.within_60 == sum(m <= 60 for m in minutes) / len(tickets)
            assert row.within_120 == sum(m <= 120 for m in minutes) / len(tickets)
        every = [m for t in chosen if (m := t.minutes_to_removal) is not None]
        bounds = (*DISTRIBUTION_MINUTES, math.inf)
        expected = [0] * len(bounds)
        for m in every:
            expected[next(i for i, b in enumerate(bounds) if m <= b)] += 1
        assert rep.distribution == tuple(expected)
        empty = open_tickets().report(T0 - timedelta(days=9), T0 - timedelta(days=8))
        assert [(r.group, r.count, r.median_minutes, r.within_60) for r in empty.rows] == [
            ("all", 0, None, None)
        ]


def _percentile(data: Sequence[float], q: int) -> float | None:
    """The linear-interpolated percentile, as its definition reads."""
    if not data:
        return None
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)
