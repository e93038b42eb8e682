"""A test's own PostgreSQL database (the ``pg_database`` fixture's value)."""

from __future__ import annotations

from dataclasses import dataclass

from edgeagent.lab.postgres import PostgresServer
from edgeagent.store.postgresql.connect import Database


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
