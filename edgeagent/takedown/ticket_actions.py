"""People's actions on takedown tickets: moves with their records, the two-person
found-legal, authorisations, account outcomes, holds, assignment and comments.

:class:`TicketActions` is the half of
:class:`edgeagent.takedown.service.TakedownService` the NTD team drives (through the API
and the CLI); the service supplies storage, per-ticket locks, notices and the audit log.
Every action is a ticket event and an audit record named ``ticket.<action>``, with the
acting token identity.

* :meth:`TicketActions.transition`: ``InvalidTransition`` names the allowed states;
  ``AuthorisationRequired`` where a law-enforcement authorisation must come first;
  ``InvalidRequest`` when the record a state needs is missing or names an unknown
  recipient (:func:`edgeagent.takedown.tickets.required_record`).
* ``found-legal`` needs two identities: the first request is a proposal (the ticket keeps
  its state), the same identity again is refused (``FourEyesRequired``), a second one
  confirms; then the case's blocking decisions are revoked through the decision
  lifecycle (the daemon is told: ``on_policy_change``) and the hosting team is told the
  content may be restored.
* :meth:`TicketActions.record_authorisation`: who authorised, their reference and when;
  where the ticket was waiting for it, the hosting team then gets the instruction to
  isolate.
"""

from __future__ import annotations

import asyncio
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from edgeagent.decisions import DecisionService, FourEyesRequired
from edgeagent.errors import InvalidRequest, short_hash
from edgeagent.model import Action, Decision, DecisionStatus
from edgeagent.store.base import Store
from edgeagent.takedown.records import Authorisation, Outcome, Preservation, Referral
from edgeagent.takedown.rules import TakedownPolicy
from edgeagent.takedown.tickets import (
    LIVE_STATES,
    Ticket,
    TicketEvent,
    TicketState,
    add_event,
    apply_transition,
    check_transition,
    required_record,
)
from edgeagent.takedown.ticketstore import TicketStorage


class TicketActions(ABC):
    """See the module docstring. The service sets the attributes and implements the
    abstract methods."""

    store: Store
    tickets: TicketStorage
    policy: TakedownPolicy
    clock: Callable[[], datetime]
    decisions: DecisionService | None
    on_policy_change: Callable[[], None] | None

    @abstractmethod
    def _lock(self, ticket_id: int) -> asyncio.Lock:
        """The ticket's lock (held around every read-change-write)."""

    @abstractmethod
    async def _notify(self, t: Ticket, kind: str) -> Ticket:
        """Send the notice of ``kind`` for ``t`` (caller holds its lock); the ticket after."""

    @abstractmethod
    async def _audit(
        self, actor: str, action: str, subject: str, detail: Mapping[str, Any]
    ) -> None:
        """Append an audit record."""

    async def transition(
        self,
        ticket_id: int,
        to: TicketState | str,
        actor: str,
        reason: str,
        *,
        authorisation: Authorisation | None = None,
        referral: Referral | None = None,
        preservation: Preservation | None = None,
    ) -> Ticket:
        """Move a ticket; raises ``InvalidTransition`` (allowed states named),
        ``AuthorisationRequired``, ``InvalidRequest`` (a record the state needs is missing
        or names an unknown recipient) or ``FourEyesRequired``.

        ``authorisation`` is recorded first (as by :meth:`record_authorisation`,
        instruction to isolate included) when given; ``referral`` and ``preservation``
        are recorded with the move (stamped with ``actor`` and now). ``found-legal`` from
        one person is recorded as a proposal (the ticket keeps its state); a different
        person's request confirms it, revokes the case's blocks and tells the hosting
        team (see :meth:`_found_legal`)."""
        if authorisation is not None:
            await self.record_authorisation(ticket_id, actor, authorisation)
        async with self._lock(ticket_id):
            t = await asyncio.to_thread(self.tickets.get, ticket_id)
            target = check_transition(t, to, needs_authorisation=self.policy.needs_authorisation(t))
            now = self.clock()
            given = {"referral": referral, "preservation": preservation}
            needed = required_record(target)
            if needed is not None and given[needed[0]] is None:
                raise InvalidRequest(needed[0], f"required to move to {target.value}: {needed[1]}")
            if referral is not None and target is TicketState.REFERRED:
                self._check_recipient(referral.recipient)
                t = replace(t, referral=replace(referral, recorded_by=actor, recorded_at=now))
            if preservation is not None and target is TicketState.REMOVED_AND_PRESERVED:
                stamped = replace(preservation, recorded_by=actor, recorded_at=now)
                t = replace(t, preservation=stamped)
            if target is TicketState.FOUND_LEGAL:
                if not t.found_legal_proposed_by:
                    return await self._propose_found_legal(t, actor, reason, now)
                if t.found_legal_proposed_by == actor:
                    raise FourEyesRequired(
                        "found-legal needs a second person: proposed by the same identity"
                    )
            before, proposed_by = t.state, t.found_legal_proposed_by
            t = apply_transition(t, target, actor, reason, now)
            t = await asyncio.to_thread(self.tickets.update, t)
            detail: dict[str, Any] = {"from": before.value, "to": target.value, "reason": reason}
            if target is TicketState.FOUND_LEGAL:
                detail["proposed_by"] = proposed_by
            await self._audit(actor, "ticket.transition", f"ticket:{t.id}", detail)
            if target is TicketState.FOUND_LEGAL:
                t = await self._found_legal(t, actor, proposed_by)
            return t

    def _check_recipient(self, recipient: str) -> None:
        known = self.policy.referral_recipients
        if recipient not in known:
            names = ", ".join(sorted(known)) or "none configured"
            raise InvalidRequest(
                "referral.recipient",
                f"not a hotline or agency of takedown.referral_recipients ({names})",
            )

    async def _propose_found_legal(
        self, t: Ticket, actor: str, reason: str, now: datetime
    ) -> Ticket:
        """First person's found-legal: recorded, nothing else changes. Caller holds the lock."""
        ev = TicketEvent(now, actor, "propose-found-legal", reason)
        t = await asyncio.to_thread(
            self.tickets.update, add_event(t, ev, found_legal_proposed_by=actor)
        )
        await self._audit(
            actor, "ticket.found-legal-proposed", f"ticket:{t.id}", {"reason": reason}
        )
        return t

    async def _found_legal(self, t: Ticket, actor: str, proposed_by: str) -> Ticket:
        """Confirmed found-legal: revoke the case's blocking decisions and tell the hosting
        team the content may be restored. Caller holds the lock."""
        revoked: list[int] = []
        if self.decisions is not None:
            why = f"ticket {t.id} found legal (proposed by {proposed_by}, confirmed by {actor})"
            for decision in await asyncio.to_thread(self._case_blocks, t):
                await asyncio.to_thread(self.decisions.revoke, decision.id, actor, why)
                revoked.append(decision.id)
        if revoked and self.on_policy_change is not None:
            self.on_policy_change()
        ev = TicketEvent(
            self.clock(),
            actor,
            "revoke-blocks",
            f"{len(revoked)} blocking decision(s) revoked",
            detail=(("decisions", ",".join(str(i) for i in revoked)),),
        )
        t = await asyncio.to_thread(self.tickets.update, add_event(t, ev))
        await self._audit(actor, "ticket.revoke-blocks", f"ticket:{t.id}", {"decisions": revoked})
        return await self._notify(t, "found-legal")

    def _case_blocks(self, t: Ticket) -> list[Decision]:
        """Active or pending block decisions of the ticket's case on its targets."""
        targets = {u.url for u in t.urls}
        open_states = (DecisionStatus.ACTIVE, DecisionStatus.PENDING_APPROVAL)
        return [
            d
            for d in self.store.list_decisions(reference=t.reference, limit=100_000)
            if d.action is Action.BLOCK and d.status in open_states and d.indicator.value in targets
        ]

    async def record_outcome(self, ticket_id: int, actor: str, outcome: Outcome) -> Ticket:
        """Record a measure on the customer's account (stamped with ``actor`` and now)."""
        async with self._lock(ticket_id):
            t = await asyncio.to_thread(self.tickets.get, ticket_id)
            now = self.clock()
            record = replace(outcome, recorded_by=actor, recorded_at=now)
            ev = TicketEvent(
                now, actor, "outcome", outcome.reason, detail=(("kind", outcome.kind.value),)
            )
            t = add_event(t, ev, outcomes=(*t.outcomes, record))
            t = await asyncio.to_thread(self.tickets.update, t)
        await self._audit(
            actor,
            "ticket.outcome",
            f"ticket:{t.id}",
            {"kind": outcome.kind.value, "at": outcome.at.isoformat(), "reason": outcome.reason},
        )
        return t

    async def record_authorisation(
        self, ticket_id: int, actor: str, authorisation: Authorisation
    ) -> Ticket:
        """Record a law-enforcement authorisation (who, their reference, when; stamped
        with ``actor`` and now) and, where the ticket was waiting for one and its content
        is not yet removed, send the hosting team the instruction to isolate."""
        async with self._lock(ticket_id):
            t = await asyncio.to_thread(self.tickets.get, ticket_id)
            now = self.clock()
            waiting = self._awaiting_authorisation(t)
            record = replace(authorisation, recorded_by=actor, recorded_at=now)
            ev = TicketEvent(now, actor, "authorise", "law-enforcement authorisation recorded")
            t = await asyncio.to_thread(self.tickets.update, add_event(t, ev, authorisation=record))
            await self._audit(
                actor,
                "ticket.authorise",
                f"ticket:{t.id}",
                {
                    "by": record.by,
                    "reference_hash": short_hash(record.reference),
                    "authorised_at": record.at.isoformat(),
                },
            )
            if waiting and t.state in LIVE_STATES:
                t = await self._notify(t, "isolate")
        return t

    def _awaiting_authorisation(self, t: Ticket) -> bool:
        return t.authorisation is None and self.policy.needs_authorisation(t)

    async def set_hold(self, ticket_id: int, actor: str, hold: bool, reason: str) -> Ticket:
        """Set or clear the law-enforcement hold (no notice reaches the customer)."""
        return await self._flag(ticket_id, actor, reason, "hold", hold=hold)

    async def set_legal_hold(self, ticket_id: int, actor: str, hold: bool, reason: str) -> Ticket:
        """Set or clear the legal hold on the evidence (blocks deletion at any age)."""
        return await self._flag(ticket_id, actor, reason, "legal-hold", legal_hold=hold)

    async def _flag(
        self, ticket_id: int, actor: str, reason: str, what: str, **change: bool
    ) -> Ticket:
        async with self._lock(ticket_id):
            t = await asyncio.to_thread(self.tickets.get, ticket_id)
            value = next(iter(change.values()))
            ev = TicketEvent(
                self.clock(), actor, what, reason, detail=(("set", str(value).lower()),)
            )
            t = await asyncio.to_thread(self.tickets.update, add_event(t, ev, **change))
        await self._audit(
            actor, f"ticket.{what}", f"ticket:{t.id}", {"set": value, "reason": reason}
        )
        return t

    async def assign(self, ticket_id: int, actor: str, assignee: str, reason: str) -> Ticket:
        """Assign the ticket to ``assignee`` (an active token identity; ``""``: nobody);
        ``InvalidRequest`` for anyone else. Audited."""
        if assignee:
            known = {
                t.name for t in await asyncio.to_thread(self.store.list_tokens) if not t.revoked
            }
            if assignee not in known:
                raise InvalidRequest("assignee", "not an active token identity")
        async with self._lock(ticket_id):
            t = await asyncio.to_thread(self.tickets.get, ticket_id)
            ev = TicketEvent(
                self.clock(), actor, "assign", reason, detail=(("assignee", assignee),)
            )
            t = await asyncio.to_thread(self.tickets.update, add_event(t, ev, assignee=assignee))
        await self._audit(
            actor, "ticket.assign", f"ticket:{t.id}", {"assignee": assignee, "reason": reason}
        )
        return t

    async def comment(self, ticket_id: int, actor: str, text: str) -> Ticket:
        """Add a comment to the ticket. Audited by its SHA-256 and length only: a comment
        may name a URL, and the audit log never holds one."""
        async with self._lock(ticket_id):
            t = await asyncio.to_thread(self.tickets.get, ticket_id)
            ev = TicketEvent(self.clock(), actor, "comment", text)
            t = await asyncio.to_thread(self.tickets.update, add_event(t, ev))
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        await self._audit(
            actor, "ticket.comment", f"ticket:{t.id}", {"sha256": digest, "chars": len(text)}
        )
        return t
