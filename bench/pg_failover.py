"""kill -9 of the database primary -> the API accepts writes again.

A pg_auto_failover formation on loopback (:mod:`edgeagent.lab.pgcluster`: monitor,
primary, synchronous standby) under the control API (:mod:`edgeagent.lab.api_server`)
whose store reaches the database through the multi-host connection string. One client
posts a decision every 20 ms; the primary's keeper and PostgreSQL are SIGKILLed together
(the machine is lost) and the figure is the time from the kill to the next 201. Every
decision answered 201, before and after, must be in the database afterwards (RPO 0).

Run once with pg_auto_failover's defaults and once with the tuned monitor
(``config/postgresql/monitor.tuned.conf``).
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edgeagent.lab.api_server import start_api_server
from edgeagent.lab.pgcluster import start_pg_cluster
from edgeagent.lab.postgres import store_section
from edgeagent.store.postgresql.connect import Database
from edgeagent.store.postgresql.store import PostgresStore
from edgeagent.tokens import new_token

WARMUP = 50  # decisions acknowledged before the kill
GIVE_UP_SECONDS = 300.0


def _post(base: str, token: str, i: int) -> int:
    body = {
        "target": f"f{i}.failover.example",
        "scope": "host",
        "action": "block",
        "reason": "benchmark",
        "reference": f"FAILOVER-{i}",
        "source": "hotline",
    }
    req = urllib.request.Request(f"{base}/v1/decisions", json.dumps(body).encode(), method="POST")
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def run(tuned: bool) -> dict[str, Any]:
    """One failover; returns seconds to the first write after the kill and what was lost."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        cluster = start_pg_cluster(tuned=tuned)  # its own directory, reachable by postgres
        try:
            password = secrets.token_urlsafe(16)
            dsn = cluster.create_database("bench", "bench", password)
            store = PostgresStore(Database(dsn, lambda: password))
            secret, digest = new_token()
            store.add_token("bench", "analyst", digest)
            store.close()
            config = directory / "edgeagent.toml"
            config.write_text(
                f'[agent]\nstate_dir = "{directory / "state"}"\n'
                + store_section(dsn, password, directory, connect_timeout_seconds=2),
                encoding="utf-8",
            )
            server = start_api_server(config, directory / "protected", rebuild_every=-1)
            acknowledged: list[int] = []
            try:
                i = 0
                killed_at = resumed_at = 0.0
                while not resumed_at:
                    status = _post(server.url, secret, i)
                    if status == 201:
                        acknowledged.append(i)
                        if killed_at:
                            resumed_at = time.monotonic()
                    i += 1
                    if len(acknowledged) == WARMUP and not killed_at:
                        cluster.nodes[0].kill()
                        killed_at = time.monotonic()
                    if killed_at and time.monotonic() - killed_at > GIVE_UP_SECONDS:
                        raise RuntimeError(
                            f"no write accepted {GIVE_UP_SECONDS:g} s after the kill"
                        )
                    time.sleep(0.02)
            finally:
                server.stop()
            store = PostgresStore(Database(dsn, lambda: password))
            try:
                stored = {d.reference for d in store.list_decisions(limit=100_000)}
            finally:
                store.close()
        finally:
            cluster.remove()
    lost = [n for n in acknowledged if f"FAILOVER-{n}" not in stored]
    return {"seconds": resumed_at - killed_at, "acknowledged": len(acknowledged), "lost": len(lost)}


if __name__ == "__main__":
    print(run(tuned=len(sys.argv) > 1 and sys.argv[1] == "tuned"))
