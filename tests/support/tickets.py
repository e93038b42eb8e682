"""Takedown tickets for the tests: one to start from, walks through states, the store contract.

- :func:`make_ticket`: one URL, received at :data:`T0`, due an hour later;
- :func:`walk`: a ticket taken through states by the real transition rules;
- :class:`TicketStoreContract`: what every ticket store does (subclass it per backend).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from edgeagent.errors import Conflict, NotFound
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
        assert store.received_between(T0, T0 + timedelta(seconds=1)) == [t2]
        closed = store.update(walk(t2, S.FOUND_LEGAL, S.RESTORED))
        assert closed.closed
        assert store.find_open("cust-a", "HL-1") is None
        assert [x.id for x in store.open_tickets()] == [other.id]
        assert [x.id for x in store.list_tickets(open_only=True)] == [other.id]
        store.close()
        reopened = open_tickets()
        assert reopened.get(1) == closed
        reopened.close()
