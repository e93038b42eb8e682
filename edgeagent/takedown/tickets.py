"""Takedown tickets: the GSMA/UNICEF notice-and-takedown states and the rules between them.

States and allowed moves (:data:`TRANSITIONS`)::

    received -> under-review -> temporarily-removed -> referred -> confirmed-illegal
             -> removed-and-preserved -> evidence-issued
    under-review | temporarily-removed | referred -> found-legal -> restored

Contract:

* One ticket per customer and case (``reference``); further URLs of the same case on the
  same customer are added to it (:func:`add_urls`).
* :func:`check_transition` raises :class:`edgeagent.errors.InvalidTransition` naming the
  allowed states, or :class:`AuthorisationRequired` (a subclass) when the source or
  jurisdiction requires a recorded law-enforcement authorisation before
  ``temporarily-removed`` and none is recorded.
* Every change is a new frozen :class:`Ticket` with a :class:`TicketEvent` appended
  (named actor, reason, time); persistence and audit are the service's job.
* ``hold`` (law-enforcement hold): notices reach the ISP's hosting team only.
* ``segments``: where the ticket's addresses sit on the agent host's segments
  (:class:`edgeagent.takedown.segment.SegmentDetail`), one per address, the latest kept.
* The SLA clock starts at ``notice_received_at``; ``removed_at`` is the first time the
  content left public access (``temporarily-removed`` or ``removed-and-preserved``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from edgeagent.errors import InvalidTransition
from edgeagent.takedown.segment import SegmentDetail


class TicketState(StrEnum):
    RECEIVED = "received"
    UNDER_REVIEW = "under-review"
    TEMPORARILY_REMOVED = "temporarily-removed"
    REFERRED = "referred"
    CONFIRMED_ILLEGAL = "confirmed-illegal"
    REMOVED_AND_PRESERVED = "removed-and-preserved"
    EVIDENCE_ISSUED = "evidence-issued"
    FOUND_LEGAL = "found-legal"
    RESTORED = "restored"


S = TicketState
TRANSITIONS: dict[TicketState, tuple[TicketState, ...]] = {
    S.RECEIVED: (S.UNDER_REVIEW,),
    S.UNDER_REVIEW: (S.TEMPORARILY_REMOVED, S.FOUND_LEGAL),
    S.TEMPORARILY_REMOVED: (S.REFERRED, S.FOUND_LEGAL),
    S.REFERRED: (S.CONFIRMED_ILLEGAL, S.FOUND_LEGAL),
    S.CONFIRMED_ILLEGAL: (S.REMOVED_AND_PRESERVED,),
    S.REMOVED_AND_PRESERVED: (S.EVIDENCE_ISSUED,),
    S.EVIDENCE_ISSUED: (),
    S.FOUND_LEGAL: (S.RESTORED,),
    S.RESTORED: (),
}

# The content is off public access from these states on (the takedown clock stops).
REMOVED_STATES = frozenset({S.TEMPORARILY_REMOVED, S.REMOVED_AND_PRESERVED})
# Still live and owed a notice: reminders, escalation and re-notify apply.
LIVE_STATES = frozenset({S.RECEIVED, S.UNDER_REVIEW})
CLOSED_STATES = frozenset({S.EVIDENCE_ISSUED, S.RESTORED})


class AuthorisationRequired(InvalidTransition):
    """``temporarily-removed`` needs a recorded law-enforcement authorisation first."""

    def __init__(self, current: str, requested: str, allowed: tuple[str, ...]) -> None:
        super().__init__(current, requested, allowed)
        self.args = (
            f"cannot go from {current!r} to {requested!r} without a recorded "
            f"law-enforcement authorisation; allowed now: {', '.join(allowed) or 'none'}",
        )


@dataclass(frozen=True, slots=True)
class TicketUrl:
    """One URL of the case, with the addresses it resolved to when added or re-checked.

    ``status`` is ``"live"`` (resolves into this customer), ``"moved"`` (resolves
    elsewhere now) or ``"gone"`` (no longer resolves).
    """

    url: str
    ref: str
    addresses: tuple[str, ...]
    added_at: datetime
    checked_at: datetime
    status: str = "live"


@dataclass(frozen=True, slots=True)
class TicketEvent:
    """One action on a ticket: a state change, a note, a notice attempt."""

    at: datetime
    actor: str
    action: str  # "open", "transition", "add-urls", "notify", "hold", "authorise", ...
    reason: str
    from_state: str = ""
    to_state: str = ""
    detail: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Ticket:
    """A takedown case on one customer (see the module docstring)."""

    id: int
    reference: str
    source: str
    jurisdiction: str
    customer_id: str
    service_id: str
    contact: str
    assignment_origin: str
    notice_received_at: datetime
    opened_at: datetime
    deadline: datetime
    state: TicketState
    urls: tuple[TicketUrl, ...]
    events: tuple[TicketEvent, ...]
    hold: bool = False
    authorisation: str = ""
    removed_at: datetime | None = None
    last_notified_at: datetime | None = None
    notify_failures: int = 0
    escalated: bool = False
    reminded: bool = False
    legal_hold: bool = False
    segments: tuple[SegmentDetail, ...] = ()
    version: int = 0

    @property
    def live_urls(self) -> tuple[TicketUrl, ...]:
        return tuple(u for u in self.urls if u.status == "live")

    @property
    def minutes_to_removal(self) -> float | None:
        if self.removed_at is None:
            return None
        return (self.removed_at - self.notice_received_at).total_seconds() / 60.0

    @property
    def closed(self) -> bool:
        return self.state in CLOSED_STATES


def allowed_next(state: TicketState) -> tuple[TicketState, ...]:
    return TRANSITIONS[state]


def check_transition(
    ticket: Ticket, to: TicketState | str, *, needs_authorisation: bool
) -> TicketState:
    """The target state if allowed from ``ticket.state``; raise otherwise (see module doc)."""
    allowed = allowed_next(ticket.state)
    names = tuple(s.value for s in allowed)
    try:
        target = TicketState(to)
    except ValueError:
        raise InvalidTransition(ticket.state.value, str(to), names) from None
    if target not in allowed:
        raise InvalidTransition(ticket.state.value, target.value, names)
    if target is S.TEMPORARILY_REMOVED and needs_authorisation and not ticket.authorisation:
        raise AuthorisationRequired(ticket.state.value, target.value, names)
    return target


def apply_transition(
    ticket: Ticket, to: TicketState, actor: str, reason: str, at: datetime
) -> Ticket:
    """The ticket after a checked transition, with the event appended."""
    removed_at = ticket.removed_at
    if to in REMOVED_STATES and removed_at is None:
        removed_at = at
    event = TicketEvent(at, actor, "transition", reason, ticket.state.value, to.value)
    return replace(ticket, state=to, removed_at=removed_at, events=(*ticket.events, event))


def add_event(ticket: Ticket, event: TicketEvent, **changes: Any) -> Ticket:
    return replace(ticket, events=(*ticket.events, event), **changes)


def add_urls(ticket: Ticket, urls: tuple[TicketUrl, ...], actor: str, at: datetime) -> Ticket:
    """Add URLs not yet on the ticket (a URL already there gets its addresses refreshed)."""
    existing = {u.url: u for u in ticket.urls}
    new = [u for u in urls if u.url not in existing]
    for u in urls:
        if u.url in existing:
            existing[u.url] = replace(
                existing[u.url], addresses=u.addresses, checked_at=at, status="live"
            )
    merged = tuple(existing.values()) + tuple(new)
    if not new:
        return replace(ticket, urls=merged)
    event = TicketEvent(at, actor, "add-urls", f"{len(new)} URL(s) added")
    return replace(ticket, urls=merged, events=(*ticket.events, event))


def with_segments(ticket: Ticket, details: tuple[SegmentDetail, ...]) -> Ticket:
    """The ticket with ``details`` recorded (a newer detail replaces one for its address)."""
    if not details:
        return ticket
    by_address = {d.address: d for d in ticket.segments}
    by_address.update((d.address, d) for d in details)
    return replace(ticket, segments=tuple(by_address.values()))


# ---------------------------------------------------------------------------- JSON shapes


def _iso(v: datetime | None) -> str | None:
    return None if v is None else v.isoformat()


def _dt(v: Any) -> datetime | None:
    return None if v is None else datetime.fromisoformat(str(v))


def ticket_to_json(t: Ticket) -> dict[str, Any]:
    """The full ticket as JSON (holds URLs: for the 0600 ticket store and analysts only)."""
    return {
        "id": t.id,
        "reference": t.reference,
        "source": t.source,
        "jurisdiction": t.jurisdiction,
        "customer_id": t.customer_id,
        "service_id": t.service_id,
        "contact": t.contact,
        "assignment_origin": t.assignment_origin,
        "notice_received_at": _iso(t.notice_received_at),
        "opened_at": _iso(t.opened_at),
        "deadline": _iso(t.deadline),
        "state": t.state.value,
        "allowed_next": [s.value for s in allowed_next(t.state)],
        "hold": t.hold,
        "authorisation": t.authorisation,
        "removed_at": _iso(t.removed_at),
        "minutes_to_removal": t.minutes_to_removal,
        "last_notified_at": _iso(t.last_notified_at),
        "notify_failures": t.notify_failures,
        "escalated": t.escalated,
        "reminded": t.reminded,
        "legal_hold": t.legal_hold,
        "segments": [d.to_json() for d in t.segments],
        "version": t.version,
        "urls": [
            {
                "url": u.url,
                "ref": u.ref,
                "addresses": list(u.addresses),
                "added_at": _iso(u.added_at),
                "checked_at": _iso(u.checked_at),
                "status": u.status,
            }
            for u in t.urls
        ],
        "events": [
            {
                "at": _iso(e.at),
                "actor": e.actor,
                "action": e.action,
                "reason": e.reason,
                "from": e.from_state,
                "to": e.to_state,
                "detail": dict(e.detail),
            }
            for e in t.events
        ],
    }


def ticket_from_json(d: dict[str, Any]) -> Ticket:
    def need(key: str) -> datetime:
        value = _dt(d[key])
        assert value is not None
        return value

    return Ticket(
        id=int(d["id"]),
        reference=str(d["reference"]),
        source=str(d["source"]),
        jurisdiction=str(d["jurisdiction"]),
        customer_id=str(d["customer_id"]),
        service_id=str(d["service_id"]),
        contact=str(d["contact"]),
        assignment_origin=str(d["assignment_origin"]),
        notice_received_at=need("notice_received_at"),
        opened_at=need("opened_at"),
        deadline=need("deadline"),
        state=TicketState(d["state"]),
        hold=bool(d["hold"]),
        authorisation=str(d["authorisation"]),
        removed_at=_dt(d["removed_at"]),
        last_notified_at=_dt(d["last_notified_at"]),
        notify_failures=int(d["notify_failures"]),
        escalated=bool(d["escalated"]),
        reminded=bool(d["reminded"]),
        legal_hold=bool(d["legal_hold"]),
        # Tickets stored before on-segment detail existed have none.
        segments=tuple(SegmentDetail.from_json(x) for x in d.get("segments", ())),
        version=int(d["version"]),
        urls=tuple(
            TicketUrl(
                url=str(u["url"]),
                ref=str(u["ref"]),
                addresses=tuple(u["addresses"]),
                added_at=need_dt(u["added_at"]),
                checked_at=need_dt(u["checked_at"]),
                status=str(u["status"]),
            )
            for u in d["urls"]
        ),
        events=tuple(
            TicketEvent(
                at=need_dt(e["at"]),
                actor=str(e["actor"]),
                action=str(e["action"]),
                reason=str(e["reason"]),
                from_state=str(e["from"]),
                to_state=str(e["to"]),
                detail=tuple((str(k), str(v)) for k, v in dict(e["detail"]).items()),
            )
            for e in d["events"]
        ),
    )


def need_dt(v: Any) -> datetime:
    return datetime.fromisoformat(str(v))
