"""Store ingest into PostgreSQL: ``n`` domain entries as one live generation (binary COPY),
beside the same ingest into SQLite in the same process, for an anchor from the same run.

The server is a throwaway PostgreSQL 15 on loopback (:mod:`edgeagent.lab.postgres`) with
its default durability settings (``fsync`` and ``synchronous_commit`` on); the store
reaches it over TCP with a password, as an agent on another host would.
"""

from __future__ import annotations

import os
import secrets
import sys

from bench.store_ingest import measure
from bench.store_ingest import run as run_sqlite
from edgeagent.lab.postgres import start_postgres
from edgeagent.store.postgresql.connect import Database
from edgeagent.store.postgresql.store import PostgresStore


def run_postgresql(n: int) -> dict[str, float]:
    """:func:`bench.store_ingest.measure` on a fresh database of a fresh server."""
    server = start_postgres()
    try:
        password = secrets.token_urlsafe(16)
        dsn = server.create_database("bench", "bench", password)
        store = PostgresStore(Database(dsn, lambda: password))
        try:
            return measure(store, n)
        finally:
            store.close()
    finally:
        server.remove()


def run(n: int) -> dict[str, dict[str, float]]:
    """Both backends, PostgreSQL first (so SQLite's page cache does not help it), and the
    machine's 1-minute load average before the run (the machine may be shared)."""
    load = {"load_average": os.getloadavg()[0]}
    return {"postgresql": run_postgresql(n), "sqlite": run_sqlite(n), "machine": load}


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
