"""Reaching the database: one-off connections, the pool on the database's event loop, and
errors that name ``store.dsn``.

The driver is psycopg 3's asyncio API; the pool is a :class:`psycopg_pool.AsyncConnectionPool`.
Each :class:`Pool` runs on an event loop of its own, in a daemon thread
(:class:`.bridge.LoopThread`, "the database's loop"), so that the synchronous store contract
can sit on top: a store method runs its SQL as one coroutine there (:meth:`Pool.run`) and
its caller's thread waits for the result. Many callers' coroutines share the loop and the
pool; a long read or a COPY holds one connection across several such calls (:meth:`Pool.hold`).

Every connection is in autocommit mode (callers open transactions explicitly with
``conn.transaction()``) and runs with ``TimeZone = UTC``, so timestamps come back as UTC.
The password is fetched afresh for every new connection and never appears in a message:
libpq does not quote it, and :func:`connect_error` masks it anyway in case it does.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
    suppress,
)
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from edgeagent.errors import Conflict, StoreError, StoreUnavailable
from edgeagent.store.postgresql.bridge import LoopThread
from edgeagent.store.postgresql.store import PostgresStoreConfig

DSN_KEY = "store.dsn"
"""The config key that errors about reaching the database name."""

RECONNECT_SECONDS = 0.5
"""How long the pool retries a lost connection before the next ask starts afresh."""

Row = tuple[Any, ...]
Connection = psycopg.AsyncConnection[Row]
Cursor = psycopg.AsyncCursor[Row]
ServerCursor = psycopg.AsyncServerCursor[Row]
T = TypeVar("T")


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

    async def connect(self) -> Connection:
        """One connection outside the pool (a session of its own, e.g. the leader's, or
        the migration's); ``StoreError`` naming ``store.dsn`` if refused."""
        kwargs = self._kwargs()
        try:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, **kwargs)
            await _configure(conn)
        except psycopg.Error as exc:
            raise connect_error(exc, kwargs.get("password")) from None
        return conn

    def open_pool(
        self,
        name: str,
        *,
        max_size: int | None = None,
        first: Callable[[Connection], Awaitable[None]] | None = None,
    ) -> Pool:
        """A pool of at least ``pool_min_size`` connections, opened and ready, on a loop
        of its own (a thread named after the pool). ``first`` runs before, over a
        connection of its own (the schema migration)."""
        loop = LoopThread(f"{name}-loop")
        try:
            pool = loop.run(self._open_pool(name, max_size, first))
        except BaseException:
            loop.close()
            raise
        return Pool(pool, loop, self.connect_timeout)

    async def _open_pool(
        self,
        name: str,
        max_size: int | None,
        first: Callable[[Connection], Awaitable[None]] | None,
    ) -> AsyncConnectionPool[Connection]:
        if first is not None:
            async with await self.connect() as conn:
                await first(conn)
        # Made on the loop that will run it: the pool's maintenance tasks live there.
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self.conninfo,
            kwargs=self._kwargs,
            min_size=min(self.pool_min_size, max_size or self.pool_min_size),
            max_size=max_size or self.pool_max_size,
            open=False,
            configure=_configure,
            # A connection left over from before a failover fails its first query: check
            # each one as it is handed out, so callers get a live one or a clear error.
            check=AsyncConnectionPool.check_connection,
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
            await pool.open(wait=True, timeout=self.connect_timeout)
        except PoolTimeout:
            await pool.close()
            raise StoreUnavailable(
                f"{DSN_KEY}: no database connection within {self.connect_timeout:g} s"
            ) from None
        return pool


class Pool:
    """Pooled connections on the database's loop; each block borrows one and gets errors
    as ``StoreError``.

    The async context managers (:meth:`connection`, :meth:`transaction`) are for
    coroutines on the loop; other threads hand those coroutines to :meth:`run`. A pool
    that cannot hand out a connection within ``timeout`` (database down, every connection
    busy) raises ``StoreUnavailable``; so does a connection lost mid-statement.
    """

    def __init__(
        self, pool: AsyncConnectionPool[Connection], loop: LoopThread, timeout: float
    ) -> None:
        self._pool = pool
        self._loop = loop
        self._timeout = timeout
        # Connections lent out across several run() calls (streams, COPY): close() ends
        # them itself, as the pool only closes a connection when it comes back.
        self._held: set[Connection] = set()

    @property
    def closed(self) -> bool:
        return self._loop.closed

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the database's loop and wait for its result
        (:meth:`.bridge.LoopThread.run`: ``StoreError`` once closed, ``RuntimeError`` if
        called from the loop itself)."""
        return self._loop.run(work)

    def close(self) -> None:
        """Close every connection and stop the loop's thread; later calls raise
        ``StoreError``. Idempotent."""
        self._loop.close(self._close)

    async def _close(self) -> None:
        for conn in list(self._held):
            await conn.close()
        await self._pool.close()

    @asynccontextmanager
    async def connection(
        self, what: str, timeout: float | None = None
    ) -> AsyncIterator[Connection]:
        """A connection for the block; the pool rolls back whatever it left open.
        ``what`` (e.g. "reading a decision") names the work in error messages;
        ``timeout`` (default: the pool's) bounds the wait for a connection."""
        wait = self._timeout if timeout is None else timeout
        try:
            conn = await self._getconn(wait)
        except PoolTimeout:
            raise StoreUnavailable(f"{DSN_KEY}: no database connection within {wait:g} s") from None
        except PoolClosed:
            raise StoreError("store is closed") from None
        try:
            yield conn
        except psycopg.Error as exc:
            raise query_error(exc, what) from None
        finally:
            await self._pool.putconn(conn)

    async def _getconn(self, wait: float) -> Connection:
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
                return await self._pool.getconn(
                    timeout=min(left, RECONNECT_SECONDS) if short else left
                )
            except PoolTimeout:
                if time.monotonic() >= deadline - 0.001:
                    raise

    @asynccontextmanager
    async def transaction(self, what: str) -> AsyncIterator[Cursor]:
        """One transaction for the block: committed at its end, rolled back if it raises."""
        async with self.connection(what) as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    @staticmethod
    @asynccontextmanager
    async def savepoint(cur: Cursor) -> AsyncIterator[None]:
        """A savepoint in ``cur``'s transaction for the block: a unique key violated in it
        is undone (the transaction goes on, e.g. to look up the row in the way) and
        raised as ``Conflict``."""
        try:
            async with cur.connection.transaction():
                yield
        except psycopg.errors.UniqueViolation:
            raise Conflict("a unique key is violated") from None

    @contextmanager
    def hold(self, what: str, *, snapshot: bool = False) -> Iterator[Held]:
        """A connection held for the block, in one transaction, for work that takes
        several :meth:`Held.run` calls (a stream read batch by batch, a COPY fed from the
        caller's iterator). Committed at the end of the block, rolled back if it raises.
        ``snapshot``: a read-only transaction that sees one snapshot throughout."""
        conn, stack = self.run(self._enter_held(what, snapshot))
        try:
            yield Held(self, conn, stack, what)
        except BaseException as exc:
            # The database may have gone away too: the first error is the one to report.
            with suppress(StoreError):
                self._loop.finish(_leave(stack, exc))
            raise
        self.run(stack.aclose())

    async def _enter_held(self, what: str, snapshot: bool) -> tuple[Connection, AsyncExitStack]:
        stack = AsyncExitStack()
        try:
            conn = await stack.enter_async_context(self.connection(what))
            self._held.add(conn)
            stack.callback(self._held.discard, conn)
            await stack.enter_async_context(conn.transaction())
            if snapshot:
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        except BaseException as exc:
            await _leave(stack, exc)
            raise
        return conn, stack


async def _leave(stack: AsyncExitStack, exc: BaseException) -> None:
    """Leave a held connection's contexts after ``exc`` (rolled back, given back)."""
    await stack.__aexit__(type(exc), exc, exc.__traceback__)


class Held:
    """A pooled connection held across several calls from one thread (:meth:`Pool.hold`).

    Each :meth:`run` is one trip to the database's loop, so the caller's own work (an
    iterator it consumes, rows it builds) happens in its thread between trips, never on
    the loop, and memory stays bounded by one batch.
    """

    def __init__(self, pool: Pool, conn: Connection, stack: AsyncExitStack, what: str) -> None:
        self.conn = conn
        self._pool = pool
        self._stack = stack
        self._what = what

    def run(self, work: Awaitable[T]) -> T:
        """Run ``work`` (on :attr:`conn`) on the loop; driver errors as ``StoreError``."""
        return self._pool.run(self._mapped(work))

    async def _mapped(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except psycopg.Error as exc:
            raise query_error(exc, self._what) from None

    def enter(self, context: AbstractAsyncContextManager[T]) -> T:
        """Enter ``context`` (a cursor, a COPY) until the held connection is let go; it is
        left before the transaction ends."""
        return self.run(self._stack.enter_async_context(context))

    def batches(self, cur: ServerCursor, size: int) -> Iterator[list[Row]]:
        """The rows of ``cur``'s query, ``size`` at a time, one trip to the loop each."""
        while batch := self.run(cur.fetchmany(size)):
            yield batch


async def _configure(conn: Connection) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")


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
