"""One notice for a ticket, sent through every notifier; each attempt recorded on the ticket.

A notifier makes one attempt per ``send``; here each gets ``attempts`` tries with a
growing pause between them. Every attempt, failed or delivered, becomes a ticket event
(``notify``, with the channel, the attempt number and the notice kind), so the ticket
shows exactly what reached whom. Persisting and auditing stay with the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from edgeagent.takedown.notifiers.base import INSTRUCTION, Notice, Notifier, NotifyError
from edgeagent.takedown.tickets import Ticket, TicketEvent, add_event


def notice_for(t: Ticket, kind: str) -> Notice:
    """The notice of ``kind`` for the ticket's live URLs (the contact left out on hold)."""
    live = t.live_urls
    addresses = {a for u in live for a in u.addresses}
    return Notice(
        ticket_id=t.id,
        kind=kind,
        reference=t.reference,
        source=t.source,
        customer_id=t.customer_id,
        service_id=t.service_id,
        customer_contact="" if t.hold else t.contact,
        urls=tuple(u.url for u in live),
        addresses=tuple(u.addresses for u in live),
        notice_received_at=t.notice_received_at,
        deadline=t.deadline,
        hold=t.hold,
        instruction=INSTRUCTION,
        segments=tuple(d for d in t.segments if d.address in addresses),
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    """The ticket with one event per attempt, and per notifier whether it delivered."""

    ticket: Ticket
    delivered: tuple[tuple[Notifier, bool], ...]

    @property
    def failures(self) -> int:
        return sum(1 for _, ok in self.delivered if not ok)


async def deliver(
    t: Ticket,
    kind: str,
    notifiers: Sequence[Notifier],
    *,
    attempts: int,
    backoff_seconds: float,
    clock: Callable[[], datetime],
) -> Delivery:
    """Send the notice of ``kind`` for ``t`` through every notifier (see the module doc)."""
    notice = notice_for(t, kind)
    outcomes: list[tuple[Notifier, bool]] = []
    for notifier in notifiers:
        ok = False
        for attempt in range(1, attempts + 1):
            try:
                await notifier.send(notice)
            except NotifyError as exc:
                t = add_event(
                    t, _attempt(clock(), f"failed: {exc.reason}", notifier, attempt, kind)
                )
                if attempt < attempts:
                    await asyncio.sleep(backoff_seconds * attempt)
                continue
            t = add_event(t, _attempt(clock(), "delivered", notifier, attempt, kind))
            ok = True
            break
        outcomes.append((notifier, ok))
    return Delivery(t, tuple(outcomes))


def _attempt(at: datetime, reason: str, notifier: Notifier, attempt: int, kind: str) -> TicketEvent:
    detail = (("channel", notifier.name), ("attempt", str(attempt)), ("kind", kind))
    return TicketEvent(at, "system", "notify", reason, detail=detail)
