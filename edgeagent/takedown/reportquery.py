"""The time-to-takedown report's SQL, the same for both ticket stores (only the
placeholder differs: ``?`` for SQLite, ``%s`` for PostgreSQL).

Every query takes two parameters, the window's start and end (notice received in
``[start, end)``), and reads only the columns of the ``tickets_report`` index
(``notice_received_at, source, removal_minutes``), never a ticket's body: the report of
a month of 10,000 tickets is three index range scans (counts and buckets grouped in SQL,
the removal minutes sorted), not 10,000 JSON documents.
:func:`edgeagent.takedown.report.assemble_report` turns the rows into the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from edgeagent.takedown.report import (
    DISTRIBUTION_MINUTES,
    GroupCounts,
    TakedownReport,
    assemble_report,
)

Rows = Sequence[Sequence[Any]]


class ReportQueries(NamedTuple):
    """Run in this order, in one snapshot; their rows go to :func:`report_from_rows`."""

    groups: str  # per source: source, tickets, removed, removed within 60, within 120 min
    ascending: str  # source, minutes of every removed ticket, in ascending order
    buckets: str  # bucket index (of DISTRIBUTION_MINUTES), removed tickets


def report_queries(mark: str) -> ReportQueries:
    """The report's queries with ``mark`` as the placeholder."""
    window = f"notice_received_at >= {mark} AND notice_received_at < {mark}"
    groups = (
        "SELECT source, COUNT(*), COUNT(removal_minutes), "
        "SUM(CASE WHEN removal_minutes <= 60 THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN removal_minutes <= 120 THEN 1 ELSE 0 END) "
        f"FROM tickets WHERE {window} GROUP BY source"
    )
    # The percentiles are picked from these as they stream by (a window function would
    # sort the same rows again for each group: several times the cost in SQLite).
    ascending = (
        f"SELECT source, removal_minutes FROM tickets WHERE {window} "
        "AND removal_minutes IS NOT NULL ORDER BY removal_minutes"
    )
    cases = " ".join(
        f"WHEN removal_minutes <= {bound} THEN {i}" for i, bound in enumerate(DISTRIBUTION_MINUTES)
    )
    buckets = (
        f"SELECT CASE {cases} ELSE {len(DISTRIBUTION_MINUTES)} END AS bucket, COUNT(*) "
        f"FROM tickets WHERE {window} AND removal_minutes IS NOT NULL GROUP BY bucket"
    )
    return ReportQueries(groups, ascending, buckets)


def report_from_rows(
    start: datetime, end: datetime, groups: Rows, ascending: Iterable[Sequence[Any]], buckets: Rows
) -> TakedownReport:
    """The report from the rows of the :class:`ReportQueries`, in their order."""
    return assemble_report(
        start,
        end,
        (
            GroupCounts(str(g[0]), int(g[1]), int(g[2]), int(g[3] or 0), int(g[4] or 0))
            for g in groups
        ),
        ((str(r[0]), float(r[1])) for r in ascending),
        ((int(b[0]), int(b[1])) for b in buckets),
    )
