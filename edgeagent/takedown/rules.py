"""The rules the takedown service applies, and which scheduled jobs are due when.

Pure: :func:`due_jobs` reads tickets and a clock value, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from edgeagent.takedown.retention import RetentionPolicy
from edgeagent.takedown.settings import TakedownSettings
from edgeagent.takedown.tickets import LIVE_STATES, Ticket, sla_breached


@dataclass(frozen=True, slots=True)
class TakedownPolicy:
    """The rules the service applies (from ``[takedown]``; see :meth:`from_settings`).

    ``require_authorisation_for`` holds notice sources and/or jurisdictions (ISO 3166
    codes) for which a law-enforcement authorisation must be recorded before
    ``temporarily-removed``.
    """

    sla_minutes: int = 60
    sla_minutes_by_source: Mapping[str, int] = field(default_factory=dict)
    renotify_minutes: int = 240
    reminder_fraction: float = 0.5
    recheck_minutes: int = 30
    retry_seconds: float = 300.0
    notify_attempts: int = 3
    retry_backoff_seconds: float = 1.0
    require_authorisation_for: frozenset[str] = frozenset()
    referral_recipients: Mapping[str, str] = field(default_factory=dict)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)

    def sla(self, source: str) -> timedelta:
        return timedelta(minutes=self.sla_minutes_by_source.get(source, self.sla_minutes))

    def needs_authorisation(self, ticket: Ticket) -> bool:
        wanted = self.require_authorisation_for
        return ticket.source in wanted or (
            bool(ticket.jurisdiction) and ticket.jurisdiction in wanted
        )

    @classmethod
    def from_settings(cls, s: TakedownSettings) -> TakedownPolicy:
        return cls(
            sla_minutes=s.sla_minutes,
            sla_minutes_by_source={str(k.value): v for k, v in s.sla_minutes_by_source.items()},
            renotify_minutes=s.renotify_minutes,
            retry_seconds=s.notify_retry_seconds,
            notify_attempts=s.notify_attempts,
            retry_backoff_seconds=s.notify_backoff_seconds,
            require_authorisation_for=frozenset(s.require_authorisation_for),
            referral_recipients=dict(s.referral_recipients),
            retention=RetentionPolicy(
                default_days=s.retention_days,
                by_jurisdiction=dict(s.retention_days_by_jurisdiction),
                by_source={str(k.value): v for k, v in s.retention_days_by_source.items()},
            ),
        )


@dataclass(frozen=True, slots=True)
class Job:
    """A scheduled action on a ticket: ``reminder``, ``escalation``, ``renotify``,
    ``retry-notice``, ``recheck`` or ``sla-breach`` (record and count the breach once),
    due at ``due_at``."""

    kind: str
    ticket_id: int
    due_at: datetime


OWED = "notify-owed"
"""The ticket event an agent that may not send records instead of a notice (the leader's
scheduler sends it: :func:`owed_notices`)."""


def owed_notices(t: Ticket) -> tuple[str, ...]:
    """The notice kinds recorded as owed on ``t`` and not tried since (a ``notify`` or
    ``notify-skipped`` event of that kind settles one)."""
    owed: list[str] = []
    for ev in t.events:
        kind = dict(ev.detail).get("kind", "")
        if ev.action == OWED and kind not in owed:
            owed.append(kind)
        elif ev.action in ("notify", "notify-skipped") and kind in owed:
            owed.remove(kind)
    return tuple(owed)


def due_breaches(tickets: Iterable[Ticket], at: datetime) -> list[Job]:
    """The ``sla-breach`` jobs due at ``at``: open tickets past their deadline whose
    breach is not yet recorded."""
    return [
        Job("sla-breach", t.id, t.deadline)
        for t in tickets
        if not t.breached and sla_breached(t, at)
    ]


def due_jobs(tickets: Iterable[Ticket], policy: TakedownPolicy, at: datetime) -> list[Job]:
    """The jobs due at ``at`` for ``tickets`` (the open ones): every SLA breach first
    (a store write, recorded at its deadline), then the notices and re-checks, any of
    which may wait on a slow mail server or name lookup."""
    tickets = list(tickets)
    jobs = due_breaches(tickets, at)
    p = policy
    for t in tickets:
        live = t.state in LIVE_STATES and t.removed_at is None and bool(t.live_urls)
        if t.notify_failures > 0:
            last = t.events[-1].at
            due = last + timedelta(seconds=p.retry_seconds)
            if at >= due:
                jobs.append(Job("retry-notice", t.id, due))
        if not live:
            continue
        sla = t.deadline - t.notice_received_at
        remind_at = t.notice_received_at + sla * p.reminder_fraction
        if not t.reminded and at >= remind_at and at < t.deadline:
            jobs.append(Job("reminder", t.id, remind_at))
        if not t.escalated and at >= t.deadline:
            jobs.append(Job("escalation", t.id, t.deadline))
        if t.last_notified_at is not None:
            due = t.last_notified_at + timedelta(minutes=p.renotify_minutes)
            if at >= due:
                jobs.append(Job("renotify", t.id, due))
        checked = max(u.checked_at for u in t.urls)
        due = checked + timedelta(minutes=p.recheck_minutes)
        if at >= due:
            jobs.append(Job("recheck", t.id, due))
    return jobs
