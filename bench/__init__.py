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

import os
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


def _api_throughput_postgresql(quick: bool) -> list[Row]:
    """POST /v1/decisions with the store in PostgreSQL beside SQLite, one run."""
    from bench import api_throughput_postgresql

    n_policy, n_posts = (20_000, 100) if quick else (100_000, 2_000)
    result = api_throughput_postgresql.run(n_policy, n_posts)
    pg, lite = result["postgresql"], result["sqlite"]
    for backend in (pg, lite):
        if backend["statuses"] != {201: 2 * n_posts}:
            raise RuntimeError(f"unexpected statuses {backend['statuses']}")
    rate = f"SQLite, same run: {lite['decisions_per_second']:.0f}/s"
    p99 = f"SQLite, same run: {lite['at_rate_p99_ms']:.1f} ms"
    return [
        Row(
            f"POST /v1/decisions on PostgreSQL, {n_policy:,}-entry policy, 50 clients",
            pg["decisions_per_second"],
            "decisions/s",
            ">= 500/s",
            rate,
        ),
        Row(
            "  p99 latency at 500/s offered (PostgreSQL)",
            pg["at_rate_p99_ms"],
            "ms",
            "<= 50 ms",
            p99,
        ),
        Row(
            "  server CPU per decision (PostgreSQL)", pg["server_cpu_ms_per_decision"], "ms", "", ""
        ),
        Row(
            "POST /v1/decisions on SQLite (anchor)",
            lite["decisions_per_second"],
            "decisions/s",
            ">= 500/s",
            "",
        ),
        Row(
            "  p99 latency at 500/s offered (SQLite)", lite["at_rate_p99_ms"], "ms", "<= 50 ms", ""
        ),
        Row("  server CPU per decision (SQLite)", lite["server_cpu_ms_per_decision"], "ms", "", ""),
        Row("1-minute load average before the run", result["machine"]["load_average"], "", ""),
    ]


def _pg_failover(quick: bool) -> list[Row]:
    """kill -9 of the database primary -> writes accepted again (pg_auto_failover, Patroni)."""
    from bench import pg_failover

    rows: list[Row] = []
    # The quick form fails over with Patroni only: a run costs a minute of the test suite.
    # Patroni's defaults twice: the kill where it falls, and right after the primary
    # renewed its leader key (the slowest case: the key lives a whole ttl).
    runs = (
        [("patroni", True, False)]
        if quick
        else [
            ("pg_auto_failover", False, False),
            ("pg_auto_failover", True, False),
            ("patroni", False, False),
            ("patroni", False, True),
            ("patroni", True, False),
        ]
    )
    # The engines' timers are wall-clock ones; a loaded machine stretches the rest.
    load = os.getloadavg()[0]
    for engine, tuned, after_renewal in runs:
        result = pg_failover.run(engine, tuned, after_renewal)
        how, anchor, parts = _failover_story(engine, tuned)
        if after_renewal:
            how += ", kill right after the key's renewal"
        goal = "" if tuned else "<= 30 s"
        figure = f"DB primary kill -9 -> writes accepted, {how}"
        rows.append(Row(figure, result["seconds"], "s", goal, anchor))
        for part, key, how_measured in parts:
            rows.append(Row(f"  {part} ({how})", result[key], "s", "", how_measured))
        rpo = "RPO 0: every decision answered 201, before or after the kill, is stored"
        rows.append(Row(f"  acknowledged decisions lost ({how})", result["lost"], "", "<= 0", rpo))
    rows.append(Row("1-minute load average before the runs", load, "", ""))
    return rows


def _failover_story(engine: str, tuned: bool) -> tuple[str, str, list[tuple[str, str, str]]]:
    """A failover run's name, the anchor of its figure and its parts (label, key, source)."""
    agent = ("agent: standby takes writes -> next 201", "agent", "the agent's pool reconnects")
    if engine == "pg_auto_failover":
        if tuned:
            anchor = "config/postgresql/monitor.tuned.conf: unhealthy after 3 s, 5 s to demote"
        else:
            anchor = "pg_auto_failover defaults: unhealthy after 20 s, then 30 s to demote"
        return (
            f"pg_auto_failover {'tuned monitor' if tuned else 'defaults'}",
            anchor,
            [
                ("engine: kill -> primary unhealthy", "detection", "the monitor's event log"),
                (
                    "engine: unhealthy -> standby takes writes",
                    "promotion",
                    "read-only until demoted",
                ),
                agent,
            ],
        )
    from edgeagent.lab.patroni import DEFAULT_TIMERS, TUNED_TIMERS, load_timers
    from edgeagent.lab.pgha import CONFIG_DIR

    timers = load_timers(CONFIG_DIR / TUNED_TIMERS) if tuned else DEFAULT_TIMERS
    values = ", ".join(f"{k} {v}" for k, v in timers.items())
    source = f"config/postgresql/{TUNED_TIMERS}" if tuned else "Patroni defaults"
    return (
        f"Patroni {'tuned' if tuned else 'defaults'}",
        f"{source}: {values}; the lost leader key expires ttl after its last renewal",
        [
            (
                "engine: kill -> standby takes the leader key",
                "detection",
                "the standby's Patroni log",
            ),
            ("engine: leader key -> standby takes writes", "promotion", "promotion of the standby"),
            agent,
        ],
    )


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


def _fleet_fanout(quick: bool) -> list[Row]:
    """Decision -> blocked at every resolver of a rendered fleet (32 mixed; 10-100 BIND)."""
    from bench import fleet_fanout

    if quick:
        return fleet_fanout.run(resolvers=6, sizes=(10,), decisions=3)
    return fleet_fanout.run()


def _bulk_notice(quick: bool) -> list[Row]:
    """A 10,000-URL police notice through the daemon: stored, enforced, tickets opened."""
    from bench import bulk_notice

    return bulk_notice.rows(quick)


def _mail_notices(quick: bool) -> list[Row]:
    """1,000 DKIM-signed e-mailed notices of 10 URLs from a real mailbox (Dovecot)."""
    from bench import mail_notices

    return mail_notices.rows(quick)


def _leader_failover(quick: bool) -> list[Row]:
    """Leader kill -9 -> the new leader has published (two agents, PostgreSQL, BIND)."""
    from bench import leader_failover

    return as_rows(leader_failover.rows(quick))


def _console_pages(quick: bool) -> list[Row]:
    """Every console page against a 1,000,000-entry policy and 10,000 tickets."""
    from bench import console_pages

    return console_pages.rows(quick)


def _edge_fleet(quick: bool) -> list[Row]:
    """Edge role: a change to a 1,000,000-entry proxy index, its bytes, decision -> refused."""
    from bench import edge_fleet

    return edge_fleet.rows(quick)


def _feed_apply(quick: bool) -> list[Row]:
    """POST /v1/decisions p99 at 500/s while a 1,000,000-entry feed generation is applied."""
    from bench import feed_apply

    return feed_apply.rows(quick)


REGISTRY: dict[str, Benchmark] = {
    "store_ingest": _store_ingest,
    "store_ingest_postgresql": _store_ingest_postgresql,
    "canon": _canon,
    "feed_ingest": _feed_ingest,
    "takedown_locate": _takedown_locate,
    "api_throughput": _api_throughput,
    "api_throughput_postgresql": _api_throughput_postgresql,
    "pg_failover": _pg_failover,
    "intake_pages": _intake_pages,
    "rpz": _rpz,
    "proxy_helper": _proxy_helper,
    "squid_e2e": _squid_e2e,
    "fleet_verify": _fleet_verify,
    "fleet_fanout": _fleet_fanout,
    "bulk_notice": _bulk_notice,
    "mail_notices": _mail_notices,
    "leader_failover": _leader_failover,
    "console_pages": _console_pages,
    "edge_fleet": _edge_fleet,
    "feed_apply": _feed_apply,
}
"""Benchmark name -> runner, in the order BENCHMARKS.md lists them."""
