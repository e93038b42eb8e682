"""Dates and times as people type them: ISO 8601, with or without a zone, or a plain date.

A value without a zone is read in the agent's configured time zone (``[agent]
time_zone``), not in UTC and not in the zone of whoever runs the command: a notice
received "2026-01-01 09:30" at the NTD desk means 09:30 there. A plain date means its
midnight in that zone.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def parse_when(text: str, zone: tzinfo) -> datetime:
    """``text`` as a timezone-aware datetime; ``ValueError`` if it is not ISO 8601."""
    value = datetime.fromisoformat(text.strip())
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (``Europe/Berlin``, ``UTC``); ``ValueError`` if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not a known IANA time zone (e.g. UTC, Europe/Berlin)") from None
