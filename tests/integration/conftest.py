"""Fixtures for the integration tests that need a PostgreSQL server.

- ``pg_server`` (session): one real PostgreSQL 15 (:func:`edgeagent.lab.postgres.start_postgres`)
  on a free loopback port, its socket and data in a temporary directory; stopped and
  removed when the session ends.
- ``pg_database``: a fresh empty database on it, owned by a fresh login role with a random
  password (a :class:`PgDatabase`); dropped after the test.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from edgeagent.lab.postgres import PostgresServer, start_postgres
from edgeagent.store.postgresql.connect import Database

_names = itertools.count(1)


@dataclass(frozen=True)
class PgDatabase:
    """One test's database: its TCP connection string (no password) and the password."""

    server: PostgresServer
    name: str
    user: str
    password: str
    dsn: str

    def database(self) -> Database:
        """How the store reaches it (the password from memory, as a config would read it)."""
        password = self.password
        return Database(self.dsn, lambda: password)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def pg_database(pg_server: PostgresServer) -> Iterator[PgDatabase]:
    n = next(_names)
    name, user, password = f"edgeagent_t{n}", f"agent_t{n}", secrets.token_urlsafe(16)
    dsn = pg_server.create_database(name, user, password)
    yield PgDatabase(pg_server, name, user, password, dsn)
    pg_server.drop_database(name, user)
