"""Benchmark harness: ``python -m bench [--quick] [NAME ...]`` (or ``./dev bench``).

Contract for a benchmark module ``bench/<name>.py``: a function that runs the measurement
and returns a list of result rows, either :class:`Row` values or mappings with the same
keys (``figure``, ``value``, ``unit``, ``goal``, ``anchor``; ``command`` optional). It may
take a size argument; register it in :data:`REGISTRY` with a small wrapper that imports the
module lazily (so one missing or broken module never stops the others) and picks the size
for a quick or a full run.

Each benchmark runs in its own subprocess, so imports, caches and peak RSS of one do not
contaminate another's figures; the harness adds that process's peak RSS as a row. Results
accumulate in ``bench/results.json`` (benchmarks not run this time keep their last rows)
and ``BENCHMARKS.md`` is rendered from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Row:
    """One measured figure, shown as one line of a BENCHMARKS.md table.

    ``goal`` is the target as text (e.g. ``">= 100,000/s"``, ``"<= 10 s"``) or ``""``;
    ``anchor`` says where the goal or a comparison figure comes from (our goal, another product);
    ``command`` reproduces the figure (the harness fills it in when empty).
    """

    figure: str
    value: float
    unit: str
    goal: str = ""
    anchor: str = ""
    command: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "value": self.value,
            "unit": self.unit,
            "goal": self.goal,
            "anchor": self.anchor,
            "command": self.command,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Row:
        return cls(
            figure=str(data["figure"]),
            value=float(data["value"]),
            unit=str(data.get("unit", "")),
            goal=str(data.get("goal", "")),
            anchor=str(data.get("anchor", "")),
            command=str(data.get("command", "")),
        )


def as_rows(result: object) -> list[Row]:
    """Normalise what a benchmark module returned into rows; reject anything else."""
    if not isinstance(result, list | tuple):
        raise TypeError(f"a benchmark must return a list of rows, not {type(result).__name__}")
    rows: list[Row] = []
    for item in result:
        if isinstance(item, Row):
            rows.append(item)
        elif isinstance(item, Mapping):
            rows.append(Row.from_json(item))
        else:
            raise TypeError(f"a result row must be a Row or a mapping, not {type(item).__name__}")
    return rows


Benchmark = Callable[[bool], list[Row]]
"""A registered benchmark: called with ``quick``; returns its rows."""


def _store_ingest(quick: bool) -> list[Row]:
    """Store a 1,000,000-entry feed generation in SQLite and stream it back."""
    from bench import store_ingest

    n = 100_000 if quick else 1_000_000
    result = store_ingest.run(n)
    # store_ingest.run returns named figures (a mapping), not rows. The goals are those of
    # a whole 1M-line sync (parse, validate and store in <= 10 s, <= 500 MB); storing is
    # only part of that.
    anchor = "goal: 1M domains parsed, validated and stored in <= 10 s, <= 500 MB"
    return [
        Row(f"store {n:,} entries (one generation)", result["seconds"], "s", "<= 10 s", anchor),
        Row("store rate", result["entries_per_second"], "entries/s", ">= 100,000/s", anchor),
        Row(f"stream {n:,} entries back", result["stream_seconds"], "s", "", ""),
        Row("peak RSS during ingest", result["peak_rss_mib"], "MiB", "<= 477 MiB (500 MB)", anchor),
    ]


def _store_ingest_postgresql(quick: bool) -> list[Row]:
    """Store a 1,000,000-entry feed generation in PostgreSQL (COPY) beside SQLite, one run."""
    from bench import store_ingest_postgresql

    n = 20_000 if quick else 1_000_000
    result = store_ingest_postgresql.run(n)
    pg, lite = result["postgresql"], result["sqlite"]
    stored = f"SQLite, same run: {lite['seconds']:.2f} s"
    streamed = f"SQLite, same run: {lite['stream_seconds']:.2f} s"
    return [
        Row(f"store {n:,} entries in PostgreSQL (COPY)", pg["seconds"], "s", "<= 10 s", stored),
        Row("PostgreSQL store rate", pg["entries_per_second"], "entries/s", "", stored),
        Row(f"stream {n:,} entries back from PostgreSQL", pg["stream_seconds"], "s", "", streamed),
        Row(f"store {n:,} entries in SQLite (anchor)", lite["seconds"], "s", "<= 10 s", ""),
        Row(f"stream {n:,} entries back from SQLite", lite["stream_seconds"], "s", "", ""),
        Row("1-minute load average before the run", result["machine"]["load_average"], "", ""),
    ]


def _canon(quick: bool) -> list[Row]:
    """canonical_name throughput on synthetic host names (hNNNNNN.example)."""
    from bench import canon_bench

    return canon_bench.run(100_000 if quick else 1_000_000)


def _feed_ingest(quick: bool) -> list[Row]:
    """Parse, validate and store a domain list and a URL list (full local sync)."""
    from bench import feed_ingest

    rows: list[Row] = []
    anchor = "goal: a 1M-line domain list synced in <= 10 s, <= 500 MB"
    sizes = (
        (("domain", 20_000), ("url", 20_000))
        if quick
        else (("domain", 1_000_000), ("url", 100_000))
    )
    for kind, n in sizes:
        r = feed_ingest.run(kind, n)
        goal = "<= 10 s" if kind == "domain" and n == 1_000_000 else ""
        rows.append(Row(f"sync {n:,}-line {kind} list", r["sync_total_s"], "s", goal, anchor))
        rows.append(
            Row(f"  of which parse + validate ({kind})", r["parse_validate_s"], "s", "", "")
        )
        mem_goal = "<= 500 MB" if kind == "domain" and n == 1_000_000 else ""
        rows.append(Row(f"peak RSS ({kind} list)", r["peak_rss_mb"], "MB", mem_goal, anchor))
    return rows


def _takedown_locate(quick: bool) -> list[Row]:
    """Locate URL entries against customer prefixes through a local Unbound."""
    from bench import takedown_locate

    if quick:
        return takedown_locate.rows(2_000, 10_000)
    return takedown_locate.rows()


def _rpz(quick: bool) -> list[Row]:
    """RPZ compile, resolver load anchors, decision -> blocked, one-change push."""
    from bench import rpz_bench

    if quick:
        return rpz_bench.run(n_full=20_000, n_policy=5_000, decisions=5)
    return rpz_bench.run()


def _intake_pages(quick: bool) -> list[Row]:
    """The public report page: submissions/s and p99 at 200/s."""
    from bench import intake_pages

    return as_rows(intake_pages.rows(quick))


def _api_throughput(quick: bool) -> list[Row]:
    """POST /v1/decisions throughput and p99 with a 100,000-entry policy."""
    from bench import api_throughput

    return as_rows(api_throughput.rows(quick))


def _proxy_helper(quick: bool) -> list[Row]:
    """Squid helper canonicalise + look up, one core, 1,000,000-entry index."""
    from bench import proxy_helper

    return proxy_helper.run(100_000 if quick else 1_000_000)


def _squid_e2e(quick: bool) -> list[Row]:
    """Squid with the helper vs. a url_regex ACL vs. no filtering (wrk)."""
    from bench import squid_e2e

    return squid_e2e.rows(quick)


def _fleet_verify(quick: bool) -> list[Row]:
    """One verification pass over 100 real resolvers (90 BIND secondaries, 10 dead)."""
    from bench import fleet_verify

    return fleet_verify.run(live=30, dead=5) if quick else fleet_verify.run()


def _bulk_notice(quick: bool) -> list[Row]:
    """A 10,000-URL police notice through the daemon: stored, enforced, tickets opened."""
    from bench import bulk_notice

    return bulk_notice.rows(quick)


def _mail_notices(quick: bool) -> list[Row]:
    """1,000 DKIM-signed e-mailed notices of 10 URLs from a real mailbox (Dovecot)."""
    from bench import mail_notices

    return mail_notices.rows(quick)


REGISTRY: dict[str, Benchmark] = {
    "store_ingest": _store_ingest,
    "store_ingest_postgresql": _store_ingest_postgresql,
    "canon": _canon,
    "feed_ingest": _feed_ingest,
    "takedown_locate": _takedown_locate,
    "api_throughput": _api_throughput,
    "intake_pages": _intake_pages,
    "rpz": _rpz,
    "proxy_helper": _proxy_helper,
    "squid_e2e": _squid_e2e,
    "fleet_verify": _fleet_verify,
    "bulk_notice": _bulk_notice,
    "mail_notices": _mail_notices,
}
"""Benchmark name -> runner, in the order BENCHMARKS.md lists them."""
