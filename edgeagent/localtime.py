"""Dates and times as people type them: with or without a time zone.

The NTD team writes "2026-03-02", "2026-03-02T14:30" or "2026-03-02T14:30+01:00"; the
first two mean that wall-clock time in the deployment's time zone (``[agent]
time_zone``). :func:`parse_when` turns any of them into an aware ``datetime``; its
``ValueError`` reasons never echo the input.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
WHEN_FORMATS = "YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] or either with a zone (Z, +01:00)"


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (e.g. ``Europe/Amsterdam``); ``ValueError`` if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not a known IANA time zone (e.g. UTC, Europe/Amsterdam)") from None


def parse_when(text: str, local: tzinfo) -> datetime:
    """An aware ``datetime`` from ``text``: a date (its midnight), or a date and time,
    each with or without a zone; without one, the wall-clock time is in ``local``."""
    raw = text.strip()
    try:
        if _DATE_ONLY.match(raw):
            return datetime.combine(date.fromisoformat(raw), time(), tzinfo=local)
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"not a date or date-time ({WHEN_FORMATS})") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=local)
