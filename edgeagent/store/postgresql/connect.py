"""Reaching the database: one-off connections, the pool, and errors that name ``store.dsn``.

Every connection is in autocommit mode (callers open transactions explicitly with
``conn.transaction()``) and runs with ``TimeZone = UTC``, so timestamps come back as UTC.
The password is fetched afresh for every new connection and never appears in a message:
libpq does not quote it, and :func:`connect_error` masks it anyway in case it does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from edgeagent.errors import Conflict, StoreError, StoreUnavailable
from edgeagent.store.postgresql.store import PostgresStoreConfig

DSN_KEY = "store.dsn"
"""The config key that errors about reaching the database name."""

RECONNECT_SECONDS = 0.5
"""How long the pool retries a lost connection before the next ask starts afresh."""

Connection = psycopg.Connection[tuple[Any, ...]]
Cursor = psycopg.Cursor[tuple[Any, ...]]
AsyncConnection = psycopg.AsyncConnection[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Database:
    """How to reach the database: a libpq connection string, a password source and the
    pool limits. ``password`` is called for every new connection."""

    conninfo: str
    password: Callable[[], str | None] = lambda: None
    connect_timeout: float = 10.0
    pool_min_size: int = 1
    pool_max_size: int = 10

    @classmethod
    def from_config(cls, config: PostgresStoreConfig) -> Database:
        return cls(
            config.dsn,
            config.password,
            config.connect_timeout_seconds,
            config.pool_min_size,
            config.pool_max_size,
        )

    def _kwargs(self) -> dict[str, Any]:
        """Connection parameters added to the connection string (which wins where both
        name one, except the password, which only comes from here)."""
        given = conninfo_to_dict(self.conninfo)
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in given:
            kwargs["connect_timeout"] = max(2, math.ceil(self.connect_timeout))
        if "application_name" not in given:
            kwargs["application_name"] = "edgeagent"
        if "target_session_attrs" not in given:
            # Of several hosts, only the primary will do: the agent writes.
            kwargs["target_session_attrs"] = "read-write"
        password = self.password()
        if password is not None:
            kwargs["password"] = password
        return kwargs

    def connect(self) -> Connection:
        """One connection outside the pool; ``StoreError`` naming ``store.dsn`` if refused."""
        kwargs = self._kwargs()
        try:
            conn = psycopg.connect(self.conninfo, **kwargs)
            _configure(conn)
        except psycopg.Error as exc:
            raise connect_error(exc, kwargs.get("password")) from None
        return conn

    async def connect_async(self) -> AsyncConnection:
        """One asyncio connection outside the pool (a session of its own, e.g. the
        leader's); ``StoreError`` naming ``store.dsn`` if refused."""
        kwargs = self._kwargs()
        try:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, **kwargs)
            await conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            raise connect_error(exc, kwargs.get("password")) from None
        return conn

    def open_pool(self, name: str, *, max_size: int | None = None) -> Pool:
        """A pool of at least ``pool_min_size`` connections, opened and ready."""
        pool: ConnectionPool[Connection] = ConnectionPool(
            self.conninfo,
            kwargs=self._kwargs,
            min_size=min(self.pool_min_size, max_size or self.pool_min_size),
            max_size=max_size or self.pool_max_size,
            open=False,
            configure=_configure,
            # A connection left over from before a failover fails its first query: check
            # each one as it is handed out, so callers get a live one or a clear error.
            check=ConnectionPool.check_connection,
            timeout=self.connect_timeout,
            # The pool retries a lost connection with a doubling delay (1, 2, 4, 8 ... s)
            # and no cap, so after a 50 s failover the next try could come half a minute
            # late. Giving up after RECONNECT_SECONDS instead lets the next ask for a
            # connection (Pool.connection asks again every RECONNECT_SECONDS while the
            # pool is short of connections) start a fresh attempt: the agents find the
            # new primary within about a second of it accepting writes.
            reconnect_timeout=min(self.connect_timeout, RECONNECT_SECONDS),
            name=name,
        )
        try:
            pool.open(wait=True, timeout=self.connect_timeout)
        except PoolTimeout:
            pool.close()
            raise StoreUnavailable(
                f"{DSN_KEY}: no database connection within {self.connect_timeout:g} s"
            ) from None
        return Pool(pool, self.connect_timeout)


class Pool:
    """Open pooled connections; each block borrows one and gets errors as ``StoreError``.

    A pool that cannot hand out a connection within ``timeout`` (database down, every
    connection busy) raises ``StoreUnavailable``; so does a connection lost mid-statement.
    """

    def __init__(self, pool: ConnectionPool[Connection], timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self.closed = False

    def close(self) -> None:
        """Close every connection; later blocks raise ``StoreError``. Idempotent."""
        if not self.closed:
            self.closed = True
            self._pool.close()

    @contextmanager
    def connection(self, what: str, timeout: float | None = None) -> Iterator[Connection]:
        """A connection for the block; the pool rolls back whatever it left open.
        ``what`` (e.g. "reading a decision") names the work in error messages;
        ``timeout`` (default: the pool's) bounds the wait for a connection."""
        if self.closed:
            raise StoreError("store is closed")
        wait = self._timeout if timeout is None else timeout
        try:
            conn = self._getconn(wait)
        except PoolTimeout:
            raise StoreUnavailable(f"{DSN_KEY}: no database connection within {wait:g} s") from None
        try:
            yield conn
        except psycopg.Error as exc:
            raise query_error(exc, what) from None
        finally:
            self._pool.putconn(conn)

    def _getconn(self, wait: float) -> Connection:
        """A connection within ``wait`` seconds, or ``PoolTimeout``.

        A pool below its size has lost connections (the database went away): an ask
        starts a connection attempt only if none is under way, and one that gave up
        leaves the clients already waiting with none. So ask again every
        RECONNECT_SECONDS until ``wait`` is over. A full pool is busy, not broken: wait
        in line once (asking again would lose the place).
        """
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            stats = self._pool.get_stats()
            short = stats.get("pool_size", 0) < self._pool.max_size
            try:
                return self._pool.getconn(timeout=min(left, RECONNECT_SECONDS) if short else left)
            except PoolTimeout:
                if time.monotonic() >= deadline - 0.001:
                    raise

    @contextmanager
    def transaction(self, what: str) -> Iterator[Cursor]:
        """One transaction for the block: committed at its end, rolled back if it raises."""
        with self.connection(what) as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    @staticmethod
    @contextmanager
    def savepoint(cur: Cursor) -> Iterator[None]:
        """A savepoint in ``cur``'s transaction for the block: a unique key violated in it
        is undone (the transaction goes on, e.g. to look up the row in the way) and
        raised as ``Conflict``."""
        try:
            with cur.connection.transaction():
                yield
        except psycopg.errors.UniqueViolation:
            raise Conflict("a unique key is violated") from None


def _configure(conn: Connection) -> None:
    conn.execute("SET TIME ZONE 'UTC'")


def _clean(message: str, password: str | None) -> str:
    """libpq's message on one line, without its boilerplate and never with the password."""
    text = message.removeprefix("connection failed: ")
    text = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    if password:
        text = text.replace(password, "***")
    return text


def connect_error(exc: psycopg.Error, password: str | None = None) -> StoreError:
    """A failed connection as a ``StoreError`` naming ``store.dsn`` and what is wrong."""
    text = _clean(str(exc), password)
    if "password authentication failed" in text or "no password supplied" in text:
        return StoreError(
            f"{DSN_KEY}: the database refused the login ({text}); "
            "check store.password_file or store.password_env"
        )
    if "does not exist" in text:
        return StoreError(f"{DSN_KEY}: {text}")
    return StoreUnavailable(f"{DSN_KEY}: cannot reach the database: {text}")


_UNAVAILABLE_CLASSES = ("08", "57")
"""SQLSTATE classes that say the server, not the statement, failed: connection exceptions,
and operator intervention (shutdown, a postmaster that died under its backends, a server
still starting, a cancelled statement). The same request may succeed later."""
_UNAVAILABLE_STATES = ("25006",)
"""read_only_sql_transaction: the server was the primary and is not any more."""


def query_error(exc: psycopg.Error, what: str) -> StoreError:
    """A failed statement as a ``StoreError``; ``StoreUnavailable`` (503, retry later) when
    the connection or the server failed rather than the statement.

    Only the SQLSTATE and the primary message are kept: the server's DETAIL line quotes
    the offending row (a list entry, say), which must not reach a log.
    """
    primary = exc.diag.message_primary or type(exc).__name__
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        return StoreUnavailable(
            f"{DSN_KEY}: lost the database while {what}: {_clean(str(exc), None)}"
        )
    if exc.sqlstate is not None and (
        exc.sqlstate[:2] in _UNAVAILABLE_CLASSES or exc.sqlstate in _UNAVAILABLE_STATES
    ):
        return StoreUnavailable(
            f"{DSN_KEY}: lost the database while {what}: {primary} (SQLSTATE {exc.sqlstate})"
        )
    return StoreError(f"{what} failed: {primary} (SQLSTATE {exc.sqlstate})")
