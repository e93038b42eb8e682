"""Benchmarks that cannot rot: each benchmark of ``bench/`` runs in its ``--quick`` form,
exactly as ``python -m bench --quick NAME``, and must finish and report its rows.

The results go to a temporary file (the full runs regenerate BENCHMARKS.md, not the test
suite). The names are listed here, not imported (the tests use nothing of ``bench/``), and
checked against ``python -m bench --list``: a new benchmark must be added here too.

The quick forms that take a quarter of a minute or more, and whose machinery other
integration tests already drive (Squid under load, a database failover, the resolver
fleet), are marked ``slow``: they run with ``--run-slow``, which keeps the default suite
within its time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = (
    "store_ingest",
    "store_ingest_postgresql",
    "canon",
    "feed_ingest",
    "takedown_locate",
    "api_throughput",
    "api_throughput_postgresql",
    "pg_failover",
    "intake_pages",
    "rpz",
    "proxy_helper",
    "squid_e2e",
    "fleet_verify",
    "fleet_fanout",
    "bulk_notice",
    "mail_notices",
    "leader_failover",
    "console_pages",
    "edge_fleet",
    "feed_apply",
)


def _bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_every_benchmark_is_listed_here() -> None:
    listed = _bench("--list", timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert tuple(line.split()[0] for line in listed.stdout.splitlines()) == BENCHMARKS


SLOW = frozenset({"squid_e2e", "pg_failover", "fleet_fanout", "fleet_verify"})
"""Quick forms of 10 s or more (the failover alone waits for the engine's timers)."""


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in BENCHMARKS]
)
def test_quick_benchmark_runs_and_reports_its_rows(name: str, tmp_path: Path) -> None:
    results, report = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    run = _bench("--quick", "--results", str(results), "--report", str(report), name)
    assert run.returncode == 0, run.stderr[-3000:]
    entry = json.loads(results.read_text())["benchmarks"][name]
    assert entry["quick"] is True
    figures = [row["figure"] for row in entry["rows"]]
    # Every benchmark reports at least one figure of its own beside the peak RSS row.
    assert len([f for f in figures if not f.startswith("peak RSS")]) >= 1, figures
    assert all(isinstance(row["value"], int | float) for row in entry["rows"])
    assert f"python -m bench --quick {name}" in report.read_text()
