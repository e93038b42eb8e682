"""Business hours: when the hosting team is at work, and when escalations go on call.

Pure: :meth:`BusinessHours.open_at` reads a time and the configured calendar (week days,
a daily window, holidays) in the NTD team's time zone. Outside those hours an
escalation also goes to the on-call contact of the ticket's notice source.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """``days`` (0 = Monday), the daily window ``[start, end)``, ``holidays`` (local
    dates), all in ``zone``. No days at all: every hour is out of hours."""

    days: frozenset[int]
    start: time
    end: time
    holidays: frozenset[date]
    zone: tzinfo

    def open_at(self, at: datetime) -> bool:
        local = at.astimezone(self.zone)
        if local.weekday() not in self.days or local.date() in self.holidays:
            return False
        return self.start <= local.time().replace(tzinfo=None) < self.end


def parse_window(text: str) -> tuple[time, time]:
    """``"08:00-18:00"`` -> ``(08:00, 18:00)``; ``ValueError`` naming the rule."""
    try:
        first, last = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        raise ValueError('not a time window: write "HH:MM-HH:MM", e.g. "08:00-18:00"') from None
    if not first < last:
        raise ValueError("the window must end after it starts (on the same day)")
    return first, last
