"""Control API write throughput: ``POST /v1/decisions`` against a 100,000-entry policy.

The server runs in its own process (:mod:`edgeagent.lab.api_server`: the real app, SQLite
store, guard, and a policy rebuild after writes, as the daemon does) over a store preloaded
with one live feed generation of ``n_policy`` entries; ``concurrency`` clients in this
process post ``n_posts`` decisions for distinct targets. Latency is per request, measured
by the client (so it includes the loopback round trip).

Goal: >= 500 decisions/s, p99 <= 50 ms on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import aiohttp

from edgeagent.lab.api_server import start_api_server
from edgeagent.model import Action, Entry, Indicator, Scope
from edgeagent.store import SqliteStore
from edgeagent.store.base import GenerationStatus, Store
from edgeagent.tokens import new_token

ANCHOR = "goal: >= 500 decisions/s, p99 <= 50 ms with a 100,000-entry policy"


def _feed(n: int) -> Iterator[Entry]:
    for i in range(n):
        yield Entry(Indicator(Scope.DOMAIN, f"f{i:07d}.feed.example"), Action.BLOCK, "bench")


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def post_many(
    base: str,
    token: str,
    n: int,
    concurrency: int,
    prefix: str = "b",
    rate: float | None = None,
) -> tuple[list[float], dict[int, int]]:
    """Post ``n`` decisions from ``concurrency`` clients; return latencies (s) and statuses.

    Without ``rate`` each client posts as fast as it gets answers (closed loop: measures
    capacity; latency is then queueing by construction). With ``rate``, request ``i`` is
    due at ``i / rate`` seconds and its latency counts from that moment, so time spent
    waiting for a free client is included (no coordinated omission).
    """
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(range(n))
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:

        async def worker() -> None:
            for i in queue:
                due = t0 + i / rate if rate else None
                if due is not None:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                body = {
                    "target": f"{prefix}{i}.load.example",
                    "scope": "host",
                    "action": "block",
                    "reason": "benchmark",
                    "reference": f"BENCH-{i}",
                    "source": "hotline",
                }
                start = due if due is not None else time.perf_counter()
                async with session.post("/v1/decisions", json=body) as resp:
                    await resp.read()
                    latencies.append(time.perf_counter() - start)
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses


@contextlib.contextmanager
def sqlite_store(directory: Path) -> Iterator[tuple[Store, Path]]:
    """A fresh SQLite store in ``directory`` and the path the API server opens."""
    path = directory / "store.db"
    yield SqliteStore(path), path


StoreMaker = Callable[[Path], AbstractContextManager[tuple[Store, Path]]]


def run(
    n_policy: int = 100_000,
    n_posts: int = 2_000,
    concurrency: int = 50,
    rebuild_every: float = -1.0,
    rate: float = 500.0,
    store_maker: StoreMaker = sqlite_store,
) -> dict[str, Any]:
    """Measure; return decisions/s, p50/p99/max latency (ms) and the status counts.

    Two runs against the same server: closed loop (capacity: ``decisions_per_second``,
    ``p50_ms``/``p99_ms`` under saturation) and open loop at ``rate`` decisions/s
    (``at_rate_p50_ms``/``at_rate_p99_ms``: the latency a client sees at the goal rate).
    ``rebuild_every`` >= 0 makes the server rebuild the policy after writes, as the daemon
    does (the default measures the API and store alone). ``store_maker`` makes the empty
    store (default: SQLite) and says what the server opens (:mod:`edgeagent.lab.api_server`).
    """
    with tempfile.TemporaryDirectory() as tmp, store_maker(Path(tmp)) as (store, store_arg):
        store.add_generation("bench", _feed(n_policy), status=GenerationStatus.LIVE)
        secret, digest = new_token()
        store.add_token("bench", "analyst", digest)
        store.close()
        server = start_api_server(store_arg, Path(tmp) / "protected", rebuild_every=rebuild_every)
        proc = server.proc
        try:
            base = server.url
            # Warm up (connections, first policy use) outside the measurement.
            asyncio.run(post_many(base, secret, 50, 10, prefix="w"))
            cpu = _cpu_seconds(proc.pid)
            start = time.perf_counter()
            latencies, statuses = asyncio.run(post_many(base, secret, n_posts, concurrency))
            seconds = time.perf_counter() - start
            cpu = _cpu_seconds(proc.pid) - cpu
            at_rate, rate_statuses = asyncio.run(
                post_many(base, secret, n_posts, concurrency, prefix="r", rate=rate)
            )
        finally:
            server.stop()
    latencies.sort()
    at_rate.sort()
    for code, count in rate_statuses.items():
        statuses[code] = statuses.get(code, 0) + count
    return {
        "policy_entries": n_policy,
        "posts": n_posts,
        "concurrency": concurrency,
        "seconds": seconds,
        "decisions_per_second": n_posts / seconds if seconds else 0.0,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
        # Server CPU per decision: robust to other load on a shared machine.
        "server_cpu_ms_per_decision": cpu / n_posts * 1000,
        "rate": rate,
        "at_rate_p50_ms": _percentile(at_rate, 0.50) * 1000,
        "at_rate_p99_ms": _percentile(at_rate, 0.99) * 1000,
        "statuses": statuses,
    }


def rows(quick: bool) -> list[dict[str, Any]]:
    """Rows for ``python -m bench`` (register as ``api_throughput``)."""
    result = run(n_posts=500 if quick else 2_000)
    if result["statuses"] != {201: 2 * result["posts"]}:
        raise RuntimeError(f"unexpected statuses {result['statuses']}")
    n = result["policy_entries"]
    return [
        {
            "figure": f"POST /v1/decisions, {n:,}-entry policy, 50 clients",
            "value": result["decisions_per_second"],
            "unit": "decisions/s",
            "goal": ">= 500/s",
            "anchor": ANCHOR,
        },
        {
            "figure": "POST /v1/decisions p99 latency at 500/s offered",
            "value": result["at_rate_p99_ms"],
            "unit": "ms",
            "goal": "<= 50 ms",
            "anchor": ANCHOR,
        },
        {
            "figure": "POST /v1/decisions p99 latency, 50 clients flat out (queueing)",
            "value": result["p99_ms"],
            "unit": "ms",
            "goal": "",
            "anchor": "closed loop: latency = clients / throughput",
        },
        {
            "figure": "server CPU per decision",
            "value": result["server_cpu_ms_per_decision"],
            "unit": "ms",
            "goal": "",
            "anchor": "",
        },
    ]


if __name__ == "__main__":
    every = float(sys.argv[1]) if len(sys.argv) > 1 else -1.0
    sys.stdout.write(f"{run(rebuild_every=every)}\n")
