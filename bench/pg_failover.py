"""kill -9 of the database primary -> the API accepts writes again, per failover engine.

A primary and its synchronous standby on loopback, failed over by pg_auto_failover or by
Patroni on etcd (:mod:`edgeagent.lab.pgha`), under the control API (:mod:`edgeagent.lab.api_server`)
whose store reaches the database through the multi-host connection string. One client
posts a decision every 20 ms; the primary's supervisor (``pg_autoctl`` keeper or Patroni)
and PostgreSQL are SIGKILLed together
(the machine is lost) and the figure is the time from the kill to the next 201. Every
decision answered 201, before and after, must be in the database afterwards (RPO 0).

Where the time goes: *detection* (the kill -> pg_auto_failover's monitor calls the lost
primary unhealthy, from its event log; or -> the standby's Patroni takes the expired
leader key, from its log), *promotion* (-> the standby accepts writes, polled every
50 ms) are the engine's; the *agent's* share is the rest (-> the next 201: its pool
finding the new primary).

Run with each engine's defaults and with its tuned timers
(``config/postgresql/monitor.tuned.conf``, ``config/postgresql/patroni.tuned.yml``).
Under Patroni the figure depends on when the kill falls: the lost leader key lives
``ttl`` after the primary's last renewal, so Patroni's defaults are also run with the kill
right after a renewal, the slowest case.
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeagent.lab.api_server import start_api_server
from edgeagent.lab.patroni import PatroniCluster
from edgeagent.lab.pgha import PgNode, start_pg_cluster, writable
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


def run(engine: str, tuned: bool, after_renewal: bool = False) -> dict[str, Any]:
    """One failover; returns seconds to the first write after the kill and what was lost.

    ``after_renewal`` (Patroni): the kill waits for the primary's next renewal of its
    leader key, the slowest moment to lose it; otherwise it falls where it falls."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        cluster = start_pg_cluster(
            engine=engine, tuned=tuned
        )  # its own directory, reachable by postgres
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
            promoted = Promotion(cluster.nodes[1])
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
                        if after_renewal:
                            assert isinstance(cluster, PatroniCluster)
                            cluster.wait_key_renewed()
                        killed_wall = datetime.now(UTC)
                        cluster.nodes[0].kill()
                        killed_at = time.monotonic()
                        promoted.watch()
                    if killed_at and time.monotonic() - killed_at > GIVE_UP_SECONDS:
                        raise RuntimeError(
                            f"no write accepted {GIVE_UP_SECONDS:g} s after the kill"
                        )
                    time.sleep(0.02)
            finally:
                promoted.stop()
                server.stop()
            detected_at = cluster.detected_after(killed_wall)
            store = PostgresStore(Database(dsn, lambda: password))
            try:
                stored = {d.reference for d in store.list_decisions(limit=100_000)}
            finally:
                store.close()
        finally:
            cluster.remove()
    lost = [n for n in acknowledged if f"FAILOVER-{n}" not in stored]
    promoted_after = promoted.at - killed_at
    return {
        "seconds": resumed_at - killed_at,
        "detection": detected_at,
        "promotion": promoted_after - detected_at,
        "agent": resumed_at - promoted.at,
        "acknowledged": len(acknowledged),
        "lost": len(lost),
    }


class Promotion:
    """When ``node`` first accepts writes, polled from a thread (monotonic seconds)."""

    def __init__(self, node: PgNode) -> None:
        self.node = node
        self.at = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def watch(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if not self.at:
            raise RuntimeError("the standby was never seen promoted")

    def _poll(self) -> None:
        while not self._done.is_set() and not writable(self.node):
            time.sleep(0.05)
        self.at = time.monotonic()


if __name__ == "__main__":
    # python -m bench.pg_failover ENGINE [tuned]
    print(run(sys.argv[1], tuned=sys.argv[2:] == ["tuned"]))
