"""A police notice of 10,000 URLs in one call: stored, enforced and tickets opened.

The real daemon (``edgeagent run``) with an RPZ zone-file publisher, the proxy index and
takedown on (customers from a CSV export, hosts resolved by a local Unbound serving
10,000 synthetic ``*.hosted.test`` names in the documentation prefixes, which are the
agent's own space here). One ``POST /v1/decisions/bulk`` carries every URL; the clock
runs from sending it until

- *stored*: the answer (every decision and its audit row committed);
- *enforced*: ``/v1/status`` shows the RPZ publisher and the proxy index at the policy
  version that holds the notice;
- *tickets opened*: the daemon logs the notice's takedown tickets (its log line's time),
  checked afterwards against ``GET /v1/tickets`` (every URL on a ticket).

Goal: <= 10 s for 10,000 URLs on this machine.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import Row
from bench.central import AGENT, analyst_token, write_config
from edgeagent.apiclient import ApiClient
from edgeagent.lab.daemons import free_tcp_port, spawn, stop_process, wait_listening
from edgeagent.lab.resolvers import unbound_server

ANCHOR = "goal: a 10,000-URL notice stored, enforced and its tickets opened in <= 10 s"
PREFIXES = ("198.51.100", "203.0.113")
CUSTOMER_BLOCK = 16  # a /28 per customer: 32 customers


def _address(i: int) -> str:
    return f"{PREFIXES[i % 2]}.{(i // 2) % 254 + 1}"


def _customers() -> str:
    rows = ["prefix,customer_id,service_id,contact"]
    for prefix in PREFIXES:
        for start in range(0, 256, CUSTOMER_BLOCK):
            cid = f"c-{prefix.split('.')[-1]}-{start}"
            rows.append(f"{prefix}.{start}/28,{cid},srv-{start},noc@{cid}.example")
    return "\n".join(rows) + "\n"


def _config(tmp: Path, dns_port: int, api: int, metrics: int, stop: int) -> Path:
    (tmp / "customers.csv").write_text(_customers(), encoding="utf-8")
    takedown = f"""
[takedown]
enabled = true
own_prefixes = ["198.51.100.0/24", "203.0.113.0/24"]
resolvers = [{{ host = "127.0.0.1", port = {dns_port} }}]
[[takedown.customers]]
kind = "csv"
path = "{tmp / "customers.csv"}"
"""
    return write_config(tmp, api, metrics, stop, takedown)


def _log_time(log: Path, message: str, after: float) -> float | None:
    """Epoch seconds of the first record ``message`` logged at or after ``after``."""
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("msg") == message:
            at = datetime.fromisoformat(record["ts"]).timestamp()
            if at >= after - 0.01:
                return at
    return None


def measure(n_urls: int = 10_000) -> dict[str, Any]:
    records = [(f"h{i:05d}.hosted.test", "A", _address(i)) for i in range(n_urls)]
    with (
        tempfile.TemporaryDirectory(prefix="edgeagent-bulk-") as name,
        unbound_server(records) as (_, dns_port),
    ):
        tmp = Path(name)
        api, metrics, stop = free_tcp_port(), free_tcp_port(), free_tcp_port()
        config = _config(tmp, dns_port, api, metrics, stop)
        client = ApiClient(f"http://127.0.0.1:{api}", analyst_token(config))
        body = {
            "targets": [
                {"target": f"http://h{i:05d}.hosted.test/listed/{i}.html", "scope": "url"}
                for i in range(n_urls)
            ],
            "action": "block",
            "reason": "police notice",
            "reference": "POL-BENCH-1",
            "source": "law-enforcement",
        }
        proc, log = spawn("daemon", [*AGENT, "run", "-c", str(config)], tmp)
        try:
            wait_listening(proc, "edgeagent", [("127.0.0.1", api), ("127.0.0.1", metrics)], log)
            # The customer export (a small CSV) is read right after "ready": let it load.
            time.sleep(2.0)
            started = time.time()
            t0 = time.perf_counter()
            answer = client.call("POST", "/v1/decisions/bulk", body)
            stored = time.perf_counter() - t0
            if answer["accepted"] != n_urls:
                raise RuntimeError(f"notice not accepted: {str(answer)[:300]}")
            version = client.call("GET", "/v1/status")["policy_version"]
            enforced = None
            tickets_at = None
            deadline = time.monotonic() + 120
            while (enforced is None or tickets_at is None) and time.monotonic() < deadline:
                if enforced is None:
                    pubs = client.call("GET", "/v1/status")["publishers"]
                    rpz = pubs["rpz"]["policy_version"] or 0
                    proxy = pubs["proxy-index"]["published_version"] or 0
                    if min(rpz, proxy) >= version:
                        enforced = time.perf_counter() - t0
                if tickets_at is None:
                    tickets_at = _log_time(log, "takedown tickets opened or extended", started)
                time.sleep(0.05)
            if enforced is None or tickets_at is None:
                raise RuntimeError(
                    f"not enforced or no tickets within 120 s: {log.read_text()[-3000:]}"
                )
            tickets = client.call("GET", "/v1/tickets", query={"limit": "1000"})
            urls = sum(len(t["urls"]) for t in tickets["items"])
        finally:
            stop_process(proc, timeout=30)
        resolve = _resolve_alone([name for name, _, _ in records], dns_port)
    return {
        "urls": n_urls,
        "stored_s": stored,
        "enforced_s": enforced,
        "tickets_s": tickets_at - started,
        "tickets": len(tickets["items"]),
        "ticket_urls": urls,
        "resolve_alone_s": resolve,
    }


def _resolve_alone(hosts: list[str], port: int) -> float:
    """Seconds to resolve ``hosts`` (A and AAAA) through the same Unbound, nothing else:
    how fast DNS is on this machine right now, the largest part of opening tickets."""
    from edgeagent.takedown.locate import HostResolver

    resolver = HostResolver([("127.0.0.1", port)])
    t0 = time.perf_counter()
    answers = asyncio.run(resolver.resolve_many(hosts))
    seconds = time.perf_counter() - t0
    if sum(1 for found, _ in answers.values() if found) != len(hosts):
        raise RuntimeError("the anchor run did not resolve every host")
    return seconds


def rows(quick: bool) -> list[Row]:
    n = 200 if quick else 10_000
    r = measure(n)
    if r["ticket_urls"] != n:
        raise RuntimeError(f"{r['ticket_urls']} of {n} URLs on tickets")
    done = max(r["enforced_s"], r["tickets_s"])
    goal = "<= 10 s" if n == 10_000 else ""
    return [
        Row(f"notice of {n:,} URLs: stored, enforced, tickets opened", done, "s", goal, ANCHOR),
        Row("  stored (answer to POST /v1/decisions/bulk)", r["stored_s"], "s", "", ANCHOR),
        Row("  enforced (RPZ zone and proxy index published)", r["enforced_s"], "s", "", ANCHOR),
        Row(f"  tickets opened ({r['tickets']} customers)", r["tickets_s"], "s", "", ANCHOR),
        Row(
            f"  anchor: resolving the same {n:,} hosts alone (A and AAAA)",
            r["resolve_alone_s"],
            "s",
            "",
            "same run, same Unbound: DNS speed on this machine at the time",
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000), indent=2))
