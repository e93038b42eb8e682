"""``POST /v1/decisions`` against a 100,000-entry policy with the store in PostgreSQL,
beside the same run on SQLite in the same process (:mod:`bench.api_throughput`).

The server is a throwaway PostgreSQL 15 on loopback (:mod:`edgeagent.lab.postgres`) with
its default durability settings; the API server reaches it over TCP with a password, as
an agent on another host would. The goal is SQLite's: >= 500 decisions/s, p99 <= 50 ms at
500/s offered.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.api_throughput import run as run_api
from edgeagent.lab.postgres import start_postgres, store_section
from edgeagent.store.base import Store
from edgeagent.store.postgresql.connect import Database
from edgeagent.store.postgresql.store import PostgresStore


@contextlib.contextmanager
def postgresql_store(directory: Path) -> Iterator[tuple[Store, Path]]:
    """A fresh database on a fresh server, and a config file naming it for the API server."""
    server = start_postgres()
    try:
        password = secrets.token_urlsafe(16)
        dsn = server.create_database("bench", "bench", password)
        config = directory / "edgeagent.toml"
        config.write_text(
            f'[agent]\nstate_dir = "{directory / "state"}"\n'
            + store_section(dsn, password, directory),
            encoding="utf-8",
        )
        yield PostgresStore(Database(dsn, lambda: password)), config
    finally:
        server.remove()


def run(n_policy: int, n_posts: int) -> dict[str, Any]:
    """Both backends, PostgreSQL first, and the machine's 1-minute load average before."""
    load = {"load_average": os.getloadavg()[0]}
    postgresql = run_api(n_policy, n_posts, store_maker=postgresql_store)
    sqlite = run_api(n_policy, n_posts)
    return {"postgresql": postgresql, "sqlite": sqlite, "machine": load}


if __name__ == "__main__":
    print(run(100_000, int(sys.argv[1]) if len(sys.argv) > 1 else 2_000))
