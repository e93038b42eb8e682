"""``TakedownService``: locate listed targets in own space, open and drive tickets, notify.

How the daemon uses it (all methods are coroutines on the daemon's event loop):

* ``await svc.refresh_customers()`` at start and on a schedule (customer exports).
* ``await svc.on_entries(entries, notice_received_at, reference, source)`` whenever block
  entries arrive (a decision or a feed generation; every kind but ``url-hash``, see
  :mod:`edgeagent.takedown.locate`): locates them, opens one ticket per customer and case
  (or adds targets to the open one), and notifies the hosting team at once. Targets
  outside own space create no ticket.
* every minute: ``for job in svc.due_jobs(): await svc.run_job(job)`` (or
  ``await svc.run_due()``): SLA reminders, escalation at the deadline (outside business
  hours also to the on-call notifiers of the notice source), re-notify while the content
  is live, retries of failed notices, periodic re-check of where URLs resolve, and the
  SLA breach recorded once per ticket. ``run_due`` then sets the
  ``edgeagent_takedown_*`` gauges (open, overdue, by source) from the ticket store; the
  breach counter counts each recorded breach. The daemon also runs
  ``await svc.record_breaches()`` on its own, so a breach is recorded at its deadline
  while a pass of ``run_due`` waits on a slow notice.
* ``await svc.transition(id, to, actor, reason)`` and the other actions of people (the
  API, the CLI): :mod:`edgeagent.takedown.ticket_actions`.

Only the leader sends (:mod:`edgeagent.leadership`): where ``may_send()`` is false (the
CLI, an agent that does not lead) a notice an action calls for is recorded on the ticket
as owed (a ``notify-owed`` event), and the leader's ``await svc.send_owed()``, run every
few seconds, sends it.

Where the rules require a law-enforcement authorisation before isolation (by source or
jurisdiction), every notice tells the hosting team to preserve the content unaltered and
await instruction, until the authorisation is recorded.

A ticket records where its addresses sit on the segments of the host the agent runs on
(the ``segments`` locator: interface, next hop, MAC, how and when learned), looked up once
per address; notices and evidence carry it.

Every change is written to the ticket store and audited in the main store with subject
``ticket:<id>``; audit details name URLs only by short hash. ``await
svc.purge_expired()`` (scheduled) removes closed tickets' records past their retention,
never one under legal hold (:mod:`edgeagent.takedown.retention`). Before every notice after the
first, the URLs are re-resolved: URLs that moved to another customer are taken off this
ticket (and open one for the new customer), URLs that left own space are marked moved.
Notifier failures are retried ``notify_attempts`` times, recorded on the ticket (each
attempt) and retried later by ``due_jobs``; the SLA clock is not affected by them.

Every time the service stamps or compares comes from its ``clock``: the daemon gives it
the deadline clock (:mod:`edgeagent.deadline_clock`), so a step back of the wall clock,
even one followed by a restart, delays no reminder, escalation or SLA breach.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from functools import partial
from typing import Any

from edgeagent.decisions import DecisionService
from edgeagent.errors import ConfigError, ConfigProblem, EdgeAgentError, NotFound, short_hash
from edgeagent.metrics import Metrics
from edgeagent.model import (
    Action,
    Entry,
    Indicator,
    NoticeSource,
    Scope,
)
from edgeagent.store.base import Store
from edgeagent.takedown.calendar import WEEKDAYS, BusinessHours, parse_window
from edgeagent.takedown.customers.base import Assignment
from edgeagent.takedown.customers.directory import CustomerDirectory, RefreshReport
from edgeagent.takedown.customers.kinds import CUSTOMER_SOURCE_KINDS
from edgeagent.takedown.delivery import deliver
from edgeagent.takedown.evidence import build_bundle
from edgeagent.takedown.locate import Locator, locatable
from edgeagent.takedown.notifiers.base import (
    FOUND_LEGAL_INSTRUCTION,
    INSTRUCTION,
    PRESERVE_INSTRUCTION,
    Notifier,
)
from edgeagent.takedown.notifiers.kinds import NOTIFIER_KINDS
from edgeagent.takedown.report import TakedownReport
from edgeagent.takedown.retention import PURGED_RECORD_CLASS, may_delete, retain_until
from edgeagent.takedown.rules import (
    OWED,
    Job,
    TakedownPolicy,
    due_breaches,
    due_jobs,
    owed_notices,
)
from edgeagent.takedown.segment import SegmentDetail
from edgeagent.takedown.segment_locator import SegmentLocator
from edgeagent.takedown.settings import TakedownSettings
from edgeagent.takedown.space import OwnSpace
from edgeagent.takedown.ticket_actions import TicketActions
from edgeagent.takedown.tickets import (
    Ticket,
    TicketEvent,
    TicketState,
    TicketUrl,
    add_event,
    add_urls,
    with_segments,
)
from edgeagent.takedown.ticketstore import TicketStorage

log = logging.getLogger(__name__)


def _never_notified(t: Ticket) -> bool:
    return t.last_notified_at is None and t.notify_failures == 0 and not t.closed


def _first_time(key: str) -> bool:
    """The claim of an agent that always leads and shares its tickets with nobody."""
    return True


def _always_leads() -> bool:
    return True


def _sent(key: str) -> None:
    """The confirmation of an agent that shares its tickets with nobody: nothing to record."""
    return None


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What :meth:`TakedownService.on_entries` did: tickets touched, and counts of
    entries that were outside own space, unresolvable, or own but unassigned."""

    tickets: tuple[Ticket, ...]
    outside: int
    unresolved: int
    unassigned: int


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What :meth:`TakedownService.purge_expired` removed, and what a legal hold kept."""

    purged: tuple[int, ...]
    kept_by_legal_hold: tuple[int, ...]


class TakedownService(TicketActions):
    """See the module docstring."""

    def __init__(
        self,
        store: Store,
        tickets: TicketStorage,
        locator: Locator,
        notifiers: Sequence[Notifier],
        policy: TakedownPolicy | None = None,
        *,
        segments: SegmentLocator | None = None,
        clock: Callable[[], datetime] = _utcnow,
        time_zone: tzinfo = UTC,
        decisions: DecisionService | None = None,
        metrics: Metrics | None = None,
        on_call: Mapping[str, Sequence[Notifier]] | None = None,
        business_hours: BusinessHours | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        # Escalations outside business hours also go to the on-call notifiers of the
        # ticket's notice source (no business hours: never out of hours).
        self.on_call = {source: tuple(n) for source, n in (on_call or {}).items()}
        self.business_hours = business_hours
        self.time_zone = time_zone  # the NTD team's wall clock
        # Found-legal revokes the case's blocks through the decision lifecycle, then
        # calls on_policy_change (the daemon's reconciler) so the resolvers follow.
        self.decisions = decisions
        self.on_policy_change: Callable[[], None] | None = None
        # Records a notice's idempotency key before it is sent (the leadership's claim,
        # edgeagent.leadership): False means sent before; Fenced means not the leader.
        self.claim_notice: Callable[[str], bool] = _first_time
        # Records that a channel took the notice of a claimed key (never sent again).
        self.confirm_notice: Callable[[str], None] = _sent
        # Whether this process may send now (the leader); otherwise notices are owed.
        self.may_send: Callable[[], bool] = _always_leads
        self.tickets = tickets
        self.locator = locator
        self.notifiers = tuple(notifiers)
        self.policy = policy or TakedownPolicy()
        self.segments = segments
        self.clock = clock
        self._locks: dict[int, asyncio.Lock] = {}
        self._open_lock = asyncio.Lock()
        if metrics is not None:
            for source in NoticeSource:  # every series exists from the start, at zero
                metrics.takedown_sla_breaches.labels(source=source.value).inc(0)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_settings(
        cls,
        settings: TakedownSettings,
        store: Store,
        tickets: TicketStorage,
        *,
        metrics: Metrics | None = None,
        time_zone: tzinfo = UTC,
        decisions: DecisionService | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> TakedownService:
        """Build the service from ``[takedown]`` over ``tickets``
        (:func:`edgeagent.store.open_ticket_store` opens the one beside the store);
        ``time_zone`` is the NTD team's (``[agent] time_zone``); ``decisions`` revokes a
        case's blocks when it is found legal; ``clock`` is the one every deadline is
        compared with (the daemon's :class:`edgeagent.deadline_clock.DeadlineClock`).

        Customer sources and notifiers come from their registries; their secrets are read
        now. Call ``await svc.refresh_customers()`` before the first ``on_entries``.
        Raises ``ConfigError`` when no non-filtering resolver is configured.
        """
        sources = []
        for i, config in enumerate(settings.customers):
            kind = CUSTOMER_SOURCE_KINDS.plugin(config)
            sources.append(kind.from_config(config, name=f"{kind.KIND}{i}"))
        own = OwnSpace(str(p) for p in settings.own_prefixes)
        resolvers = [(r.host, r.port) for r in settings.resolvers]
        if not resolvers:
            # Never fall back to the system resolver: it may apply the blocking policy and
            # answer with the stop page's address, which would locate nothing (or worse).
            raise ConfigError(
                "[takedown]",
                [ConfigProblem("takedown.resolvers", "needs a resolver without the policy")],
            )
        locator = Locator(own, CustomerDirectory(sources), resolvers)
        by_name = {
            name: NOTIFIER_KINDS.plugin(n).from_config(n, name=name)
            for name, n in settings.notifiers.items()
        }
        on_call_names = settings.on_call.on_call_names
        notifiers = [n for name, n in by_name.items() if name not in on_call_names]
        on_call = {
            source.value: [by_name[name] for name in names]
            for source, names in settings.on_call.notifiers.items()
        }
        start, end = parse_window(settings.on_call.business_hours)
        hours = BusinessHours(
            frozenset(WEEKDAYS.index(d) for d in settings.on_call.business_days),
            start,
            end,
            frozenset(settings.on_call.holidays),
            time_zone,
        )
        segments = SegmentLocator(
            own,
            settings.probe,
            probe_timeout=settings.probe_timeout_seconds,
            probes_per_minute=settings.probe_rate_per_minute,
            metrics=metrics,
        )
        policy = TakedownPolicy.from_settings(settings)
        return cls(
            store,
            tickets,
            locator,
            notifiers,
            policy,
            segments=segments,
            clock=clock,
            time_zone=time_zone,
            decisions=decisions,
            metrics=metrics,
            on_call=on_call,
            business_hours=hours,
        )

    async def refresh_customers(self) -> RefreshReport:
        """Reload customer sources; failures keep old data and are audited."""
        report = await self.locator.customers.refresh()
        for name, err in report.failed.items():
            await self._audit(
                "system",
                "takedown.customers-rejected",
                f"customer-source:{name}",
                {"problems": [str(p) for p in err.problems[:50]], "count": len(err.problems)},
            )
        if report.overlaps:
            await self._audit(
                "system",
                "takedown.customers-overlap",
                "customer-sources",
                {
                    "overlaps": [o.describe() for o in report.overlaps[:50]],
                    "count": len(report.overlaps),
                },
            )
        return report

    # ------------------------------------------------------------------------ intake

    async def on_entries(
        self,
        entries: Iterable[Entry | Indicator],
        notice_received_at: datetime,
        reference: str,
        source: str,
        *,
        jurisdiction: str = "",
        hold: bool = False,
        actor: str = "system",
    ) -> IntakeResult:
        """Locate block entries and open/extend tickets; notify new work at once."""
        received = notice_received_at.astimezone(UTC)
        indicators: list[Indicator] = []
        for item in entries:
            if isinstance(item, Entry):
                if item.action is not Action.BLOCK:
                    continue
                ind = item.indicator
            else:
                ind = item
            if locatable(ind):
                indicators.append(ind)
        locations = await self.locator.locate(
            indicators, at=received, names=_listed_names(indicators)
        )
        groups: dict[str, tuple[Assignment, list[TicketUrl]]] = {}
        outside = unresolved = unassigned = 0
        now = self.clock()
        for loc in locations:
            if not loc.answers:
                unresolved += 1
                continue
            if not loc.matches:
                outside += 1
                continue
            for assignment, addrs in loc.by_customer():
                if assignment is None:
                    unassigned += 1
                    await self._audit(
                        actor,
                        "takedown.unassigned",
                        f"entry:{loc.indicator.ref}",
                        {"addresses": list(addrs), "reference_hash": short_hash(reference)},
                    )
                    continue
                ind = loc.indicator
                url = TicketUrl(ind.value, ind.ref, addrs, now, now, scope=ind.scope)
                slot = groups.setdefault(assignment.customer_id, (assignment, []))
                slot[1].append(url)
        touched: list[Ticket] = []
        for assignment, urls in groups.values():
            segments = await self._new_segments(assignment.customer_id, reference, urls)
            ticket, fresh = await self._open_or_extend(
                assignment,
                tuple(urls),
                segments,
                received=received,
                reference=reference,
                source=source,
                jurisdiction=jurisdiction,
                hold=hold,
                actor=actor,
            )
            if fresh:
                ticket = await self._notify_locked(ticket.id, "notice", recheck=False, first=True)
            touched.append(ticket)
        return IntakeResult(tuple(touched), outside, unresolved, unassigned)

    async def _new_segments(
        self, customer_id: str, reference: str, urls: Iterable[TicketUrl]
    ) -> tuple[SegmentDetail, ...]:
        """On-segment detail of the addresses the customer's open ticket has none for
        (looked up before the ticket is locked: a probe may take a second)."""
        if self.segments is None:
            return ()
        existing = await asyncio.to_thread(self.tickets.find_open, customer_id, reference)
        known = {d.address for d in existing.segments} if existing is not None else set()
        # Prefix entries' matches are prefixes: only single addresses sit somewhere.
        wanted = [a for u in urls for a in u.addresses if a not in known and "/" not in a]
        return await self.segments.lookup_many(wanted)

    async def _open_or_extend(
        self,
        a: Assignment,
        urls: tuple[TicketUrl, ...],
        segments: tuple[SegmentDetail, ...],
        *,
        received: datetime,
        reference: str,
        source: str,
        jurisdiction: str,
        hold: bool,
        actor: str,
    ) -> tuple[Ticket, bool]:
        """``(ticket, needs_notice)``: the open ticket for this customer and case."""
        now = self.clock()
        async with self._open_lock:
            existing = await asyncio.to_thread(self.tickets.find_open, a.customer_id, reference)
            if existing is None:
                ticket = Ticket(
                    id=0,
                    reference=reference,
                    source=source,
                    jurisdiction=jurisdiction,
                    customer_id=a.customer_id,
                    service_id=a.service_id,
                    contact=a.contact,
                    assignment_origin=a.origin,
                    notice_received_at=received,
                    opened_at=now,
                    deadline=received + self.policy.sla(source),
                    state=TicketState.RECEIVED,
                    urls=urls,
                    events=(
                        TicketEvent(
                            now, actor, "open", "listed URL hosted in own space", "", "received"
                        ),
                    ),
                    hold=hold,
                    segments=segments,
                )
                ticket = await asyncio.to_thread(self.tickets.create, ticket)
                await self._audit(
                    actor,
                    "ticket.open",
                    f"ticket:{ticket.id}",
                    {
                        "customer_id": a.customer_id,
                        "service_id": a.service_id,
                        "source": source,
                        "reference_hash": short_hash(reference),
                        "urls": [u.ref for u in urls],
                        "hold": hold,
                    },
                )
                return ticket, True
        async with self._lock(existing.id):
            current = await asyncio.to_thread(self.tickets.get, existing.id)
            before = {u.url for u in current.urls}
            updated = with_segments(add_urls(current, urls, actor, now), segments)
            if hold and not updated.hold:
                updated = replace(updated, hold=True)
            updated = await asyncio.to_thread(self.tickets.update, updated)
            new = [u.ref for u in urls if u.url not in before]
            if new:
                await self._audit(actor, "ticket.add-urls", f"ticket:{updated.id}", {"urls": new})
        return updated, bool(new)

    # -------------------------------------------------------------------- retention

    async def purge_expired(self, now: datetime | None = None) -> PurgeReport:
        """Remove the records of closed tickets past their retention (see
        :mod:`edgeagent.takedown.retention`); never one under legal hold. Each removal
        leaves an audit row naming the class of record removed, never its content."""
        when = now or self.clock()
        policy = self.policy.retention
        due = [
            t
            for t in await asyncio.to_thread(self.tickets.closed_tickets, legal_hold=False)
            if may_delete(t, policy, when)
        ]
        held = [
            t.id
            for t in await asyncio.to_thread(self.tickets.closed_tickets, legal_hold=True)
            if when >= retain_until(t, policy)
        ]
        purged: list[int] = []
        for t in due:
            async with self._lock(t.id):
                if not await asyncio.to_thread(self.tickets.purge, t):
                    continue  # changed meanwhile (e.g. a legal hold): decided next time
            purged.append(t.id)
            self._locks.pop(t.id, None)
            await self._audit(
                "system",
                "ticket.purge",
                f"ticket:{t.id}",
                {
                    "removed": PURGED_RECORD_CLASS,
                    "retention_days": policy.days(t),
                    "retained_until": retain_until(t, policy).isoformat(),
                },
            )
        return PurgeReport(tuple(purged), tuple(held))

    # ------------------------------------------------------------------------- reads

    async def locate_on_segment(self, address: str, actor: str) -> SegmentDetail:
        """Where ``address`` sits on this host's segments now, for a person (audited); may
        probe, under the rules tickets follow. ``NotFound`` without a segment locator."""
        if self.segments is None:
            raise NotFound("on-segment locator", "")
        detail = await self.segments.lookup(address)
        await self._audit(
            actor,
            "takedown.segment-lookup",
            f"address:{detail.address}",
            {"on_segment": detail.on_segment, "probe": detail.probe},
        )
        return detail

    async def get(self, ticket_id: int) -> Ticket:
        return await asyncio.to_thread(self.tickets.get, ticket_id)

    async def count_due(self, before: datetime, limit: int) -> int:
        """See :meth:`TicketStore.count_due`."""
        return await asyncio.to_thread(self.tickets.count_due, before, limit)

    async def list_tickets(
        self,
        *,
        state: str | None = None,
        open_only: bool = False,
        due_before: datetime | None = None,
        assignee: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Ticket]:
        """See :meth:`TicketStore.list_tickets`."""
        return await asyncio.to_thread(
            partial(
                self.tickets.list_tickets,
                state=state,
                open_only=open_only,
                due_before=due_before,
                assignee=assignee,
                limit=limit,
                offset=offset,
            )
        )

    async def report(self, start: datetime, end: datetime) -> TakedownReport:
        """Time-to-takedown over tickets whose notice arrived in ``[start, end)``."""
        return await asyncio.to_thread(self.tickets.report, start, end)

    async def evidence(self, ticket_id: int, actor: str) -> dict[str, Any]:
        """The evidence bundle; the export itself is audited with the manifest hash."""
        t = await asyncio.to_thread(self.tickets.get, ticket_id)
        subject = f"ticket:{t.id}"
        records = await asyncio.to_thread(
            self.store.audit_since, t.opened_at - timedelta(seconds=1), 100_000
        )
        mine = [r for r in records if r.subject == subject]
        head = await asyncio.to_thread(self.store.audit_head)
        bundle = build_bundle(
            t,
            mine,
            audit_head=head,
            policy=self.policy.retention,
            exported_by=actor,
            now=self.clock(),
        )
        await self._audit(
            actor, "evidence.export", subject, {"manifest_sha256": bundle["manifest_sha256"]}
        )
        return bundle

    # ------------------------------------------------------------------- scheduling

    def due_jobs(self, now: datetime | None = None) -> list[Job]:
        """Jobs due at ``now`` for every open ticket (blocking read; cheap)."""
        return due_jobs(self.tickets.open_tickets(), self.policy, now or self.clock())

    async def run_job(self, job: Job) -> Ticket:
        """Run one job from :meth:`due_jobs`."""
        if job.kind == "recheck":
            async with self._lock(job.ticket_id):
                return await self._recheck(job.ticket_id, "system")
        if job.kind == "sla-breach":
            return await self._record_breach(job.ticket_id)
        kind = {"retry-notice": "notice"}.get(job.kind, job.kind)
        retry = job.kind == "retry-notice"
        t = await self._notify_locked(job.ticket_id, kind, recheck=True, retry=retry)
        if job.kind in ("reminder", "escalation"):
            async with self._lock(t.id):
                t = await asyncio.to_thread(self.tickets.get, t.id)
                if job.kind == "reminder":
                    t = replace(t, reminded=True)
                else:
                    t = replace(t, escalated=True)
                t = await asyncio.to_thread(self.tickets.update, t)
        return t

    async def run_due(self, now: datetime | None = None) -> list[Job]:
        """Run every due job (a failing job is logged and the others still run), then
        export the SLA figures."""
        jobs = await asyncio.to_thread(self.due_jobs, now)
        for job in jobs:
            try:
                await self.run_job(job)
            except Exception:
                log.exception("takedown job %s on ticket %d failed", job.kind, job.ticket_id)
        await self.export_metrics(now)
        return jobs

    async def record_breaches(self, now: datetime | None = None) -> list[Job]:
        """Record every SLA breach now due, and nothing else: the daemon runs this on its
        own schedule so that a breach is recorded at its deadline even while a pass of
        :meth:`run_due` waits on a slow notice."""
        at = now or self.clock()
        jobs = await asyncio.to_thread(lambda: due_breaches(self.tickets.open_tickets(), at))
        for job in jobs:
            try:
                await self._record_breach(job.ticket_id)
            except Exception:
                log.exception("recording the SLA breach of ticket %d failed", job.ticket_id)
        return jobs

    async def _record_breach(self, ticket_id: int) -> Ticket:
        """Mark the ticket's SLA breach (once), count it by source, audit it."""
        async with self._lock(ticket_id):
            t = await asyncio.to_thread(self.tickets.get, ticket_id)
            if t.breached:
                return t
            ev = TicketEvent(
                self.clock(), "system", "sla-breach", "deadline passed, content public"
            )
            t = await asyncio.to_thread(self.tickets.update, add_event(t, ev, breached=True))
        if self.metrics is not None:
            self.metrics.takedown_sla_breaches.labels(source=t.source).inc()
        await self._audit(
            "system", "ticket.sla-breach", f"ticket:{t.id}", {"deadline": t.deadline.isoformat()}
        )
        return t

    async def export_metrics(self, now: datetime | None = None) -> None:
        """Open and overdue tickets by notice source, from the ticket store, as gauges."""
        if self.metrics is None:
            return
        counts = await asyncio.to_thread(self.tickets.sla_counts, now or self.clock())
        for source in NoticeSource:
            open_count, overdue = counts.get(source.value, (0, 0))
            self.metrics.takedown_open.labels(source=source.value).set(open_count)
            self.metrics.takedown_overdue.labels(source=source.value).set(overdue)
        await self._export_pending()

    # -------------------------------------------------------------------- notifying

    def _lock(self, ticket_id: int) -> asyncio.Lock:
        return self._locks.setdefault(ticket_id, asyncio.Lock())

    async def send_first_notices(self) -> list[Ticket]:
        """Send the first notice of every open ticket that never had one: a leader that
        died between opening a ticket and notifying it left it so (a notice it had
        already claimed is not sent again: see :mod:`edgeagent.takedown.delivery`)."""
        waiting = await asyncio.to_thread(self.tickets.open_tickets)
        sent = []
        for t in waiting:
            if _never_notified(t):
                sent.append(await self._notify_locked(t.id, "notice", recheck=False, first=True))
        return sent

    async def _notify_locked(
        self, ticket_id: int, kind: str, *, recheck: bool, first: bool = False, retry: bool = False
    ) -> Ticket:
        """Notify under the ticket's lock; ``first``: only if it was never notified (two
        paths may reach a new ticket's first notice; one sends it)."""
        async with self._lock(ticket_id):
            t = await asyncio.to_thread(self.tickets.get, ticket_id)
            if first and not _never_notified(t):
                return t
            if recheck:
                t = await self._recheck(ticket_id, "system")
            return await self._notify(t, kind, retry=retry)

    async def send_owed(self) -> list[Ticket]:
        """Send every notice recorded as owed (see the module docstring); the leader's."""
        if not self.may_send():
            return []
        waiting = await asyncio.to_thread(self.tickets.open_tickets)
        sent = []
        for t in waiting:
            for kind in owed_notices(t):
                async with self._lock(t.id):
                    current = await asyncio.to_thread(self.tickets.get, t.id)
                    if kind in owed_notices(current):  # not sent by another path meanwhile
                        sent.append(await self._notify(current, kind))
        return sent

    async def _notify(self, t: Ticket, kind: str, *, retry: bool = False) -> Ticket:
        if not self.may_send():
            reason = "the leading agent sends it"
            ev = TicketEvent(self.clock(), "system", OWED, reason, detail=(("kind", kind),))
            return await asyncio.to_thread(self.tickets.update, add_event(t, ev))
        live = t.live_urls
        if not live:
            ev = TicketEvent(
                self.clock(),
                "system",
                "notify-skipped",
                "no URL still hosted here",
                detail=(("kind", kind),),
            )
            return await asyncio.to_thread(self.tickets.update, add_event(t, ev))
        if kind == "found-legal":
            instruction = FOUND_LEGAL_INSTRUCTION
        elif self._awaiting_authorisation(t):
            instruction = PRESERVE_INSTRUCTION
        else:
            instruction = INSTRUCTION
        on_call = self._on_call(t, kind)
        sent = await deliver(
            t,
            kind,
            self.notifiers,
            on_call=on_call,
            instruction=instruction,
            attempts=self.policy.notify_attempts,
            backoff_seconds=self.policy.retry_backoff_seconds,
            clock=self.clock,
            claim=self._claim,
            confirm=self._confirm,
            retry=retry,
        )
        t = sent.ticket
        if self.metrics is not None:
            for channel, failed in sent.failed_attempts:
                self.metrics.takedown_notify_failures.labels(channel=channel).inc(failed)
        for notifier, ok in sent.delivered:
            await self._audit(
                "system",
                "ticket.notify" if ok else "ticket.notify-failed",
                f"ticket:{t.id}",
                {
                    "channel": notifier.name,
                    "kind": kind,
                    "hold": t.hold,
                    "urls": [u.ref for u in live],
                },
            )
        changes: dict[str, Any] = {"notify_failures": t.notify_failures + 1 if sent.failures else 0}
        if sent.failures < len(self.notifiers) + len(on_call):
            changes["last_notified_at"] = self.clock()
        t = await asyncio.to_thread(self.tickets.update, replace(t, **changes))
        await self._export_pending()
        return t

    async def _export_pending(self) -> None:
        """How many open tickets wait for a notice to be retried, as a gauge."""
        if self.metrics is None:
            return
        waiting = await asyncio.to_thread(self.tickets.open_tickets)
        self.metrics.takedown_notices_pending.set(sum(1 for t in waiting if t.notify_failures))

    async def _claim(self, key: str) -> bool:
        return await asyncio.to_thread(self.claim_notice, key)

    async def _confirm(self, key: str) -> None:
        try:
            await asyncio.to_thread(self.confirm_notice, key)
        except EdgeAgentError as exc:
            # Sent all the same; a later leader may send it again under the same key.
            log.warning("a delivered notice was not confirmed: %s", type(exc).__name__)

    def _on_call(self, t: Ticket, kind: str) -> tuple[Notifier, ...]:
        """For an escalation out of business hours: the on-call notifiers of the ticket's
        notice source (besides the hosting team's); none otherwise."""
        hours = self.business_hours
        if kind != "escalation" or hours is None or hours.open_at(self.clock()):
            return ()
        return self.on_call.get(t.source, ())

    async def _recheck(self, ticket_id: int, actor: str) -> Ticket:
        """Re-resolve the ticket's live URLs; mark moved/gone ones; open tickets for
        URLs now at another own customer. Caller holds the ticket lock."""
        t = await asyncio.to_thread(self.tickets.get, ticket_id)
        now = self.clock()
        indicators = [u.indicator for u in t.live_urls]
        listed = _listed_names(u.indicator for u in t.urls)
        locations = await self.locator.locate(indicators, at=now, names=listed)
        by_url = {loc.indicator.value: loc for loc in locations}
        urls: list[TicketUrl] = []
        elsewhere: list[Indicator] = []
        changed: list[str] = []
        for u in t.urls:
            loc = by_url.get(u.url)
            if u.status != "live" or loc is None:
                urls.append(u)
                continue
            here = tuple(
                m.address
                for m in loc.matches
                if m.assignment is not None and m.assignment.customer_id == t.customer_id
            )
            if here:
                urls.append(replace(u, addresses=here, checked_at=now))
                continue
            status = "gone" if not loc.answers else "moved"
            urls.append(replace(u, checked_at=now, status=status))
            changed.append(u.ref)
            if any(m.assignment is not None for m in loc.matches):
                elsewhere.append(loc.indicator)
        ev = TicketEvent(
            now,
            actor,
            "recheck",
            f"{len(changed)} URL(s) no longer hosted here",
            detail=(("changed", ",".join(changed)),),
        )
        t = await asyncio.to_thread(
            self.tickets.update, replace(add_event(t, ev), urls=tuple(urls))
        )
        if changed:
            await self._audit(actor, "ticket.recheck", f"ticket:{t.id}", {"moved": changed})
        if elsewhere:
            # Content moved to another own customer: same case, new ticket there.
            await self.on_entries(
                elsewhere,
                t.notice_received_at,
                t.reference,
                t.source,
                jurisdiction=t.jurisdiction,
                hold=t.hold,
                actor=actor,
            )
        return t

    async def _audit(
        self, actor: str, action: str, subject: str, detail: Mapping[str, Any]
    ) -> None:
        await asyncio.to_thread(self.store.append_audit, actor, action, subject, dict(detail))


def _listed_names(indicators: Iterable[Indicator]) -> list[str]:
    """The host names a notice lists (its URLs' hosts and host entries): a domain entry
    is also looked for at those under it."""
    return [i.host for i in indicators if i.host and i.scope is not Scope.DOMAIN]
