"""One notice for a ticket, sent through every notifier; each attempt recorded on the ticket.

A notifier makes one attempt per ``send`` (bounded by its own timeout); here each gets
``attempts`` tries, the pause between them doubling from ``backoff_seconds`` with jitter
(:func:`edgeagent.enforcement.running.retry_delay`). Before the first try the notice's
idempotency key (ticket, ticket version, kind, channel: :func:`notice_key`) is *claimed*:
recorded in the database by the leader; once the channel took it the key is *confirmed*.
A claim refused means this very notice was confirmed sent already (a leader that died
before saving the ticket); it is not sent again. A key claimed but never confirmed (a
leader killed mid-send) is claimed again and the notice sent under that same key. A
deposed leader's claim is refused (``Fenced``), so it sends nothing. A notice whose last
attempt on a channel failed is sent again under the same key (a try that timed out may
have arrived). Either way a receiver that drops repeated keys acts on it once.

Every attempt, failed or delivered, becomes a ticket event
(``notify``, with the channel, the attempt number and the notice kind), so the ticket
shows exactly what reached whom. Persisting and auditing stay with the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from edgeagent.enforcement.running import retry_delay
from edgeagent.takedown.notifiers.base import Notice, Notifier, NotifyError
from edgeagent.takedown.tickets import Ticket, TicketEvent, add_event


def notice_key(t: Ticket, kind: str, channel: str, on_call: bool) -> str:
    """The idempotency key of the notice of ``kind`` for ``t`` as it is now, on ``channel``."""
    rota = ":on-call" if on_call else ""
    return f"ticket:{t.id}:v{t.version}:{kind}:{channel}{rota}"


async def _always(key: str) -> bool:
    return True


def notice_for(
    t: Ticket, kind: str, instruction: str, *, hosting_team: bool, on_call: bool = False
) -> Notice:
    """The notice of ``kind`` for the ticket's live URLs, as one channel may see it: on
    law-enforcement hold and on an on-call channel the customer's contact is left out (so
    nothing is addressed or forwarded to the customer); on hold the case reference is
    also left out for a channel that reaches anyone outside the hosting team
    (``hosting_team`` false)."""
    live = t.live_urls
    addresses = {a for u in live for a in u.addresses}
    return Notice(
        ticket_id=t.id,
        kind=kind,
        reference="" if t.hold and not hosting_team else t.reference,
        source=t.source,
        customer_id=t.customer_id,
        service_id=t.service_id,
        customer_contact="" if t.hold or on_call else t.contact,
        urls=tuple(u.url for u in live),
        addresses=tuple(u.addresses for u in live),
        notice_received_at=t.notice_received_at,
        deadline=t.deadline,
        hold=t.hold,
        instruction=instruction,
        segments=tuple(d for d in t.segments if d.address in addresses),
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    """The ticket with one event per attempt, per notifier tried whether it delivered, and
    per channel name how many attempts failed."""

    ticket: Ticket
    delivered: tuple[tuple[Notifier, bool], ...]
    failed_attempts: tuple[tuple[str, int], ...] = ()

    @property
    def failures(self) -> int:
        return sum(1 for _, ok in self.delivered if not ok)


async def deliver(
    t: Ticket,
    kind: str,
    notifiers: Sequence[Notifier],
    *,
    on_call: Sequence[Notifier] = (),
    instruction: str,
    attempts: int,
    backoff_seconds: float,
    clock: Callable[[], datetime],
    claim: Callable[[str], Awaitable[bool]] = _always,
    confirm: Callable[[str], Awaitable[None]] | None = None,
    retry: bool = False,
) -> Delivery:
    """Send the notice of ``kind`` for ``t`` through every notifier, then every on-call
    notifier (see the module doc); a ``retry`` skips the channels it reached already."""
    outcomes: list[tuple[Notifier, bool]] = []
    failed: list[tuple[str, int]] = []
    channels = [(n, False) for n in notifiers] + [(n, True) for n in on_call]
    keyed = t  # keys name the ticket as it was read, before this delivery's events
    for notifier, rota in channels:
        last = _last_attempt(keyed, kind, notifier.name)
        pending = None
        if last is not None and last.reason.startswith("failed"):
            pending = dict(last.detail).get("key")
        elif last is not None and retry:
            continue  # this channel got it already
        key = pending or notice_key(keyed, kind, notifier.name, rota)
        # A retry's key was claimed by its first try: it is sent again, under that key.
        if not await claim(key) and pending is None:
            before = _attempt(clock(), "sent before (same key)", notifier, 0, kind, key=key)
            t = add_event(t, before)
            outcomes.append((notifier, True))
            continue
        notice = replace(
            notice_for(t, kind, instruction, hosting_team=notifier.hosting_team, on_call=rota),
            idempotency_key=key,
        )
        ok = False
        failures = 0
        for attempt in range(1, attempts + 1):
            try:
                await notifier.send(notice)
            except NotifyError as exc:
                t = add_event(
                    t, _attempt(clock(), f"failed: {exc.reason}", notifier, attempt, kind, key=key)
                )
                failures += 1
                if attempt < attempts:
                    await asyncio.sleep(retry_delay(attempt, backoff_seconds))
                continue
            t = add_event(t, _attempt(clock(), "delivered", notifier, attempt, kind, key=key))
            if confirm is not None:
                await confirm(key)
            ok = True
            break
        outcomes.append((notifier, ok))
        if failures:
            failed.append((notifier.name, failures))
    return Delivery(t, tuple(outcomes), tuple(failed))


def _last_attempt(t: Ticket, kind: str, channel: str) -> TicketEvent | None:
    """The last attempt of the notice of ``kind`` on ``channel``: if it failed, a retry is
    the same notice under its key (a receiver that got a timed-out try drops the repeat);
    if it got through, a retry leaves the channel alone."""
    for ev in reversed(t.events):
        detail = dict(ev.detail)
        if ev.action == "notify" and (detail.get("channel"), detail.get("kind")) == (channel, kind):
            return ev
    return None


def _attempt(
    at: datetime, reason: str, notifier: Notifier, attempt: int, kind: str, *, key: str
) -> TicketEvent:
    detail = (("channel", notifier.name), ("attempt", str(attempt)), ("kind", kind), ("key", key))
    return TicketEvent(at, "system", "notify", reason, detail=detail)
