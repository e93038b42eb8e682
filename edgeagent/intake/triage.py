"""The triage queue's rules: queue an item, and a person's accept, reject, uphold or revoke.

Shared by the control API and the CLI. Accepting a report turns each of its URLs into a
``url`` block through :class:`~edgeagent.decisions.DecisionService` (guardrails, four-eyes,
and ``public`` decisions that start pending approval all apply unchanged); a URL the
service refuses is named in the result by its short hash and reason, and the others go
on. Revoking an appeal revokes the open block decisions behind the appealed entry, or,
for an entry a feed lists, records an ``allow`` decision over it; revoking a challenge
revokes the open blocks of the challenged case. Every outcome is audited with the move
and, where the person left a contact, sent to them (``notify``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from edgeagent.decisions import DecisionRequest, DecisionService
from edgeagent.errors import Conflict, EdgeAgentError, short_hash
from edgeagent.intake.base import (
    APPEAL_CHANNELS,
    IntakeChannel,
    IntakeContent,
    IntakeItem,
    IntakeState,
    NewIntakeItem,
    check_outcome,
)
from edgeagent.intake.entryref import EntryRefs
from edgeagent.intake.references import new_reference
from edgeagent.metrics import Metrics
from edgeagent.model import Action, Decision, DecisionStatus, Entry, Indicator, NoticeSource, Scope
from edgeagent.store.base import AuditNote

Notify = Callable[[IntakeItem], None]

log = logging.getLogger("edgeagent.intake")


@dataclass(frozen=True, slots=True)
class RefusedUrl:
    """A URL of an accepted report that did not become a decision."""

    target_ref: str
    reason: str


@dataclass(frozen=True, slots=True)
class TriageResult:
    item: IntakeItem
    decisions: tuple[Decision, ...] = ()
    refused: tuple[RefusedUrl, ...] = ()


def _no_entries() -> Iterable[Entry]:
    return ()


class Triage:
    """The queue on top of a store and the decision lifecycle.

    ``entries``: the block entries in force (for finding an appealed feed entry);
    ``refs``: the appeal reference key; ``notify``: sends an outcome to an appellant
    who left a contact (a failure is logged by item id; the outcome stands).
    """

    def __init__(
        self,
        decisions: DecisionService,
        *,
        entries: Callable[[], Iterable[Entry]] = _no_entries,
        refs: EntryRefs | None = None,
        notify: Notify | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.decisions = decisions
        self.store = decisions.store
        self._entries = entries
        self._refs = refs
        self._notify = notify
        self._metrics = metrics

    # --- in

    def submit(self, channel: IntakeChannel, content: IntakeContent) -> IntakeItem:
        """Queue what a person sent; the audit row counts URLs, never names them."""
        detail = {
            "channel": channel.value,
            "urls": len(content.urls),
            "contact_given": bool(content.contact),
        }
        item = self.store.add_intake_item(
            NewIntakeItem(new_reference(channel), channel, content),
            AuditNote("intake.receive", detail),
        )
        if self._metrics is not None:
            self._metrics.intake_received.labels(channel.value).inc()
            self._metrics.intake_pending.labels(channel.value).inc()
        return item

    def export_pending(self) -> None:
        """Set the pending-items gauge per channel from the store (at start; afterwards
        each submit and decision moves it by one, so a flood costs no counting query)."""
        if self._metrics is None:
            return
        counts = self.store.count_intake_items()
        for channel in IntakeChannel:
            pending = counts.get((channel, IntakeState.PENDING), 0)
            self._metrics.intake_pending.labels(channel.value).set(pending)

    # --- a person's outcome

    def accept(self, item_id: int, actor: str, reason: str) -> TriageResult:
        """Turn a pending report's URLs into block decisions and mark it accepted."""
        item = self._pending(item_id, IntakeState.ACCEPTED)
        source = _notice_source(item)
        made: list[Decision] = []
        refused: list[RefusedUrl] = []
        for url in item.content.urls:
            request = DecisionRequest(
                target=url,
                scope=Scope.URL,
                action=Action.BLOCK,
                reason=reason,
                reference=item.reference,
                source=source,
                notice_received_at=item.created_at,
                category=item.content.category,
            )
            try:
                made.append(self.decisions.create(request, actor))
            except (EdgeAgentError, ValueError) as exc:
                refused.append(RefusedUrl(short_hash(url), _reason(exc)))
        detail = {
            "decisions": [d.id for d in made],
            "refused": len(refused),
            "reason": reason,
        }
        done = self._decide(item, IntakeState.ACCEPTED, actor, reason, made, detail=detail)
        return TriageResult(done, tuple(made), tuple(refused))

    def reject(self, item_id: int, actor: str, reason: str) -> TriageResult:
        """Keep a pending report, unacted on, with the reason."""
        item = self._pending(item_id, IntakeState.REJECTED)
        return TriageResult(
            self._decide(item, IntakeState.REJECTED, actor, reason, (), detail={"reason": reason})
        )

    def uphold(self, item_id: int, actor: str, reason: str) -> TriageResult:
        """Answer an appeal or challenge: the block stays."""
        item = self._pending(item_id, IntakeState.UPHELD)
        done = self._decide(item, IntakeState.UPHELD, actor, reason, (), detail={"reason": reason})
        self._tell(done)
        return TriageResult(done)

    def revoke(self, item_id: int, actor: str, reason: str) -> TriageResult:
        """Answer an appeal or challenge: the blocks behind it end (see the module doc)."""
        item = self._pending(item_id, IntakeState.REVOKED)
        if item.channel is IntakeChannel.CHALLENGE:
            changed = self._revoke_case(item, actor, reason)
        else:
            changed = self._revoke_entry(item, actor, reason)
        detail = {"decisions": [d.id for d in changed], "reason": reason}
        done = self._decide(item, IntakeState.REVOKED, actor, reason, changed, detail=detail)
        self._tell(done)
        return TriageResult(done, tuple(changed))

    def appealed(self, item: IntakeItem) -> list[Decision]:
        """The open block decisions a pending appeal names (by its opaque entry
        reference), for the person deciding it; empty when it names none of them (a list
        entry, or nothing still blocked). A read: the same match :meth:`revoke` makes."""
        ref = item.content.subject
        if item.channel is not IntakeChannel.APPEAL or self._refs is None or not ref:
            return []
        blocks = self._open_blocks()
        hits = set(self._refs.find(ref, {d.indicator for d in blocks}))
        return [d for d in blocks if d.indicator in hits]

    # --- helpers

    def _pending(self, item_id: int, outcome: IntakeState) -> IntakeItem:
        item = self.store.get_intake_item(item_id)
        check_outcome(item.channel, item.state, outcome)
        return item

    def _decide(
        self,
        item: IntakeItem,
        state: IntakeState,
        actor: str,
        reason: str,
        decisions: Iterable[Decision],
        *,
        detail: Mapping[str, object],
    ) -> IntakeItem:
        done = self.store.decide_intake_item(
            item.id,
            state,
            actor=actor,
            reason=reason,
            decision_ids=[d.id for d in decisions],
            audit=AuditNote(f"intake.{state.value}", {"channel": item.channel.value, **detail}),
        )
        if self._metrics is not None:
            self._metrics.intake_decided.labels(item.channel.value, state.value).inc()
            waited = (done.decided_at or datetime.now(UTC)) - item.created_at
            self._metrics.intake_decision_seconds.labels(item.channel.value).observe(
                max(0.0, waited.total_seconds())
            )
            self._metrics.intake_pending.labels(item.channel.value).dec()
        return done

    def _open_blocks(self) -> list[Decision]:
        return [
            d
            for status in (DecisionStatus.ACTIVE, DecisionStatus.PENDING_APPROVAL)
            for d in self.store.list_decisions(status=status, limit=1_000_000)
            if d.action is Action.BLOCK
        ]

    def _revoke_case(self, item: IntakeItem, actor: str, reason: str) -> list[Decision]:
        case = item.content.subject
        found = [d for d in self._open_blocks() if d.reference == case]
        if not case or not found:
            raise Conflict("no open block decision has the challenged case reference")
        return [self.decisions.revoke(d.id, actor, reason) for d in found]

    def _revoke_entry(self, item: IntakeItem, actor: str, reason: str) -> list[Decision]:
        ref = item.content.subject
        if self._refs is None or not ref:
            raise Conflict("the appeal names no blocking entry: uphold it or block/allow by hand")
        blocks = self._open_blocks()
        hits = set(self._refs.find(ref, {d.indicator for d in blocks}))
        if hits:
            return [
                self.decisions.revoke(d.id, actor, reason) for d in blocks if d.indicator in hits
            ]
        listed = self._refs.find(ref, {e.indicator for e in self._entries()})
        if not listed:
            raise Conflict("the appealed entry is no longer blocked")
        return [self._allow(indicator, item, actor, reason) for indicator in listed]

    def _allow(self, indicator: Indicator, item: IntakeItem, actor: str, reason: str) -> Decision:
        request = DecisionRequest(
            target=indicator.value,
            scope=indicator.scope,
            action=Action.ALLOW,
            reason=reason,
            reference=item.reference,
            source=NoticeSource.INTERNAL,
        )
        return self.decisions.create(request, actor)

    def _tell(self, item: IntakeItem) -> None:
        if self._notify is None or not item.content.contact or item.channel not in APPEAL_CHANNELS:
            return
        try:
            self._notify(item)
        except EdgeAgentError as exc:
            log.warning("appellant not told of the outcome of intake item %d: %s", item.id, exc)


def _notice_source(item: IntakeItem) -> NoticeSource:
    """A quarantined notice keeps the source it claims, once a person vouches for it."""
    if item.channel is IntakeChannel.MAIL_QUARANTINE and item.content.notice_source:
        return NoticeSource(item.content.notice_source)
    return NoticeSource.PUBLIC


def _reason(exc: Exception) -> str:
    """Why a URL was refused; edgeagent's own errors name entries by short hash only."""
    return str(exc) if isinstance(exc, EdgeAgentError) else "not a valid URL"
