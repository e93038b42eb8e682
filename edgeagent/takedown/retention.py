"""How long a ticket's record is kept, and which records the purge may remove.

Pure: no I/O. The record of a ticket (notice, targets, assignment, where the addresses
sat, every action, the authorisation, referral and preservation details) is evidence:

* it is kept :meth:`RetentionPolicy.days` days, counted from the ticket's last event
  (for a closed ticket: its close). The days come from ``[takedown]``: the ticket's
  jurisdiction's figure if one is configured (the law of the place decides), else its
  notice source's, else ``retention_days``;
* :func:`may_delete` is true only for a closed ticket past that time and never while a
  legal hold is set; nothing is removed early, an open ticket never;
* the purge removes the whole record; what stays is its audit trail, which names
  records by id and entries by short hash only, never their content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from edgeagent.takedown.tickets import Ticket

# What the purge removes, as its audit rows name it (the class of record, not its content).
PURGED_RECORD_CLASS = "takedown ticket record (notice, targets, assignment, segments, actions)"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Retention days by jurisdiction, then by notice source; ``default_days`` else."""

    default_days: int = 365
    by_jurisdiction: Mapping[str, int] = field(default_factory=dict)
    by_source: Mapping[str, int] = field(default_factory=dict)

    def days(self, ticket: Ticket) -> int:
        if ticket.jurisdiction in self.by_jurisdiction:
            return int(self.by_jurisdiction[ticket.jurisdiction])
        return int(self.by_source.get(ticket.source, self.default_days))


def retain_until(ticket: Ticket, policy: RetentionPolicy) -> datetime:
    """The earliest time the record may be deleted (ignoring a legal hold)."""
    base = ticket.events[-1].at if ticket.events else ticket.opened_at
    return base + timedelta(days=policy.days(ticket))


def may_delete(ticket: Ticket, policy: RetentionPolicy, now: datetime) -> bool:
    """True only for closed tickets without legal hold past their retention period."""
    return ticket.closed and not ticket.legal_hold and now >= retain_until(ticket, policy)
