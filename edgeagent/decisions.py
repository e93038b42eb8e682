"""The decision lifecycle: create, approve (four-eyes), revoke, expire — with audit.

Shared by the control API and the CLI so both enforce the same rules:
- the target is canonicalised for its scope (``InvalidTarget`` names the reason);
- the guardrails refuse public suffixes, the root, wide prefixes and the agent's own
  reserved names outright (no override);
- a block that needs a second person (protected names, IP/CIDR) starts
  ``pending-approval``, and so does any decision from a ``public`` report when the
  config says public reports need review, and any ``allow`` that would lift a block of
  an external list (a hotline's or law enforcement's: :mod:`edgeagent.overrides`);
- a decision carries the law-enforcement ``hold`` (takedown notices reach the hosting
  team only) as asked, or by default when its notice source is one the config holds for;
  and the ``jurisdiction`` whose law governs the case;
- approval must come from someone other than the creator;
- every write lands in the audit log with actor, what and why (entries by short ref only).

A notice with many targets (:meth:`DecisionService.create_notice`) is one case: every
target gets the notice's reference, source and reason; each target is accepted, starts
pending or is refused with its reason, and the stored ones share one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from edgeagent import canon
from edgeagent.bulk import paused_gc
from edgeagent.errors import (
    Conflict,
    EdgeAgentError,
    GuardrailViolation,
    InvalidTarget,
    InvalidTransition,
    short_hash,
)
from edgeagent.guard import GuardVerdict
from edgeagent.model import Action, Decision, DecisionStatus, Indicator, NoticeSource, Scope
from edgeagent.store.base import AuditNote, NewDecision, Store, TargetSearch


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


class ExternalOverrides(Protocol):
    """What the lifecycle needs to know about external lists (:mod:`edgeagent.overrides`)."""

    def lifted_sources(self, indicator: Indicator) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class NoticeTarget:
    """One target of a notice, as sent (canonicalised by :meth:`create_notice`)."""

    target: str
    scope: Scope


class NoticeOutcome(StrEnum):
    ACCEPTED = "accepted"  # active now
    PENDING = "pending"  # waits for a second person
    REFUSED = "refused"  # not stored; ``reason`` says why


@dataclass(frozen=True, slots=True)
class NoticeResult:
    """What became of target number ``index`` of a notice.

    ``target_ref`` is the short hash of the canonical target (of the text as sent when it
    is not a valid target); ``decision`` is the stored decision unless refused.
    """

    index: int
    outcome: NoticeOutcome
    target_ref: str
    reason: str = ""
    decision: Decision | None = None


_AUDITED_REFUSALS = 100  # refusals named one by one in a notice's audit row


class FourEyesRequired(Conflict):
    """The approver is the creator: a second person must approve."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DecisionService:
    """Applies the lifecycle rules on top of a store and the guardrails.

    ``overrides`` answers which external-list blocks an allow would lift; without it
    (tests of other rules) no allow waits for that reason. ``hold_for``: the notice
    sources whose decisions are on law-enforcement hold unless they say otherwise.
    ``clock`` gives the time a notice counts as received when it does not say, and the
    default time of :meth:`expire_due`: the daemon's deadline clock
    (:mod:`edgeagent.deadline_clock`), so a ticket's SLA is not cut short by a step back.
    """

    def __init__(
        self,
        store: Store,
        gate: DecisionGate,
        *,
        public_needs_approval: bool,
        overrides: ExternalOverrides | None = None,
        hold_for: frozenset[NoticeSource] = frozenset({NoticeSource.LAW_ENFORCEMENT}),
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.clock = clock
        self.gate = gate
        self.public_needs_approval = public_needs_approval
        self.overrides = overrides
        self.hold_for = hold_for

    def create(self, request: DecisionRequest, actor: str) -> Decision:
        (outcome,) = self.create_many([(request, actor)])
        if isinstance(outcome, EdgeAgentError):
            raise outcome
        return outcome

    def create_many(
        self, requests: Sequence[tuple[DecisionRequest, str]]
    ) -> list[Decision | EdgeAgentError]:
        """Several ``(request, actor)`` decisions stored in one transaction (one commit):
        each answered in its place as :meth:`create` alone answers it, by the stored
        decision or by the error it raises (an invalid target, a guardrail refusal, a
        duplicate). An error that is no one request's own (the store failing, say)
        stores none of them and is raised."""
        outcomes: dict[int, Decision | EdgeAgentError] = {}
        batch: list[tuple[NewDecision, AuditNote]] = []
        slots: list[int] = []
        for i, (request, actor) in enumerate(requests):
            try:
                indicator = Indicator.parse(request.scope, request.target)
            except InvalidTarget as exc:
                outcomes[i] = exc
                continue
            verdict = self.gate.check_indicator(indicator, request.action)
            if not verdict.allowed:
                self.store.append_audit(
                    actor,
                    "decision.refused",
                    f"target:{indicator.ref}",
                    {"reason": verdict.reason, "scope": indicator.scope.value},
                )
                outcomes[i] = self.gate.refusal(verdict.reason, indicator, request.action)
                continue
            batch.append(self._new(request, indicator, verdict, actor))
            slots.append(i)
        if batch:
            outcomes.update(zip(slots, self.store.add_decisions(batch), strict=True))
        return [outcomes[i] for i in range(len(requests))]

    def create_notice(
        self, notice: DecisionRequest, targets: Sequence[NoticeTarget], actor: str
    ) -> list[NoticeResult]:
        """One decision per target of ``notice`` (its target and scope are ignored), stored
        in one transaction; a result per target, in order. Refusals (invalid target,
        guardrail, already decided) store nothing for that target. One audit row sums
        up the notice, besides each decision's own."""
        # Thousands of acyclic objects per notice: the collector's passes free nothing.
        with paused_gc():
            return self._create_notice(notice, targets, actor)

    def _create_notice(
        self, notice: DecisionRequest, targets: Sequence[NoticeTarget], actor: str
    ) -> list[NoticeResult]:
        results: list[NoticeResult | None] = [None] * len(targets)
        batch: list[tuple[NewDecision, AuditNote]] = []
        slots: list[tuple[int, Indicator]] = []
        for i, item in enumerate(targets):
            request = replace(notice, target=item.target, scope=item.scope)
            try:
                indicator = Indicator.parse(item.scope, item.target)
            except ValueError as exc:
                reason = exc.reason if isinstance(exc, InvalidTarget) else "not a valid target"
                results[i] = NoticeResult(
                    i, NoticeOutcome.REFUSED, short_hash(item.target), f"invalid: {reason}"
                )
                continue
            verdict = self.gate.check_indicator(indicator, request.action)
            if not verdict.allowed:
                results[i] = NoticeResult(
                    i, NoticeOutcome.REFUSED, indicator.ref, f"guardrail: {verdict.reason}"
                )
                continue
            batch.append(self._new(request, indicator, verdict, actor))
            slots.append((i, indicator))
        for (i, indicator), stored in zip(slots, self.store.add_decisions(batch), strict=True):
            if isinstance(stored, Conflict):
                results[i] = NoticeResult(
                    i, NoticeOutcome.REFUSED, indicator.ref, f"duplicate: {stored}"
                )
            else:
                pending = stored.status is DecisionStatus.PENDING_APPROVAL
                outcome = NoticeOutcome.PENDING if pending else NoticeOutcome.ACCEPTED
                results[i] = NoticeResult(i, outcome, indicator.ref, decision=stored)
        done = [r for r in results if r is not None]
        self.store.append_audit(
            actor, "decision.notice", f"notice:{notice.reference}", _notice_detail(notice, done)
        )
        return done

    def _new(
        self, request: DecisionRequest, indicator: Indicator, verdict: GuardVerdict, actor: str
    ) -> tuple[NewDecision, AuditNote]:
        """The decision to store for an allowed ``request``, and its audit note."""
        overrides = self._lifted(indicator, request.action)
        pending = (
            verdict.needs_second_person
            or bool(overrides)
            or (self.public_needs_approval and request.source is NoticeSource.PUBLIC)
        )
        now = self.clock()
        hold = request.source in self.hold_for if request.hold is None else request.hold
        detail: dict[str, Any] = {
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
        if overrides:
            detail["overrides"] = list(overrides)
        return (
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

    def _lifted(self, indicator: Indicator, action: Action) -> tuple[str, ...]:
        if action is not Action.ALLOW or self.overrides is None:
            return ()
        return self.overrides.lifted_sources(indicator)

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
        when = now or self.clock()
        due = self.store.due_decisions(when)
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


def notice_counts(results: Sequence[NoticeResult]) -> dict[str, int]:
    """How many targets of a notice were accepted, are pending, were refused."""
    counts = {o.value: 0 for o in NoticeOutcome}
    for r in results:
        counts[r.outcome.value] += 1
    return counts


def _notice_detail(notice: DecisionRequest, results: Sequence[NoticeResult]) -> dict[str, Any]:
    counts = notice_counts(results)
    refused = [r for r in results if r.outcome is NoticeOutcome.REFUSED]
    ids = [r.decision.id for r in results if r.decision is not None]
    return {
        "reference": notice.reference,
        "source": notice.source.value,
        "action": notice.action.value,
        "reason": notice.reason,
        "targets": len(results),
        **counts,
        "decisions": [min(ids), max(ids)] if ids else [],
        "refusals": [
            {"index": r.index, "target": r.target_ref, "reason": r.reason}
            for r in refused[:_AUDITED_REFUSALS]
        ],
    }


def target_search(text: str) -> TargetSearch:
    """What a search for ``text`` finds: decisions on its canonical form under every scope
    it is valid for and, for a URL, a name or an address, decisions on that host and on
    URLs on that host. ``InvalidTarget`` if ``text`` is valid for no scope."""
    values: list[str] = []
    for scope in Scope:
        if scope is Scope.URL_HASH:
            continue
        try:
            value = Indicator.parse(scope, text).value
        except ValueError:
            continue
        if value not in values:
            values.append(value)
    if not values:
        raise InvalidTarget("not a URL, name, address or prefix", text[:64])
    host = next((canon.url_host(v) for v in values if "://" in v), None)
    if host is None:
        host = next((v for v in values if "/" not in v), None)  # a name or an address
    if host is None:
        return TargetSearch(tuple(values))  # a prefix
    if host not in values:
        values.append(host)
    return TargetSearch(tuple(values), f"[{host}]" if ":" in host else host)
