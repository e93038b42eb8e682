"""Time-to-takedown report: how fast listed pages left public access, overall and by source.

Figures per group (all tickets, then each notice source): tickets received in the window,
how many were removed, median and 90th percentile of minutes from ``notice_received_at``
to removal (removed tickets only), and the share of *all* tickets in the group removed
within 60 and 120 minutes (hotlines count pages gone within those marks, so tickets still
live count against the share). The distribution counts removed tickets per bucket of
:data:`DISTRIBUTION_MINUTES`.

The ticket store aggregates (counts and bucket counts by SQL ``GROUP BY``) and sorts the
removal minutes (:mod:`edgeagent.takedown.reportquery`); :func:`assemble_report` turns
its rows into the report, so no ticket is read whole for it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PERCENTILES = (50, 90)
"""The percentiles the report shows (median, 90th)."""

DISTRIBUTION_MINUTES = (30, 60, 120, 240, 480, 1440)
"""Upper bounds (inclusive, minutes) of the distribution's buckets; one more bucket holds
the removals slower than the last bound."""


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
    # Removed tickets per bucket of DISTRIBUTION_MINUTES (the last: slower than all).
    distribution: tuple[int, ...] = (0,) * (len(DISTRIBUTION_MINUTES) + 1)

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


def percentile_ranks(n: int, q: int) -> tuple[int, int]:
    """The 0-based ranks (in ascending order of ``n`` values) between which the ``q``-th
    percentile (0..100) interpolates: floor and ceiling of ``(n - 1) * q / 100``."""
    scaled = (n - 1) * q
    return scaled // 100, (scaled + 99) // 100


def interpolate(n: int, q: int, at_rank: Mapping[int, float]) -> float | None:
    """The linear-interpolated ``q``-th percentile of ``n`` values, given the values at
    :func:`percentile_ranks`; None if there are none."""
    if n == 0:
        return None
    lo, hi = percentile_ranks(n, q)
    return at_rank[lo] + (at_rank[hi] - at_rank[lo]) * ((n - 1) * q / 100.0 - lo)


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """One source's counts as the store aggregates them."""

    source: str
    count: int
    removed: int
    within_60: int
    within_120: int


def assemble_report(
    start: datetime,
    end: datetime,
    groups: Iterable[GroupCounts],
    ascending: Iterable[tuple[str, float]],
    buckets: Iterable[tuple[int, int]],
) -> TakedownReport:
    """The report from the store's rows: ``groups``, one per source; ``ascending``,
    ``(source, minutes)`` of every removed ticket in ascending order of minutes (only the
    values at the ranks :func:`percentile_ranks` names are kept as they go by: no list
    of them is built); ``buckets``, ``(bucket index, removed tickets)``."""
    by_source = sorted(groups, key=lambda g: g.source)
    total = GroupCounts(
        "all",
        sum(g.count for g in by_source),
        sum(g.removed for g in by_source),
        sum(g.within_60 for g in by_source),
        sum(g.within_120 for g in by_source),
    )
    wanted = {g.source: _wanted(g.removed) for g in by_source}
    wanted_all = _wanted(total.removed)
    at_rank: dict[str, dict[int, float]] = {g.source: {} for g in by_source}
    at_rank_all: dict[int, float] = {}
    seen = dict.fromkeys(wanted, 0)
    for i, (source, minutes) in enumerate(ascending):
        if i in wanted_all:
            at_rank_all[i] = minutes
        k = seen.get(source, 0)
        seen[source] = k + 1
        if k in wanted.get(source, ()):
            at_rank[source][k] = minutes
    rows = [_row(total, at_rank_all)]
    rows += [_row(g, at_rank[g.source]) for g in by_source]
    distribution = [0] * (len(DISTRIBUTION_MINUTES) + 1)
    for index, n in buckets:
        distribution[index] = n
    return TakedownReport(start, end, tuple(rows), tuple(distribution))


def _wanted(n: int) -> frozenset[int]:
    return frozenset(rank for q in PERCENTILES for rank in percentile_ranks(n, q))


def _row(g: GroupCounts, at_rank: Mapping[int, float]) -> ReportRow:
    median, p90 = (interpolate(g.removed, q, at_rank) for q in PERCENTILES)
    return ReportRow(
        group=g.source,
        count=g.count,
        removed=g.removed,
        median_minutes=median,
        p90_minutes=p90,
        within_60=g.within_60 / g.count if g.count else None,
        within_120=g.within_120 / g.count if g.count else None,
    )


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
