"""A takedown ticket to start from: one URL, received at :data:`T0`, due an hour later."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from edgeagent.takedown.tickets import Ticket, TicketEvent, TicketState, TicketUrl

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
