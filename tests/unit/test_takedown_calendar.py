"""Business hours in the NTD team's zone: week days, a daily window, holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from edgeagent.dates import time_zone
from edgeagent.takedown.calendar import BusinessHours, parse_window

BERLIN = time_zone("Europe/Berlin")
HOURS = BusinessHours(
    frozenset(range(5)), time(8), time(18), frozenset({date(2026, 12, 25)}), BERLIN
)


@pytest.mark.parametrize(
    ("at", "open_"),
    [
        (datetime(2026, 3, 2, 7, 0, tzinfo=UTC), True),  # Monday 08:00 in Berlin (+01:00)
        (datetime(2026, 3, 2, 6, 59, tzinfo=UTC), False),  # 07:59 there
        (datetime(2026, 3, 2, 16, 59, tzinfo=UTC), True),  # 17:59
        (datetime(2026, 3, 2, 17, 0, tzinfo=UTC), False),  # 18:00: the window has ended
        (datetime(2026, 7, 6, 6, 0, tzinfo=UTC), True),  # summer time: 08:00 (+02:00)
        (datetime(2026, 3, 7, 10, 0, tzinfo=UTC), False),  # Saturday
        (datetime(2026, 12, 25, 10, 0, tzinfo=UTC), False),  # a holiday, a Friday
    ],
)
def test_open_at(at: datetime, open_: bool) -> None:
    assert HOURS.open_at(at) is open_


def test_no_business_days_means_always_out_of_hours() -> None:
    never = BusinessHours(frozenset(), time(0), time(23, 59), frozenset(), UTC)
    assert not never.open_at(datetime(2026, 3, 2, 12, tzinfo=UTC))


def test_window_text() -> None:
    assert parse_window("08:00-18:30") == (time(8), time(18, 30))
    for bad in ("8-18", "18:00-08:00", "08:00"):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad)
