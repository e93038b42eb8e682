"""Public report page throughput: ``POST /report`` queued in a SQLite store.

The pages run in a child process (``python -m bench.intake_pages STORE``: the real app,
CSRF, limits, form checks, triage and store, as the daemon runs them; the per-source
limit is raised because every request here comes from one address). ``concurrency``
clients post ``n`` two-URL reports with one CSRF cookie; a closed-loop run measures
capacity, an open-loop run at ``rate``/s the latency a reporter sees (counted from each
request's due time, so waiting for a free client counts).

Goal: >= 200 submissions/s with p99 <= 100 ms on this machine.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.api_throughput import _percentile

ROOT = Path(__file__).resolve().parent.parent
ANCHOR = "goal: >= 200 submissions/s, p99 <= 100 ms"


def serve(store_path: Path) -> None:
    """The pages over ``store_path`` on a free loopback port; prints ``READY <port>``."""
    from aiohttp import web

    from edgeagent.config import default_settings
    from edgeagent.decisions import DecisionService
    from edgeagent.guard import Guard
    from edgeagent.intake.app import PublicPages, create_public_pages_app
    from edgeagent.intake.settings import IntakeSettings
    from edgeagent.intake.triage import Triage
    from edgeagent.metrics import Metrics
    from edgeagent.store import SqliteStore

    store = SqliteStore(store_path)
    metrics = Metrics()
    protected = store_path.parent / "guard"
    protected.mkdir(parents=True, exist_ok=True)
    guard = Guard.load(protected, reserved=default_settings(store_path.parent).reserved_names())
    triage = Triage(DecisionService(store, guard, public_needs_approval=True), metrics=metrics)
    settings = IntakeSettings(rate_per_source=10_000_000, daily_cap=10_000_000)
    pages = PublicPages(settings, triage.submit, metrics=metrics)

    async def main() -> None:
        runner = web.AppRunner(create_public_pages_app(pages), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(f"READY {runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


async def post_many(
    base: str, n: int, concurrency: int, rate: float | None = None
) -> tuple[list[float], dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(range(n))
    async with aiohttp.ClientSession(
        base,
        connector=aiohttp.TCPConnector(limit=concurrency),
        cookie_jar=aiohttp.CookieJar(unsafe=True),  # the CSRF cookie of a loopback address
    ) as session:
        async with session.get("/report") as resp:
            page = await resp.text()
        found = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page)
        assert found, "no CSRF token"
        t0 = time.perf_counter()

        async def worker() -> None:
            for i in queue:
                due = t0 + i / rate if rate else None
                if due is not None:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                form = {
                    "csrf_token": found.group(1),
                    "urls": f"http://r{i}.load.example/a\nhttp://r{i}.load.example/b",
                    "category": "Sexualised images of a child",
                    "came_across": "web",
                    "live_video": "no",
                    "description": "benchmark report",
                    "anonymous": "yes",
                }
                start = due if due is not None else time.perf_counter()
                async with session.post("/report", data=form) as resp:
                    await resp.read()
                    latencies.append(time.perf_counter() - start)
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses


def run(n: int = 2_000, concurrency: int = 20, rate: float = 200.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.intake_pages", str(Path(tmp) / "store.db")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        try:
            if not line.startswith("READY "):
                raise RuntimeError(f"report page did not start: {line!r}")
            base = f"http://127.0.0.1:{int(line.split()[1])}"
            asyncio.run(post_many(base, 50, 5))  # warm up
            start = time.perf_counter()
            closed, statuses = asyncio.run(post_many(base, n, concurrency))
            seconds = time.perf_counter() - start
            opened, rate_statuses = asyncio.run(post_many(base, n, concurrency, rate=rate))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    closed.sort()
    opened.sort()
    for code, count in rate_statuses.items():
        statuses[code] = statuses.get(code, 0) + count
    return {
        "submissions_per_second": n / seconds if seconds else 0.0,
        "p99_ms": _percentile(closed, 0.99) * 1000,
        "at_rate_p50_ms": _percentile(opened, 0.50) * 1000,
        "at_rate_p99_ms": _percentile(opened, 0.99) * 1000,
        "rate": rate,
        "posts": n,
        "statuses": statuses,
    }


def rows(quick: bool) -> list[dict[str, Any]]:
    """Rows for ``python -m bench`` (register as ``intake_pages``)."""
    result = run(n=500 if quick else 2_000)
    if result["statuses"] != {200: 2 * result["posts"]}:
        raise RuntimeError(f"unexpected statuses {result['statuses']}")
    return [
        {
            "figure": "public report page: POST /report queued in SQLite, 20 clients",
            "value": result["submissions_per_second"],
            "unit": "submissions/s",
            "goal": ">= 200/s",
            "anchor": ANCHOR,
        },
        {
            "figure": "public report page p99 latency at 200/s offered",
            "value": result["at_rate_p99_ms"],
            "unit": "ms",
            "goal": "<= 100 ms",
            "anchor": ANCHOR,
        },
    ]


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
