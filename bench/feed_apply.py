"""``POST /v1/decisions`` latency at 500/s offered while a 1,000,000-entry feed generation
is applied at the centre (embedded SQLite store).

The real daemon (``edgeagent run``) as the centre: a ``domain-list`` feed read from a local
file and the proxy index the edges follow; no RPZ publisher (at the centre it sends
hidden primaries an UPDATE of the change, O(change): see the ``rpz`` benchmark; a zone
file publisher would rewrite and check the whole 1,000,000-entry zone per version,
which is a publisher's cost, not the apply's). Its first sync makes a generation of
``n`` domains live and enforced; then the list file is replaced by the next generation
(``churn`` of the entries removed, as many new ones added) and ``POST /v1/feeds/NAME/sync``
applies it while clients in this process post decisions at ``rate``/s, open loop (a
request's latency counts from the moment it was due, so a stalled server cannot hide
behind clients that stopped sending).

*Apply time* runs from the sync request until ``/v1/status`` shows the proxy index at a
policy version that holds the new generation: parse, validate, store, policy update and
publish. The latency figures are those of the requests due in that
window; the same load for a few seconds before it, on the same daemon, is the anchor.

Goal: p99 <= 50 ms at 500/s while the generation is applied.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench import Row
from bench.central import AGENT, analyst_token, write_config
from edgeagent.apiclient import ApiClient
from edgeagent.atomic import write_atomic
from edgeagent.lab.daemons import free_tcp_port, spawn, stop_process, wait_listening

ANCHOR = (
    "goal: POST /v1/decisions p99 <= 50 ms at 500/s while a 1,000,000-entry feed "
    "generation is applied"
)
FEED = "police"


def _domains(first: int, n: int) -> bytes:
    return "".join(f"d{i:07d}.feed.example\n" for i in range(first, first + n)).encode()


def _config(tmp: Path, feed_file: Path, api: int, metrics: int, stop: int) -> Path:
    feed = f"""
[feeds.{FEED}]
kind = "domain-list"
source = "law-enforcement"
path = "{feed_file}"
interval_seconds = 86400
jitter_seconds = 0
"""
    return write_config(tmp, api, metrics, stop, feed, zones=False)


@dataclass
class Load:
    """Decisions posted at a fixed rate until told to stop; latency from each due time."""

    base: str
    token: str
    rate: float
    prefix: str
    clients: int = 50

    def __post_init__(self) -> None:
        self.samples: list[tuple[float, float, int]] = []  # (due, latency s, status)
        self.stop = threading.Event()

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        connector = aiohttp.TCPConnector(limit=self.clients)
        t0 = time.perf_counter()
        counter = iter(range(10**9))
        async with aiohttp.ClientSession(self.base, connector=connector, headers=headers) as s:

            async def client() -> None:
                for i in counter:
                    due = t0 + i / self.rate
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    if self.stop.is_set():
                        return
                    body = {
                        "target": f"{self.prefix}{i}.load.example",
                        "scope": "host",
                        "action": "block",
                        "reason": "benchmark",
                        "reference": f"BENCH-{i}",
                        "source": "hotline",
                    }
                    async with s.post("/v1/decisions", json=body) as resp:
                        await resp.read()
                        self.samples.append((due, time.perf_counter() - due, resp.status))

            await asyncio.gather(*(client() for _ in range(self.clients)))

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)
        thread.start()
        return thread

    def latencies(self, since: float, until: float) -> list[float]:
        """Sorted latencies (s) of the requests due in [since, until); any non-201 raises."""
        window = [(lat, code) for due, lat, code in self.samples if since <= due < until]
        bad = {code for _, code in window if code != 201}
        if bad:
            raise RuntimeError(f"unexpected statuses {sorted(bad)}")
        return sorted(lat for lat, _ in window)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def _enforced_at(client: ApiClient, version: int, timeout: float) -> float:
    """perf_counter when the proxy index is published at ``version`` or later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pubs = client.call("GET", "/v1/status")["publishers"]
        if (pubs["proxy-index"]["published_version"] or 0) >= version:
            return time.perf_counter()
        time.sleep(0.05)
    raise RuntimeError(f"policy version {version} not enforced within {timeout:.0f} s")


def _live_entries(client: ApiClient) -> int:
    return int(client.call("GET", f"/v1/feeds/{FEED}")["entries"])


def measure(
    n: int = 1_000_000, churn: float = 0.05, rate: float = 500.0, anchor_seconds: float = 4.0
) -> dict[str, Any]:
    """Apply the second generation of an ``n``-entry feed under load; figures in ms and s.

    The anchor is the same load during the ``anchor_seconds`` before the sync request.
    """
    moved = int(n * churn)
    load_average = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="edgeagent-feed-apply-") as name:
        tmp = Path(name)
        feed_file = tmp / "domains.txt"
        write_atomic(feed_file, _domains(0, n), mode=0o600)
        api, metrics, stop = free_tcp_port(), free_tcp_port(), free_tcp_port()
        config = _config(tmp, feed_file, api, metrics, stop)
        token = analyst_token(config)
        base = f"http://127.0.0.1:{api}"
        client = ApiClient(base, token, timeout=600)
        proc, log = spawn("daemon", [*AGENT, "run", "-c", str(config)], tmp)
        try:
            wait_listening(proc, "edgeagent", [("127.0.0.1", api), ("127.0.0.1", metrics)], log)
            deadline = time.monotonic() + 600
            while _live_entries(client) != n:  # the first sync, at start
                if time.monotonic() > deadline:
                    raise RuntimeError(f"first generation not live: {log.read_text()[-3000:]}")
                time.sleep(0.2)
            _enforced_at(client, client.call("GET", "/v1/status")["policy_version"], 600)
            write_atomic(feed_file, _domains(moved, n), mode=0o600)
            load = Load(base, token, rate, "r")
            thread = load.start()
            time.sleep(anchor_seconds + 1.0)  # the anchor, after a second of warm-up
            started = time.perf_counter()
            result = client.call("POST", f"/v1/feeds/{FEED}/sync")
            stored = time.perf_counter()
            if result["outcome"] != "live":
                raise RuntimeError(f"generation not live: {result}")
            version = client.call("GET", "/v1/status")["policy_version"]
            enforced = _enforced_at(client, version, 600)
            load.stop.set()
            thread.join(timeout=60)
            if _live_entries(client) != n:
                raise RuntimeError("the new generation is not the live one")
        finally:
            stop_process(proc, timeout=30)
    during = load.latencies(started, enforced)
    before = load.latencies(started - anchor_seconds, started)
    return {
        "entries": n,
        "changed": 2 * moved,
        "rate": rate,
        "apply_s": enforced - started,
        "stored_s": stored - started,
        "requests": len(during),
        "p50_ms": _percentile(during, 0.50) * 1000,
        "p99_ms": _percentile(during, 0.99) * 1000,
        "max_ms": (during[-1] if during else 0.0) * 1000,
        "before_p99_ms": _percentile(before, 0.99) * 1000,
        "load_average": load_average,
    }


def rows(quick: bool) -> list[Row]:
    r = measure(20_000, anchor_seconds=1.0) if quick else measure()
    n = r["entries"]
    what = f"{n:,}-entry generation ({r['changed']:,} entries changed)"
    return [
        Row(
            f"POST /v1/decisions p99 at 500/s while a {what} is applied",
            round(r["p99_ms"], 1),
            "ms",
            "<= 50 ms",
            ANCHOR,
        ),
        Row(
            "  p50 in the same window",
            round(r["p50_ms"], 1),
            "ms",
            "",
            f"{r['requests']:,} requests, max {r['max_ms']:.0f} ms",
        ),
        Row(
            "  p99 at 500/s just before, same daemon (anchor)",
            round(r["before_p99_ms"], 1),
            "ms",
            "<= 50 ms",
            "",
        ),
        Row(
            f"apply a {what}: sync request -> proxy index published",
            round(r["apply_s"], 2),
            "s",
            "",
            f"of which stored (sync answered): {r['stored_s']:.2f} s",
        ),
        Row("1-minute load average before the run", r["load_average"], "", "", "2 cores"),
    ]


if __name__ == "__main__":
    sys.stdout.write(f"{measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)}\n")
