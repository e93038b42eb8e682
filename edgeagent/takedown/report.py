"""Time-to-takedown report: how fast listed pages left public access, overall and by source.

Figures per group (all tickets, then each notice source): tickets received in the window,
how many were removed, median and 90th percentile of minutes from ``notice_received_at``
to removal (removed tickets only), and the share of *all* tickets in the group removed
within 60 and 120 minutes (hotlines count pages gone within those marks, so tickets still
live count against the share).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edgeagent.takedown.tickets import Ticket


@dataclass(frozen=True, slots=True)
class ReportRow:
    group: str  # "all" or a source
    count: int
    removed: int
    median_minutes: float | None
    p90_minutes: float | None
    within_60: float | None  # share 0..1 of count; None when count is 0
    within_120: float | None


@dataclass(frozen=True, slots=True)
class TakedownReport:
    start: datetime
    end: datetime
    rows: tuple[ReportRow, ...]
    # Minutes from notice to removal of each removed ticket (the distribution's data).
    minutes: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "total": _row_json(self.rows[0]),
            "by_source": {r.group: _row_json(r) for r in self.rows[1:]},
        }


def _row_json(r: ReportRow) -> dict[str, Any]:
    return {
        "count": r.count,
        "removed": r.removed,
        "median_minutes": r.median_minutes,
        "p90_minutes": r.p90_minutes,
        "within_60_share": r.within_60,
        "within_120_share": r.within_120,
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100) of ``values``; None if empty."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def _row(group: str, tickets: Sequence[Ticket]) -> ReportRow:
    minutes = [m for t in tickets if (m := t.minutes_to_removal) is not None]
    n = len(tickets)
    return ReportRow(
        group=group,
        count=n,
        removed=len(minutes),
        median_minutes=percentile(minutes, 50),
        p90_minutes=percentile(minutes, 90),
        within_60=sum(1 for m in minutes if m <= 60) / n if n else None,
        within_120=sum(1 for m in minutes if m <= 120) / n if n else None,
    )


def build_report(tickets: Iterable[Ticket], start: datetime, end: datetime) -> TakedownReport:
    """The report over ``tickets`` (already chosen by notice time in ``[start, end)``)."""
    items = list(tickets)
    by_source: dict[str, list[Ticket]] = {}
    for t in items:
        by_source.setdefault(t.source, []).append(t)
    rows = [_row("all", items)] + [_row(s, by_source[s]) for s in sorted(by_source)]
    minutes = tuple(m for t in items if (m := t.minutes_to_removal) is not None)
    return TakedownReport(start, end, tuple(rows), minutes)


CSV_COLUMNS = (
    "group",
    "count",
    "removed",
    "median_minutes",
    "p90_minutes",
    "within_60_share",
    "within_120_share",
)


def report_csv(report: TakedownReport) -> str:
    """The report as CSV text (one row per group, ``all`` first)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)

    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.3f}"

    for r in report.rows:
        w.writerow(
            [
                r.group,
                r.count,
                r.removed,
                fmt(r.median_minutes),
                fmt(r.p90_minutes),
                fmt(r.within_60),
                fmt(r.within_120),
            ]
        )
    return out.getvalue()
