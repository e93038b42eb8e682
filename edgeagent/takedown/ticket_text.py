"""Tickets as the NTD team reads them in a terminal: one line each, or the whole case.

Pure: returns lines for :mod:`edgeagent.cli` to print. Times are shown in the team's time
zone (``[agent] time_zone``). These views are for the NTD team (analyst and above): they
show targets, case references and contacts, as the API does.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from edgeagent.takedown.tickets import Ticket, allowed_next


def _when(value: datetime | None, zone: tzinfo) -> str:
    return "-" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _due(t: Ticket, now: datetime) -> str:
    if t.removed_at is not None:
        return f"removed after {t.minutes_to_removal or 0:.0f} min"
    minutes = (t.deadline - now).total_seconds() / 60
    return f"due in {minutes:.0f} min" if minutes >= 0 else f"OVERDUE {-minutes:.0f} min"


def _flags(t: Ticket) -> str:
    flags = [
        name
        for name, on in (
            ("HOLD", t.hold),
            ("LEGAL-HOLD", t.legal_hold),
            ("BREACHED", t.breached),
            (f"found-legal proposed by {t.found_legal_proposed_by}", t.found_legal_proposed_by),
        )
        if on
    ]
    return f"  [{', '.join(flags)}]" if flags else ""


def ticket_line(t: Ticket, now: datetime) -> str:
    """One line: id, state, source, customer, reference, assignee, due, flags."""
    who = t.assignee or "unassigned"
    return (
        f"{t.id:>6}  {t.state.value:<21} {t.source:<15} {t.customer_id:<14} {t.reference:<16} "
        f"{who:<12} {_due(t, now)}{_flags(t)}"
    )


def ticket_lines(t: Ticket, now: datetime, zone: tzinfo) -> list[str]:
    """The whole case: notice, customer, targets, records, and every action."""
    lines = [
        f"ticket {t.id}: {t.state.value}{_flags(t)}",
        f"  case            {t.reference} ({t.source}"
        + (f", {t.jurisdiction})" if t.jurisdiction else ")"),
        f"  customer        {t.customer_id} / {t.service_id}  contact {t.contact or '-'}",
        f"  notice          {_when(t.notice_received_at, zone)}  deadline "
        f"{_when(t.deadline, zone)}  ({_due(t, now)})",
        f"  assignee        {t.assignee or 'unassigned'}",
        f"  allowed next    {', '.join(s.value for s in allowed_next(t.state)) or 'none'}",
        "  targets:",
    ]
    lines += [
        f"    {u.scope.value:<10} {u.url}  ->  {', '.join(u.addresses)}  ({u.status})"
        for u in t.urls
    ]
    if t.authorisation is not None:
        a = t.authorisation
        lines.append(f"  authorisation   {a.by}, ref {a.reference}, {_when(a.at, zone)}")
    if t.referral is not None:
        r = t.referral
        lines.append(f"  referred to     {r.recipient}, ref {r.reference}, {_when(r.at, zone)}")
    if t.preservation is not None:
        p = t.preservation
        lines.append(
            f"  preserved       at {p.location} by {p.preserved_by}, {_when(p.at, zone)}; "
            f"sha256 {', '.join(p.content_sha256)}"
        )
    lines += [f"  outcome         {o.kind.value}: {o.reason}" for o in t.outcomes]
    lines.append("  actions:")
    lines += [
        f"    {_when(e.at, zone)}  {e.actor:<12} {e.action:<20} "
        + (f"{e.from_state} -> {e.to_state}  " if e.to_state else "")
        + e.reason
        for e in t.events
    ]
    return lines
