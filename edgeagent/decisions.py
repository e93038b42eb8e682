"""The decision lifecycle: create, approve (four-eyes), revoke, expire — with audit.

Shared by the control API and the CLI so both enforce the same rules:
- the target is canonicalised for its scope (``InvalidTarget`` names the reason);
- the guardrails refuse public suffixes, the root, wide prefixes and the agent's own
  reserved names outright (no override);
- a block that needs a second person (protected names, IP/CIDR) starts
  ``pending-approval``, and so does any decision from a ``public`` report when the
  config says public reports need review;
- a decision carries the law-enforcement ``hold`` (takedown notices reach the hosting
  team only) as asked, or by default when its notice source is one the config holds for;
  and the ``jurisdiction`` whose law governs the case;
- approval must come from someone other than the creator;
- every write lands in the audit log with actor, what and why (entries by short ref only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from edgeagent.errors import Conflict, GuardrailViolation, InvalidTransition
from edgeagent.guard import GuardVerdict
from edgeagent.model import Action, Decision, DecisionStatus, Indicator, NoticeSource, Scope
from edgeagent.store.base import AuditNote, NewDecision, Store


class DecisionGate(Protocol):
    def check_indicator(self, indicator: Indicator, action: Action) -> GuardVerdict: ...

    def refusal(self, reason: str, indicator: Indicator, action: Action) -> GuardrailViolation: ...


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """A person's request, already type-checked (by the API or the CLI)."""

    target: str
    scope: Scope
    action: Action
    reason: str
    reference: str
    source: NoticeSource
    notice_received_at: datetime | None = None
    expires_at: datetime | None = None
    category: str = ""
    hold: bool | None = None  # None: on when ``source`` is one the service holds for
    jurisdiction: str = ""


class FourEyesRequired(Conflict):
    """The approver is the creator: a second person must approve."""


class DecisionService:
    """Applies the lifecycle rules on top of a store and the guardrails."""

    def __init__(
        self,
        store: Store,
        gate: DecisionGate,
        *,
        public_needs_approval: bool,
        hold_for: frozenset[NoticeSource] = frozenset({NoticeSource.LAW_ENFORCEMENT}),
    ) -> None:
        self.store = store
        self.gate = gate
        self.public_needs_approval = public_needs_approval
        self.hold_for = hold_for

    def create(self, request: DecisionRequest, actor: str) -> Decision:
        indicator = Indicator.parse(request.scope, request.target)
        verdict = self.gate.check_indicator(indicator, request.action)
        if not verdict.allowed:
            self.store.append_audit(
                actor,
                "decision.refused",
                f"target:{indicator.ref}",
                {"reason": verdict.reason, "scope": indicator.scope.value},
            )
            raise self.gate.refusal(verdict.reason, indicator, request.action)
        pending = verdict.needs_second_person or (
            self.public_needs_approval and request.source is NoticeSource.PUBLIC
        )
        now = datetime.now(UTC)
        hold = request.source in self.hold_for if request.hold is None else request.hold
        detail = {
            "target": indicator.ref,
            "scope": indicator.scope.value,
            "action": request.action.value,
            "status": "pending-approval" if pending else "active",
            "reason": request.reason,
            "reference": request.reference,
            "needs_second_person": verdict.needs_second_person,
            "guard": verdict.reason,
            "hold": hold,
            "jurisdiction": request.jurisdiction,
        }
        return self.store.add_decision(
            NewDecision(
                indicator=indicator,
                action=request.action,
                actor=actor,
                reason=request.reason,
                reference=request.reference,
                notice_source=request.source,
                notice_received_at=request.notice_received_at or now,
                status=DecisionStatus.PENDING_APPROVAL if pending else DecisionStatus.ACTIVE,
                expires_at=request.expires_at,
                category=request.category,
                hold=hold,
                jurisdiction=request.jurisdiction,
            ),
            AuditNote("decision.create", detail),
        )

    def approve(self, decision_id: int, actor: str, reason: str = "") -> Decision:
        current = self.store.get_decision(decision_id)
        if current.status is not DecisionStatus.PENDING_APPROVAL:
            raise InvalidTransition(current.status.value, "active", _next(current.status))
        if current.actor == actor:
            raise FourEyesRequired("the creator cannot approve their own decision")
        return self.store.set_decision_status(
            decision_id,
            DecisionStatus.ACTIVE,
            actor=actor,
            reason=reason or "approved",
            approved_by=actor,
            audit=AuditNote("decision.approve", {"reason": reason}),
        )

    def revoke(self, decision_id: int, actor: str, reason: str) -> Decision:
        current = self.store.get_decision(decision_id)
        if current.status not in (DecisionStatus.ACTIVE, DecisionStatus.PENDING_APPROVAL):
            raise InvalidTransition(current.status.value, "revoked", _next(current.status))
        return self.store.set_decision_status(
            decision_id,
            DecisionStatus.REVOKED,
            actor=actor,
            reason=reason,
            audit=AuditNote("decision.revoke", {"reason": reason}),
        )

    def expire_due(self, now: datetime | None = None) -> list[Decision]:
        """Mark active decisions whose ``expires_at`` has passed as expired."""
        when = now or datetime.now(UTC)
        due = [
            d
            for d in self.store.active_decisions()
            if d.expires_at is not None and d.expires_at <= when
        ]
        return [
            self.store.set_decision_status(
                d.id,
                DecisionStatus.EXPIRED,
                actor="system",
                reason="expired",
                audit=AuditNote("decision.expire"),
            )
            for d in due
        ]


def _next(status: DecisionStatus) -> list[str]:
    allowed = {
        DecisionStatus.PENDING_APPROVAL: ["active", "revoked"],
        DecisionStatus.ACTIVE: ["revoked", "expired"],
    }
    return allowed.get(status, [])
