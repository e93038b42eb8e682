"""Dates and times with or without a zone; the configured zone fills in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from edgeagent.config import ConfigError, load_config
from edgeagent.localtime import parse_when, zone

BERLIN = zone("Europe/Berlin")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02", datetime(2026, 3, 2, tzinfo=BERLIN)),
        ("2026-03-02T14:30", datetime(2026, 3, 2, 14, 30, tzinfo=BERLIN)),
        ("2026-07-02 14:30:05", datetime(2026, 7, 2, 14, 30, 5, tzinfo=BERLIN)),
        ("2026-03-02T14:30Z", datetime(2026, 3, 2, 14, 30, tzinfo=UTC)),
        (
            " 2026-03-02T14:30+05:00 ",
            datetime(2026, 3, 2, 14, 30, tzinfo=timezone(timedelta(hours=5))),
        ),
    ],
)
def test_with_or_without_a_zone(text: str, expected: datetime) -> None:
    value = parse_when(text, BERLIN)
    assert value == expected
    assert value.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "02.03.2026", ""])
def test_nonsense_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(ValueError, match="not a date or date-time") as err:
        parse_when(text, BERLIN)
    assert text.strip() == "" or text not in str(err.value)


def test_time_zone_setting(tmp_path: Path) -> None:
    path = tmp_path / "edgeagent.toml"
    path.write_text('[agent]\ntime_zone = "Europe/Amsterdam"\n', encoding="utf-8")
    assert load_config(path).agent.time_zone == "Europe/Amsterdam"
    path.write_text('[agent]\ntime_zone = "Mars/Olympus"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert [p.path for p in err.value.problems] == ["agent.time_zone"]
