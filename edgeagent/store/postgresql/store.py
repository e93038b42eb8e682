"""``PostgresStore``: the :class:`edgeagent.store.base.Store` in a PostgreSQL database.

Several agents may use one database at once; the database, not the process, serialises
what must be serialised:

- Every change of desired state (a decision created or moved, a generation made live or
  held) first locks the one row of ``policy`` (``SELECT ... FOR UPDATE``) and bumps it in
  the same transaction. Taking that lock first, always, also fixes the lock order, so two
  writers cannot deadlock.
- Every audit append locks the one row of ``audit_head``, takes the next id and hash from
  it and writes row and head together: agents on one database extend one gapless chain.
- Decisions are written in batches (:meth:`PostgresStore.add_decisions`: two round trips
  and one commit for the whole batch, in pipeline mode), since a writer holding the policy
  lock waits on round trips and the commit, not on rows; the control API gathers the
  ``POST /v1/decisions`` that arrive together into one batch (:mod:`edgeagent.api.groupcommit`).
- Generations are written with binary ``COPY`` into a generation in the internal
  ``_loading`` state that no reader sees, in one transaction of its own; a last short
  transaction makes it live or held. Decisions and audit rows go on meanwhile. A crash
  leaves only an invisible ``_loading`` generation, removed by :meth:`prune_generations`.
- Long reads (streaming a generation, active decisions, verifying the chain) hold a
  pooled connection of their own for as long as the caller iterates, inside one snapshot.

The driver is psycopg 3's asyncio API, behind the synchronous store contract: the pool
(:class:`psycopg_pool.AsyncConnectionPool`) lives on an event loop of its own, in a daemon
thread (:mod:`.bridge`, :mod:`.connect`). Each public call runs its SQL there as one
coroutine, borrowing a pooled connection, while the caller's thread waits for the result;
a stream or a COPY holds its connection across several such trips, one batch each, so the
caller's own work happens in the caller's thread. A database that cannot be reached
raises :class:`edgeagent.errors.StoreUnavailable` naming ``store.dsn``.
Entry values never appear in exception messages: indicators are named by ``Indicator.ref``,
and server messages are cut to their primary text (the DETAIL line quotes rows).

The list of store backends imports this module with every config check, and the driver
is an optional extra: this module imports the driver modules (:mod:`.connect`,
:mod:`.schema`) only where a store is opened, never at import.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from edgeagent.configtypes import EnvName, Seconds, SecretFile, one_secret, read_secret
from edgeagent.deadline_clock import ClockMark
from edgeagent.errors import Conflict, InvalidTransition, NotFound, StoreError
from edgeagent.intake.base import (
    IntakeChannel,
    IntakeItem,
    IntakeState,
    NewIntakeItem,
    check_outcome,
)
from edgeagent.leadership import Leadership
from edgeagent.model import (
    Action,
    Decision,
    DecisionEvent,
    DecisionStatus,
    Entry,
    Indicator,
    NoticeSource,
    Scope,
)
from edgeagent.store import rows
from edgeagent.store.base import (
    OPEN_DECISION_STATUSES,
    AuditNote,
    AuditRecord,
    AuditVerification,
    DatabaseStatus,
    Generation,
    GenerationStatus,
    NewDecision,
    StoreBackend,
    StoreConfig,
    TargetSearch,
    Token,
    check_decision_transition,
    require_aware,
)
from edgeagent.store.chain import (
    AUDIT_COLUMNS,
    AuditRow,
    audit_record,
    canonical_json,
    next_row,
    utc_text,
    verify_chain,
)
from edgeagent.store.postgresql.bridge import bridged
from edgeagent.store.rows import DECISION_COLUMNS, GENERATION_COLUMNS, INTAKE_COLUMNS, LOADING
from edgeagent.takedown.ticketstore import TicketStorage

if TYPE_CHECKING:
    from psycopg import AsyncCopy

    from edgeagent.store.postgresql.connect import Cursor, Database, Pool, Row

_OPEN_STATUSES = [s.value for s in OPEN_DECISION_STATUSES]
_SCOPES = {s.value: s for s in Scope}
_ACTIONS = {a.value: a for a in Action}
_COPY_ENTRIES = (
    f"COPY generation_entries (generation_id, position, {rows.ENTRY_COLUMNS}) "
    "FROM STDIN (FORMAT BINARY)"
)
_COPY_TYPES = [
    "int8",
    "int4",
    "text",
    "text",
    "text",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "timestamptz",
]
_NEW_DECISION_COLUMNS = (
    "scope, value, action, actor, reason, reference, notice_source, notice_received_at, "
    "created_at, status, expires_at, category, hold, jurisdiction"
)
# A batch of decisions in one statement, one array per column. A row that an open
# decision is in the way of (the unique index decisions_one_open) is skipped, not an
# error: the caller answers it with a Conflict and the transaction goes on. The arrays
# go in binary (%b): quoting text arrays element by element costs more CPU than the rest.
_INSERT_DECISIONS = (
    f"INSERT INTO decisions ({_NEW_DECISION_COLUMNS}) SELECT * FROM unnest("
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::timestamptz[], %b::timestamptz[], %b::text[], %b::timestamptz[], %b::text[], "
    "%b::boolean[], %b::text[]) "
    "ON CONFLICT (scope, value, action) WHERE status IN ('active', 'pending-approval') "
    f"DO NOTHING RETURNING {DECISION_COLUMNS}"
)
_INSERT_EVENTS = (
    f"INSERT INTO decision_events ({rows.EVENT_COLUMNS}) SELECT * FROM "
    "unnest(%b::bigint[], %b::timestamptz[], %b::text[], %b::text[], %b::text[])"
)
_AUDIT_HEAD = "SELECT last_id, last_hash FROM audit_head WHERE id = 1"
_LOCK_AUDIT_HEAD = f"{_AUDIT_HEAD} FOR UPDATE"
_APPEND_AUDIT = (
    f"WITH appended AS (INSERT INTO audit ({AUDIT_COLUMNS}) SELECT * FROM unnest("
    "%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::text[])) UPDATE audit_head SET last_id = %s, last_hash = %s WHERE id = 1"
)
POLICY_CHANNEL = "edgeagent_policy"
"""The NOTIFY channel of committed policy changes (the payload is the new version)."""
_MAX_ENTRIES = (1 << 31) - 1  # position is an int4
_STREAM_ROWS = 10_000  # rows per round trip of a streaming read
# Rows per trip of a COPY to the loop: each trip keeps the loop busy formatting them, so
# few enough that other calls queued on the loop wait a few milliseconds at most.
_COPY_ROWS = 2_000


def _dsn(value: str) -> str:
    try:
        from psycopg import Error as DriverError
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        raise ValueError(
            "the PostgreSQL driver is not installed (pip install 'edgeagent[postgresql]')"
        ) from None
    try:
        params = conninfo_to_dict(value)
    except DriverError:
        # libpq's reason quotes the text it stumbled on: keep it out of the message.
        raise ValueError(
            "not a libpq connection string (key=value pairs or a postgresql:// URI)"
        ) from None
    if "password" in params:
        raise ValueError("must not hold a password: use store.password_file or store.password_env")
    return value


Dsn = Annotated[str, Field(min_length=1), AfterValidator(_dsn)]


class PostgresStoreConfig(StoreConfig):
    """``[store]`` with ``backend = "postgresql"``.

    ``dsn`` is a libpq connection string or URI, e.g. ``host=db1,db2 port=5432,5432
    dbname=edgeagent user=edgeagent target_session_attrs=read-write`` (libpq tries the
    hosts in turn and keeps the writable one). The password comes from ``password_file``
    or ``password_env`` (or neither, for peer or certificate login), read at every new
    connection so a rotated password is picked up.
    """

    backend: Literal["postgresql"]
    dsn: Dsn
    password_file: SecretFile | None = None
    password_env: EnvName | None = None
    pool_min_size: Annotated[int, Field(ge=1)] = 1
    pool_max_size: Annotated[int, Field(ge=2)] = 10
    connect_timeout_seconds: Seconds = 10.0
    # How often a standby tries the leader lock (and the leader checks it still holds it).
    leader_poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    # The server ends a leader session silent this long (a paused or hung agent), which
    # releases the lock for a standby.
    leader_session_timeout_seconds: Annotated[float, Field(ge=1, le=3600)] = 5.0

    @model_validator(mode="after")
    def _consistent(self) -> PostgresStoreConfig:
        one_secret(self, "password", required=False)
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        if self.leader_session_timeout_seconds < 3 * self.leader_poll_seconds:
            raise ValueError(
                "leader_session_timeout_seconds must be at least 3 x leader_poll_seconds "
                "(or a live leader loses its session between two polls)"
            )
        return self

    def password(self) -> str | None:
        """The password now (``None`` when the login needs none)."""
        if self.password_file is None and self.password_env is None:
            return None
        return read_secret(self.password_file, self.password_env)

    def location(self, state_dir: Path) -> str:
        """Where the store is, for a summary (the connection string holds no password)."""
        return self.dsn


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _as_is(value: datetime) -> datetime:
    """Timestamps come back as UTC datetimes already (the session's TimeZone is UTC)."""
    return value


class PostgresStore(StoreBackend[PostgresStoreConfig]):
    """PostgreSQL implementation of :class:`edgeagent.store.base.Store`.

    Opening migrates the schema (:mod:`.schema`) over a first connection, which is also
    where a wrong password or an unreachable host is reported, then opens the pool.
    ``clock`` supplies "now" (tests inject a fixed clock).

    The methods are synchronous (the contract), their SQL asynchronous: a ``@bridged``
    method is a coroutine that runs on the pool's event loop, its caller's thread waiting
    for the result; the ``async`` helpers it awaits take the transaction's cursor.
    """

    KIND = "postgresql"
    Config = PostgresStoreConfig

    @classmethod
    def from_config(cls, config: PostgresStoreConfig, state_dir: Path) -> PostgresStore:
        """The store in the database ``config`` names (the state directory is not used)."""
        from edgeagent.store.postgresql.connect import Database

        return cls(Database.from_config(config))

    @classmethod
    def open_ticket_store(cls, config: PostgresStoreConfig, state_dir: Path) -> TicketStorage:
        """The ``tickets`` table of the same database: every agent on it sees one set of
        tickets (the state directory is not used)."""
        from edgeagent.store.postgresql.tickets import PostgresTicketStore

        return PostgresTicketStore.from_config(config)

    @classmethod
    def open_leadership(cls, config: PostgresStoreConfig, state_dir: Path) -> Leadership:
        """The advisory-lock leadership on the same database (several agents share it)."""
        from edgeagent.store.postgresql.connect import Database
        from edgeagent.store.postgresql.leader import LockLeadership

        return LockLeadership(
            Database.from_config(config),
            poll_seconds=config.leader_poll_seconds,
            session_timeout_seconds=config.leader_session_timeout_seconds,
        )

    def __init__(self, database: Database, *, clock: Callable[[], datetime] = _utcnow) -> None:
        from edgeagent.store.postgresql.schema import open_pool

        self._clock = clock
        self._pool: Pool = open_pool(database, "edgeagent-store")

    # --- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the pool and stop its loop; later calls raise ``StoreError``. Idempotent."""
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self, what: str) -> AbstractAsyncContextManager[Cursor]:
        """One transaction on a pooled connection; rolls back on any exception."""
        return self._pool.transaction(what)

    def _now(self) -> datetime:
        return require_aware(self._clock())

    def database_status(self, timeout: float) -> DatabaseStatus:
        """The primary written to, its standbys and their lag (:mod:`.status`)."""
        from edgeagent.store.postgresql.status import database_status

        return database_status(self._pool, timeout)

    @bridged
    async def schema_version(self) -> int:
        """The schema version of the database (``schema.CURRENT_VERSION``)."""
        from edgeagent.store.postgresql.schema import schema_version

        async with self._pool.connection("reading the schema version") as conn:
            return await schema_version(conn)

    @bridged
    async def policy_version(self) -> int:
        """Counter bumped with every change of desired state."""
        async with self._tx("reading the policy version") as cur:
            return int((await _one(cur, "SELECT version FROM policy WHERE id = 1"))[0])

    @staticmethod
    async def _lock_policy(cur: Cursor) -> None:
        """Serialise changes of desired state; taken first in every such transaction."""
        await cur.execute("SELECT version FROM policy WHERE id = 1 FOR UPDATE")

    @staticmethod
    async def _bump_policy(cur: Cursor) -> None:
        # The NOTIFY is delivered when (and only if) the transaction commits: every agent
        # LISTENing learns of the new version at once (edgeagent.store.postgresql.leader).
        await cur.execute(
            "WITH bumped AS (UPDATE policy SET version = version + 1 WHERE id = 1 "
            "RETURNING version) SELECT pg_notify(%s, version::text) FROM bumped",
            (POLICY_CHANNEL,),
        )

    # --- feed generations ---------------------------------------------------------------

    @staticmethod
    async def _get_generation(cur: Cursor, generation_id: int, *, lock: bool = False) -> Generation:
        row = await _fetchone(
            cur,
            f"SELECT {GENERATION_COLUMNS} FROM generations WHERE id = %s AND status != %s"
            + (" FOR UPDATE" if lock else ""),
            (generation_id, LOADING),
        )
        if row is None:
            raise NotFound("generation", str(generation_id))
        return rows.generation(row, _as_is)

    def add_generation(
        self,
        feed: str,
        entries: Iterable[Entry],
        *,
        status: GenerationStatus,
        serial: str = "",
        hold_reason: str = "",
        meta: Mapping[str, Any] | None = None,
    ) -> Generation:
        """Store a snapshot of ``feed`` as ``live`` or ``held`` (entries written with COPY).

        ``LIVE`` supersedes the previous live generation, discards a held one and bumps
        ``policy_version``, all in one transaction; ``HELD`` discards an earlier held one
        and leaves the live one alone. Entries are consumed once, streaming; if the
        iterable raises, nothing becomes visible and the exception propagates.
        """
        status = rows.new_generation_status(status)
        meta_json = canonical_json(meta or {})
        gen_id = self._pool.run(self._new_loading(feed, serial, hold_reason, meta_json))
        try:
            count = self._copy_entries(gen_id, entries)
            return self._pool.run(self._finish_generation(feed, gen_id, status, count))
        except BaseException:
            self._drop_loading(gen_id)
            raise

    async def _new_loading(self, feed: str, serial: str, hold_reason: str, meta_json: str) -> int:
        """A new generation in the ``_loading`` state, which no reader sees."""
        now = self._now()
        async with self._tx("creating a generation") as cur:
            row = await _one(
                cur,
                "INSERT INTO generations (feed, status, created_at, status_changed_at, "
                "serial, hold_reason, meta) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (feed, LOADING, now, now, serial, hold_reason, meta_json),
            )
        return int(row[0])

    async def _finish_generation(
        self, feed: str, gen_id: int, status: GenerationStatus, count: int
    ) -> Generation:
        """Make the loaded generation ``status``, moving the feed's slots out of its way."""
        async with self._tx("finishing a generation") as cur:
            await self._lock_policy(cur)
            changed = self._now()
            await self._clear_slot(cur, feed, GenerationStatus.HELD, changed)
            if status is GenerationStatus.LIVE:
                await self._clear_slot(cur, feed, GenerationStatus.LIVE, changed)
            await cur.execute(
                "UPDATE generations SET status = %s, entry_count = %s, "
                "status_changed_at = %s WHERE id = %s AND status = %s",
                (status.value, count, changed, gen_id, LOADING),
            )
            if cur.rowcount != 1:
                raise StoreError(f"generation {gen_id} of feed {feed} vanished while loading")
            if status is GenerationStatus.LIVE:
                await self._bump_policy(cur)
            return await self._get_generation(cur, gen_id)

    def _copy_entries(self, gen_id: int, entries: Iterable[Entry]) -> int:
        """COPY the entries into ``gen_id`` in one transaction; return how many.

        ``entries`` is consumed in the caller's thread (it may read a file, or the store),
        the rows go to the loop in batches of ``_COPY_ROWS``: the COPY holds one
        connection, while other calls go on beside it on the loop between batches.
        """
        n = 0
        with self._pool.hold("copying generation entries") as held:
            cur = held.enter(held.conn.cursor())
            copy = held.enter(cur.copy(_COPY_ENTRIES))
            copy.set_types(_COPY_TYPES)
            batch: list[tuple[Any, ...]] = []
            checked: datetime | None = None  # feeds stamp every entry with one object
            for n, e in enumerate(entries, 1):
                if n > _MAX_ENTRIES:
                    raise StoreError(f"a generation holds at most {_MAX_ENTRIES} entries")
                ind = e.indicator
                first, last, expires = e.first_seen, e.last_seen, e.expires_at
                if first is not None and first is not checked:
                    checked = require_aware(first)
                if last is not None and last is not checked:
                    checked = require_aware(last)
                if expires is not None and expires is not checked:
                    checked = require_aware(expires)
                batch.append(
                    (
                        gen_id,
                        n,
                        ind.scope,  # a StrEnum: dumped as its text
                        ind.value,
                        e.action,
                        e.category,
                        e.reference,
                        first,
                        last,
                        expires,
                    )
                )
                if len(batch) == _COPY_ROWS:
                    held.run(_write_rows(copy, batch))
                    batch = []
            if batch:
                held.run(_write_rows(copy, batch))
        return n

    def _drop_loading(self, gen_id: int) -> None:
        """Best-effort removal of a generation whose ingest failed (else pruned later)."""
        with suppress(StoreError):
            self._pool.run(self._drop_generation(gen_id))

    async def _drop_generation(self, gen_id: int) -> None:
        async with self._tx("dropping a failed generation") as cur:
            await self._delete_generation(cur, gen_id)

    @staticmethod
    async def _delete_generation(cur: Cursor, gen_id: int) -> None:
        await cur.execute("DELETE FROM generation_entries WHERE generation_id = %s", (gen_id,))
        await cur.execute("DELETE FROM generations WHERE id = %s", (gen_id,))

    @staticmethod
    async def _clear_slot(
        cur: Cursor, feed: str, slot: GenerationStatus, changed: datetime
    ) -> None:
        """Move the feed's live generation to superseded, or its held one to discarded."""
        await cur.execute(
            "UPDATE generations SET status = %s, status_changed_at = %s "
            "WHERE feed = %s AND status = %s",
            (rows.SLOT_SUCCESSOR[slot].value, changed, feed, slot.value),
        )

    def live_generation(self, feed: str) -> Generation | None:
        """The feed's live generation, or ``None`` if it never had one."""
        return self._slot(feed, GenerationStatus.LIVE)

    def held_generation(self, feed: str) -> Generation | None:
        """The feed's generation waiting for a supervisor, if any."""
        return self._slot(feed, GenerationStatus.HELD)

    @bridged
    async def _slot(self, feed: str, status: GenerationStatus) -> Generation | None:
        async with self._tx("reading a generation") as cur:
            row = await _fetchone(
                cur,
                f"SELECT {GENERATION_COLUMNS} FROM generations WHERE feed = %s AND status = %s",
                (feed, status.value),
            )
        return None if row is None else rows.generation(row, _as_is)

    @bridged
    async def get_generation(self, generation_id: int) -> Generation:
        """One generation by id; ``NotFound`` if unknown, pruned or still loading."""
        async with self._tx("reading a generation") as cur:
            return await self._get_generation(cur, generation_id)

    @bridged
    async def generations(self, feed: str) -> list[Generation]:
        """Every visible generation of ``feed``, newest first."""
        async with self._tx("listing generations") as cur:
            found = await _fetchall(
                cur,
                f"SELECT {GENERATION_COLUMNS} FROM generations WHERE feed = %s AND status != %s "
                "ORDER BY id DESC",
                (feed, LOADING),
            )
        return [rows.generation(r, _as_is) for r in found]

    def generation_entries(self, generation_id: int) -> Iterator[Entry]:
        """Stream a generation's entries in insertion order; ``source`` is the feed name.

        Raises ``NotFound`` at once for an unknown generation. Rows come through a
        server-side cursor on a connection the stream holds until it is exhausted or
        discarded, ``_STREAM_ROWS`` per trip to the loop, never all in memory.
        """
        gen = self.get_generation(generation_id)
        return self._stream_entries(gen.id, gen.feed)

    def _stream_entries(self, gen_id: int, feed: str) -> Iterator[Entry]:
        scopes, actions = _SCOPES, _ACTIONS
        # A feed's entries share a handful of categories: one string object each.
        categories: dict[str, str] = {}
        with self._pool.hold(f"reading generation {gen_id}") as held:
            # Binary rows: timestamps arrive as integers, not text to parse (~20% faster).
            cur = held.enter(held.conn.cursor(name=f"generation_{gen_id}", binary=True))
            held.run(
                cur.execute(
                    f"SELECT {rows.ENTRY_COLUMNS} FROM generation_entries "
                    "WHERE generation_id = %s ORDER BY position",
                    (gen_id,),
                )
            )
            for batch in held.batches(cur, _STREAM_ROWS):
                for scope, value, action, category, reference, first, last, expires in batch:
                    yield Entry(
                        Indicator(scopes[scope], value),
                        actions[action],
                        feed,
                        categories.setdefault(category, category),
                        reference,
                        first,
                        last,
                        expires,
                    )

    @bridged
    async def promote_generation(self, generation_id: int) -> Generation:
        """Make a held generation live; the old live one becomes superseded."""
        async with self._tx("promoting a generation") as cur:
            await self._lock_policy(cur)
            gen = await self._get_generation(cur, generation_id, lock=True)
            if gen.status is not GenerationStatus.HELD:
                allowed = ["discarded"] if gen.status is GenerationStatus.SUPERSEDED else []
                raise InvalidTransition(gen.status.value, GenerationStatus.LIVE.value, allowed)
            changed = self._now()
            await self._clear_slot(cur, gen.feed, GenerationStatus.LIVE, changed)
            await cur.execute(
                "UPDATE generations SET status = %s, status_changed_at = %s WHERE id = %s",
                (GenerationStatus.LIVE.value, changed, generation_id),
            )
            await self._bump_policy(cur)
            return await self._get_generation(cur, generation_id)

    @bridged
    async def discard_generation(self, generation_id: int) -> Generation:
        """Discard a held (or superseded) generation. The live one cannot be discarded:
        the last good snapshot stays until a newer one replaces it. Idempotent."""
        async with self._tx("discarding a generation") as cur:
            gen = await self._get_generation(cur, generation_id, lock=True)
            if gen.status is GenerationStatus.DISCARDED:
                return gen
            if gen.status is GenerationStatus.LIVE:
                raise InvalidTransition(gen.status.value, GenerationStatus.DISCARDED.value, [])
            await cur.execute(
                "UPDATE generations SET status = %s, status_changed_at = %s WHERE id = %s",
                (GenerationStatus.DISCARDED.value, self._now(), generation_id),
            )
            return await self._get_generation(cur, generation_id)

    @bridged
    async def prune_generations(
        self, feed: str, keep: int, *, stale_loading_after: timedelta = timedelta(hours=1)
    ) -> int:
        """Delete all but the ``keep`` newest superseded/discarded generations of ``feed``
        (with their entries), plus ingests abandoned longer than ``stale_loading_after``.

        Live and held generations are never touched. Returns how many were deleted. Each
        generation goes in its own transaction so other writers are not held up long.
        """
        if keep < 0:
            raise StoreError("keep must be >= 0")
        stale_before = self._now() - stale_loading_after
        async with self._tx("listing generations to prune") as cur:
            superseded = await _fetchall(
                cur,
                "SELECT id FROM generations WHERE feed = %s AND status IN (%s, %s) "
                "ORDER BY id DESC OFFSET %s",
                (feed, GenerationStatus.SUPERSEDED.value, GenerationStatus.DISCARDED.value, keep),
            )
            stale = await _fetchall(
                cur,
                "SELECT id FROM generations WHERE feed = %s AND status = %s AND created_at < %s",
                (feed, LOADING, stale_before),
            )
        deleted = 0
        for (gen_id,) in superseded + stale:
            async with self._tx("pruning a generation") as cur:
                # Re-check under the row lock: never delete something made live since.
                row = await _fetchone(
                    cur, "SELECT status FROM generations WHERE id = %s FOR UPDATE", (gen_id,)
                )
                if row is None or row[0] in (
                    GenerationStatus.LIVE.value,
                    GenerationStatus.HELD.value,
                ):
                    continue
                await self._delete_generation(cur, int(gen_id))
                deleted += 1
        return deleted

    @bridged
    async def feeds(self) -> list[str]:
        """Names of every feed with at least one visible generation, sorted."""
        async with self._tx("listing feeds") as cur:
            found = await _fetchall(
                cur,
                "SELECT DISTINCT feed FROM generations WHERE status != %s ORDER BY feed",
                (LOADING,),
            )
        return [str(r[0]) for r in found]

    # --- decisions ----------------------------------------------------------------------

    @staticmethod
    async def _load_decisions(cur: Cursor, found: Sequence[Sequence[Any]]) -> list[Decision]:
        """Build decisions (with their histories) from ``DECISION_COLUMNS`` rows."""
        history: dict[int, list[DecisionEvent]] = {int(r[0]): [] for r in found}
        if history:
            for row in await _fetchall(
                cur,
                f"SELECT {rows.EVENT_COLUMNS} FROM decision_events "
                "WHERE decision_id = ANY(%s) ORDER BY id",
                (list(history),),
            ):
                did, ev = rows.event(row, _as_is)
                history[did].append(ev)
        return [rows.decision(r, history[int(r[0])], _as_is) for r in found]

    async def _get_decision(self, cur: Cursor, decision_id: int) -> Decision:
        row = await _fetchone(
            cur, f"SELECT {DECISION_COLUMNS} FROM decisions WHERE id = %s", (decision_id,)
        )
        if row is None:
            raise NotFound("decision", str(decision_id))
        return (await self._load_decisions(cur, [row]))[0]

    def add_decision(self, new: NewDecision, audit: AuditNote | None = None) -> Decision:
        """Record a decision (``active`` or ``pending-approval``) and its first event.

        Raise ``Conflict`` if an active or pending decision has the same indicator and
        action (a unique partial index enforces it for every writer). An active decision
        bumps ``policy_version`` in the same transaction; ``audit`` is written in it too.
        """
        (stored,) = self.add_decisions([(new, audit)])
        if isinstance(stored, Conflict):
            raise stored
        return stored

    @bridged
    async def add_decisions(
        self, batch: Sequence[tuple[NewDecision, AuditNote | None]]
    ) -> list[Decision | Conflict]:
        """Record every decision of ``batch`` in one transaction; a duplicate is answered
        by its ``Conflict`` in its place, any other error stores none of them.

        Two round trips whatever the batch size (pipeline mode; rows go as arrays through
        ``unnest``): one brings back what the rows must know (their ids, the audit chain's
        head), the other carries the rest and the commit. A writer holds the policy lock
        for round trips and a commit, not for rows, so many decisions cost about what one
        does. A duplicate costs one more round trip, to name the decision in its way.
        """
        for new, _ in batch:  # refuse bad input before anything is written
            if new.status not in OPEN_DECISION_STATUSES:
                raise InvalidTransition("new", new.status.value, _OPEN_STATUSES)
            require_aware(new.notice_received_at)
            if new.expires_at is not None:
                require_aware(new.expires_at)
        if not batch:
            return []
        # A later duplicate of an earlier row of the batch is a Conflict, like a row that
        # is stored already: only first occurrences are offered to the database.
        first: dict[tuple[str, str, str], int] = {}
        for i, (new, _) in enumerate(batch):
            first.setdefault(_open_key(new), i)
        offered = [batch[i][0] for i in sorted(first.values())]
        now = self._now().astimezone(UTC)
        async with (
            self._pool.connection("recording decisions") as conn,
            conn.pipeline(),
            conn.transaction(),
            conn.cursor() as cur,
        ):
            await self._lock_policy(cur)
            inserted = await conn.execute(_INSERT_DECISIONS, _decision_columns(offered, now))
            head = await conn.execute(_LOCK_AUDIT_HEAD)
            stored: dict[tuple[str, str, str], Decision] = {}
            for row in await inserted.fetchall():  # the first sync
                event = DecisionEvent(now, row[4], DecisionStatus(row[10]), row[5])
                made = rows.decision(row, [event], _as_is)
                stored[_open_key(made)] = made
            last_id, last_hash = _one_row(await head.fetchone())
            # What each Conflict names: the batch's own decision, else the stored one.
            in_the_way = {key: (d.id, d.status.value) for key, d in stored.items()}
            missing = [new for new, _ in batch if _open_key(new) not in stored]
            if missing:
                in_the_way |= await self._open_decisions(cur, missing)
            done: list[Decision | Conflict] = []
            notes: list[AuditNoteOf] = []
            for i, (new, audit) in enumerate(batch):
                key = _open_key(new)
                decision = stored.get(key)
                if decision is None or first[key] != i:
                    done.append(_duplicate(new, in_the_way.get(key)))
                    continue
                done.append(decision)
                if audit is not None:  # same transaction: no decision without its audit row
                    notes.append((new.actor, audit.action, f"decision:{decision.id}", audit.detail))
            if stored:
                await cur.execute(_INSERT_EVENTS, _event_columns(stored.values()))
            if notes:
                await cur.execute(
                    _APPEND_AUDIT, _append_params(_chain(last_id, last_hash, now, notes))
                )
            if any(d.status is DecisionStatus.ACTIVE for d in stored.values()):
                await self._bump_policy(cur)
        return done

    @staticmethod
    async def _open_decisions(
        cur: Cursor, wanted: Sequence[NewDecision]
    ) -> dict[tuple[str, str, str], tuple[int, str]]:
        """``(id, status)`` of the open decision with each key of ``wanted``, where one is."""
        found = await _fetchall(
            cur,
            "SELECT scope, value, action, id, status FROM decisions "
            "WHERE status = ANY(%s) AND (scope, value, action) IN "
            "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))",
            (
                _OPEN_STATUSES,
                [n.indicator.scope.value for n in wanted],
                [n.indicator.value for n in wanted],
                [n.action.value for n in wanted],
            ),
        )
        return {(r[0], r[1], r[2]): (int(r[3]), str(r[4])) for r in found}

    @bridged
    async def get_decision(self, decision_id: int) -> Decision:
        """One decision with its full history; ``NotFound`` if unknown."""
        async with self._tx("reading a decision") as cur:
            return await self._get_decision(cur, decision_id)

    @bridged
    async def list_decisions(
        self,
        *,
        status: DecisionStatus | None = None,
        source: NoticeSource | None = None,
        scope: str | None = None,
        reference: str | None = None,
        target: TargetSearch | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[Decision]:
        """Decisions matching every given filter, oldest first (by id), with histories."""
        if limit < 0 or offset < 0:
            raise StoreError("limit and offset must be >= 0")
        filters = rows.decision_filters(status, source, scope, reference)
        terms = [f"{column} = %s" for column, _ in filters]
        params = [value for _, value in filters]
        if target is not None:
            condition, values = rows.target_condition(target, "%s")
            terms.append(condition)
            params += values
        async with self._tx("listing decisions") as cur:
            found = await _fetchall(
                cur,
                f"SELECT {DECISION_COLUMNS} FROM decisions WHERE {' AND '.join(terms) or 'true'} "
                "ORDER BY id LIMIT %s OFFSET %s",
                (*params, limit, offset),
            )
            return await self._load_decisions(cur, found)

    @bridged
    async def count_decisions(self, *, status: DecisionStatus | None = None) -> int:
        """How many decisions have ``status`` (all of them if ``None``)."""
        async with self._tx("counting decisions") as cur:
            if status is None:
                return int((await _one(cur, "SELECT count(*) FROM decisions"))[0])
            return int(
                (
                    await _one(
                        cur, "SELECT count(*) FROM decisions WHERE status = %s", (status.value,)
                    )
                )[0]
            )

    @bridged
    async def set_decision_status(
        self,
        decision_id: int,
        status: DecisionStatus,
        *,
        actor: str,
        reason: str,
        approved_by: str | None = None,
        audit: AuditNote | None = None,
    ) -> Decision:
        """Move a decision to ``status`` and append the event to its history.

        Allowed moves: :data:`edgeagent.store.base.DECISION_TRANSITIONS`; anything else
        raises ``InvalidTransition``. Entering or leaving ``active`` bumps
        ``policy_version``. ``approved_by`` is recorded when given.
        """
        status = DecisionStatus(status)
        async with self._tx("changing a decision") as cur:
            await self._lock_policy(cur)
            row = await _fetchone(
                cur, "SELECT status FROM decisions WHERE id = %s FOR UPDATE", (decision_id,)
            )
            if row is None:
                raise NotFound("decision", str(decision_id))
            await self._transition(
                cur, decision_id, DecisionStatus(row[0]), status, actor=actor, reason=reason
            )
            if approved_by is not None:
                await cur.execute(
                    "UPDATE decisions SET approved_by = %s WHERE id = %s",
                    (approved_by, decision_id),
                )
            if audit is not None:
                await self._audit_in(
                    cur, actor, audit.action, f"decision:{decision_id}", audit.detail
                )
            return await self._get_decision(cur, decision_id)

    async def _transition(
        self,
        cur: Cursor,
        decision_id: int,
        current: DecisionStatus,
        status: DecisionStatus,
        *,
        actor: str,
        reason: str,
    ) -> None:
        changes_policy = check_decision_transition(current, status)
        await cur.execute(
            "UPDATE decisions SET status = %s WHERE id = %s", (status.value, decision_id)
        )
        await cur.execute(
            "INSERT INTO decision_events (decision_id, at, actor, status, reason) "
            "VALUES (%s, %s, %s, %s, %s)",
            (decision_id, self._now(), actor, status.value, reason),
        )
        if changes_policy:
            await self._bump_policy(cur)

    @bridged
    async def expire_due_decisions(
        self, now: datetime | None = None, *, actor: str = "system"
    ) -> list[Decision]:
        """Mark active decisions whose ``expires_at`` is at or before ``now`` as expired
        (one transaction, one event each); return them."""
        cutoff = require_aware(now) if now is not None else self._now()
        async with self._tx("expiring decisions") as cur:
            await self._lock_policy(cur)
            due = await _fetchall(
                cur,
                "SELECT id FROM decisions WHERE status = %s AND expires_at <= %s "
                "ORDER BY id FOR UPDATE",
                (DecisionStatus.ACTIVE.value, cutoff),
            )
            ids = [int(r[0]) for r in due]
            for did in ids:
                await self._transition(
                    cur,
                    did,
                    DecisionStatus.ACTIVE,
                    DecisionStatus.EXPIRED,
                    actor=actor,
                    reason="expired",
                )
            found = await _fetchall(
                cur,
                f"SELECT {DECISION_COLUMNS} FROM decisions WHERE id = ANY(%s) ORDER BY id",
                (ids,),
            )
            return await self._load_decisions(cur, found)

    @bridged
    async def due_decisions(self, now: datetime) -> list[Decision]:
        async with self._tx("reading due decisions") as cur:
            found = await _fetchall(
                cur,
                f"SELECT {DECISION_COLUMNS} FROM decisions WHERE status = %s "
                "AND expires_at <= %s ORDER BY id",
                (DecisionStatus.ACTIVE.value, require_aware(now)),
            )
            return await self._load_decisions(cur, found)

    def active_decisions(self) -> Iterator[Decision]:
        """Stream every active decision (with history) from one read snapshot."""
        if self._pool.closed:
            raise StoreError("store is closed")
        return self._stream_active()

    def _stream_active(self) -> Iterator[Decision]:
        with self._pool.hold("reading active decisions", snapshot=True) as held:
            decisions = held.enter(held.conn.cursor(name="active_decisions"))
            events = held.enter(held.conn.cursor())
            held.run(
                decisions.execute(
                    f"SELECT {DECISION_COLUMNS} FROM decisions WHERE status = %s ORDER BY id",
                    (DecisionStatus.ACTIVE.value,),
                )
            )
            for chunk in held.batches(decisions, 500):
                yield from held.run(self._load_decisions(events, chunk))

    # --- audit --------------------------------------------------------------------------

    @bridged
    async def append_audit(
        self, actor: str, action: str, subject: str, detail: Mapping[str, Any] | None = None
    ) -> AuditRecord:
        """Append one row to the hash chain (durable when this returns).

        ``subject`` names an object (``decision:12``, ``feed:iwf``), never a plain entry.
        """
        async with self._tx("appending to the audit log") as cur:
            return await self._audit_in(cur, actor, action, subject, detail)

    async def _audit_in(
        self,
        cur: Cursor,
        actor: str,
        action: str,
        subject: str,
        detail: Mapping[str, Any] | None,
    ) -> AuditRecord:
        """Append one audit row inside the caller's transaction (:meth:`_audit_many`)."""
        return (await self._audit_many(cur, [(actor, action, subject, detail)]))[0]

    async def _audit_many(self, cur: Cursor, notes: Sequence[AuditNoteOf]) -> list[AuditRecord]:
        """Append ``(actor, action, subject, detail)`` rows inside the caller's transaction,
        in order, under the head row's lock: every agent on the database extends the same
        chain. The rows and the new head go in one statement."""
        last_id, last_hash = await _one(cur, _LOCK_AUDIT_HEAD)
        made = _chain(last_id, last_hash, self._now(), notes)
        await cur.execute(_APPEND_AUDIT, _append_params(made))
        return [audit_record(r) for r in made]

    @bridged
    async def audit_since(
        self, since: datetime | None = None, limit: int = 1000
    ) -> list[AuditRecord]:
        """Audit rows from the first one written at or after ``since`` on (all if
        ``None``), in the order written, at most ``limit``. The order decides, not the
        timestamps: a row written after a step back of the clock is still returned."""
        if limit < 0:
            raise StoreError("limit must be >= 0")
        async with self._tx("reading the audit log") as cur:
            found = await _fetchall(
                cur,
                f"SELECT {AUDIT_COLUMNS} FROM audit WHERE id >= (SELECT id FROM audit "
                f"WHERE at >= %s ORDER BY id LIMIT 1) ORDER BY id LIMIT %s",
                ("" if since is None else utc_text(since), limit),
            )
        return [audit_record(r) for r in found]

    def verify_audit(self) -> AuditVerification:
        """Recompute the whole chain from one snapshot (:func:`chain.verify_chain`); name
        the first row that fails. Every agent on the database gives the same answer. The
        rows come ``_STREAM_ROWS`` per trip to the loop and are checked in this thread."""
        with self._pool.hold("reading the audit log", snapshot=True) as held:
            head = held.run(_fetchone(held.enter(held.conn.cursor()), _AUDIT_HEAD))
            cur = held.enter(held.conn.cursor(name="verify_audit"))
            held.run(cur.execute(f"SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id"))
            return verify_chain(
                itertools.chain.from_iterable(held.batches(cur, _STREAM_ROWS)), head
            )

    @bridged
    async def audit_head(self) -> tuple[int, str]:
        """``(last_id, last_hash)`` of the chain: publish it elsewhere as an anchor."""
        async with self._tx("reading the audit head") as cur:
            row = await _fetchone(cur, _AUDIT_HEAD)
        return (0, "") if row is None else (int(row[0]), str(row[1]))

    # --- the intake triage queue ---------------------------------------------------------

    @bridged
    async def add_intake_item(self, new: NewIntakeItem, audit: AuditNote) -> IntakeItem:
        """Queue ``new`` as pending with its audit row; ``Conflict`` on a reused reference."""
        async with self._tx("queueing an intake item") as cur:
            try:
                async with self._pool.savepoint(cur):
                    row = await _fetchone(
                        cur,
                        "INSERT INTO intake_items (reference, channel, state, created_at, body) "
                        f"VALUES (%s, %s, %s, %s, %s) RETURNING {INTAKE_COLUMNS}",
                        (
                            new.reference,
                            new.channel.value,
                            IntakeState.PENDING.value,
                            self._now(),
                            new.content.to_json(),
                        ),
                    )
            except Conflict:
                raise Conflict("an intake item with this reference exists") from None
            item = rows.intake_item(_one_row(row), _as_is)
            await self._audit_in(
                cur, "intake", audit.action, rows.intake_subject(item.id), audit.detail
            )
        return item

    @staticmethod
    async def _get_intake(cur: Cursor, item_id: int, *, lock: bool = False) -> IntakeItem:
        row = await _fetchone(
            cur,
            f"SELECT {INTAKE_COLUMNS} FROM intake_items WHERE id = %s"
            + (" FOR UPDATE" if lock else ""),
            (item_id,),
        )
        if row is None:
            raise NotFound("intake item", str(item_id))
        return rows.intake_item(row, _as_is)

    @bridged
    async def get_intake_item(self, item_id: int) -> IntakeItem:
        """One item; ``NotFound`` if unknown."""
        async with self._tx("reading an intake item") as cur:
            return await self._get_intake(cur, item_id)

    @bridged
    async def list_intake_items(
        self,
        *,
        state: IntakeState | None = None,
        channel: IntakeChannel | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[IntakeItem]:
        """Items matching the given filters, newest first."""
        if limit < 0 or offset < 0:
            raise StoreError("limit and offset must be >= 0")
        filters = rows.intake_filters(state, channel)
        clause = " AND ".join(f"{column} = %s" for column, _ in filters)
        async with self._tx("listing intake items") as cur:
            found = await _fetchall(
                cur,
                f"SELECT {INTAKE_COLUMNS} FROM intake_items WHERE {clause or 'true'} "
                "ORDER BY id DESC LIMIT %s OFFSET %s",
                (*(value for _, value in filters), limit, offset),
            )
        return [rows.intake_item(r, _as_is) for r in found]

    @bridged
    async def decide_intake_item(
        self,
        item_id: int,
        state: IntakeState,
        *,
        actor: str,
        reason: str,
        decision_ids: Iterable[int] = (),
        audit: AuditNote,
    ) -> IntakeItem:
        """Move a pending item to its outcome, once (the row is locked while checking);
        the audit row in the same transaction."""
        async with self._tx("deciding an intake item") as cur:
            item = await self._get_intake(cur, item_id, lock=True)
            check_outcome(item.channel, item.state, state)
            row = await _fetchone(
                cur,
                "UPDATE intake_items SET state = %s, decided_at = %s, decided_by = %s, "
                f"reason = %s, decision_ids = %s WHERE id = %s RETURNING {INTAKE_COLUMNS}",
                (
                    state.value,
                    self._now(),
                    actor,
                    reason,
                    rows.decision_ids_json(decision_ids),
                    item_id,
                ),
            )
            await self._audit_in(
                cur, actor, audit.action, rows.intake_subject(item_id), audit.detail
            )
        return rows.intake_item(_one_row(row), _as_is)

    @bridged
    async def count_intake_items(self) -> dict[tuple[IntakeChannel, IntakeState], int]:
        """Items per (channel, state)."""
        async with self._tx("counting intake items") as cur:
            found = await _fetchall(
                cur, "SELECT channel, state, count(*) FROM intake_items GROUP BY channel, state"
            )
        return {(IntakeChannel(ch), IntakeState(st)): int(n) for ch, st, n in found}

    # --- API tokens ---------------------------------------------------------------------

    @bridged
    async def add_token(self, name: str, role: str, token_hash: bytes) -> Token:
        """Record a token by the SHA-256 (32 bytes) of its secret; the secret is never stored.

        ``Conflict`` if the hash exists or an unrevoked token has the same name.
        """
        if len(token_hash) != 32:
            raise StoreError("token_hash must be a 32-byte SHA-256 digest")
        async with self._tx("recording a token") as cur:
            try:
                async with self._pool.savepoint(cur):
                    row = await _fetchone(
                        cur,
                        f"INSERT INTO tokens (name, role, token_hash, created_at) "
                        f"VALUES (%s, %s, %s, %s) RETURNING {rows.TOKEN_COLUMNS}",
                        (name, role, bytes(token_hash), self._now()),
                    )
            except Conflict:
                raise Conflict(f"a token named {name!r} or with this secret exists") from None
        return rows.token(_one_row(row), _as_is)

    @bridged
    async def token_by_hash(self, token_hash: bytes) -> Token | None:
        """The token with this secret hash, revoked ones included (check ``revoked``)."""
        async with self._tx("looking up a token") as cur:
            row = await _fetchone(
                cur,
                f"SELECT {rows.TOKEN_COLUMNS} FROM tokens WHERE token_hash = %s",
                (bytes(token_hash),),
            )
        return None if row is None else rows.token(row, _as_is)

    @bridged
    async def list_tokens(self) -> list[Token]:
        """Every token (no hashes), oldest first."""
        async with self._tx("listing tokens") as cur:
            found = await _fetchall(cur, f"SELECT {rows.TOKEN_COLUMNS} FROM tokens ORDER BY id")
        return [rows.token(r, _as_is) for r in found]

    @bridged
    async def revoke_token(self, token_id: int) -> Token:
        """Revoke a token (kept for the record); ``NotFound`` if unknown. Idempotent."""
        async with self._tx("revoking a token") as cur:
            row = await _fetchone(
                cur,
                f"UPDATE tokens SET revoked = true WHERE id = %s RETURNING {rows.TOKEN_COLUMNS}",
                (token_id,),
            )
        if row is None:
            raise NotFound("token", str(token_id))
        return rows.token(row, _as_is)

    # -- RPZ serial -------------------------------------------------------------------------

    @bridged
    async def rpz_serial(self) -> int | None:
        """The last RPZ SOA serial any agent handed out (``None``: none yet)."""
        async with self._tx("reading the RPZ serial") as cur:
            row = await _fetchone(cur, "SELECT serial FROM rpz_serial WHERE id = 1")
        return None if row is None else int(row[0])

    @bridged
    async def save_rpz_serial(self, serial: int) -> None:
        """Record ``serial`` if it is newer (RFC 1982) than the one recorded."""
        async with self._tx("recording the RPZ serial") as cur:
            await cur.execute(rows.SAVE_RPZ_SERIAL, (serial,))

    # -- deadline clock ---------------------------------------------------------------------

    @bridged
    async def clock_mark(self, host: str) -> ClockMark | None:
        """The latest deadline-clock reading ``host`` recorded (``None``: none yet)."""
        async with self._tx("reading the clock mark") as cur:
            row = await _fetchone(cur, rows.CLOCK_MARK, (host,))
        return None if row is None else rows.clock_mark(row, _as_is)

    @bridged
    async def save_clock_mark(self, mark: ClockMark) -> None:
        """Record ``mark`` unless its host's recorded one is as late."""
        async with self._tx("recording the clock mark") as cur:
            await cur.execute(rows.SAVE_CLOCK_MARK, (mark.host, mark.at, mark.boot, mark.monotonic))


AuditNoteOf = tuple[str, str, str, Mapping[str, Any] | None]
"""An audit row to append: ``(actor, action, subject, detail)``."""


def _decision_columns(offered: Sequence[NewDecision], now: datetime) -> list[list[Any]]:
    """The arrays of :data:`_INSERT_DECISIONS`, one per column."""
    return [
        [n.indicator.scope.value for n in offered],
        [n.indicator.value for n in offered],
        [n.action.value for n in offered],
        [n.actor for n in offered],
        [n.reason for n in offered],
        [n.reference for n in offered],
        [n.notice_source.value for n in offered],
        [n.notice_received_at for n in offered],
        [now] * len(offered),
        [n.status.value for n in offered],
        [n.expires_at for n in offered],
        [n.category for n in offered],
        [n.hold for n in offered],
        [n.jurisdiction for n in offered],
    ]


def _event_columns(made: Iterable[Decision]) -> list[list[Any]]:
    """The arrays of :data:`_INSERT_EVENTS`: each new decision's first event."""
    firsts = [(d.id, d.history[0]) for d in made]
    return [
        [did for did, _ in firsts],
        [ev.at for _, ev in firsts],
        [ev.actor for _, ev in firsts],
        [ev.status.value for _, ev in firsts],
        [ev.reason for _, ev in firsts],
    ]


def _chain(
    last_id: int, last_hash: str, at: datetime, notes: Sequence[AuditNoteOf]
) -> list[AuditRow]:
    """The audit rows of ``notes``, in order, after the head ``(last_id, last_hash)``."""
    made: list[AuditRow] = []
    for actor, action, subject, detail in notes:
        row = next_row(
            int(last_id),
            str(last_hash),
            at,
            actor=actor,
            action=action,
            subject=subject,
            detail=detail,
        )
        made.append(row)
        last_id, last_hash = row[0], row[7]
    return made


def _append_params(made: Sequence[AuditRow]) -> list[Any]:
    """The parameters of :data:`_APPEND_AUDIT`: a column array each, then the new head."""
    return [*([*column] for column in zip(*made, strict=True)), made[-1][0], made[-1][7]]


def _open_key(new: NewDecision | Decision) -> tuple[str, str, str]:
    """What at most one open decision may have: scope, value and action."""
    return (new.indicator.scope.value, new.indicator.value, new.action.value)


def _duplicate(new: NewDecision, in_the_way: tuple[int, str] | None) -> Conflict:
    """The ``Conflict`` for ``new``, naming the open decision in its way (by id)."""
    which = "an open decision"
    if in_the_way is not None:
        which = f"decision {in_the_way[0]} ({in_the_way[1]})"
    return Conflict(
        f"{which} already has action {new.action.value} for indicator {new.indicator.ref}"
    )


async def _fetchone(cur: Cursor, query: str, params: Sequence[Any] | None = None) -> Row | None:
    """The first row ``query`` returns, if any."""
    return await (await cur.execute(query, params)).fetchone()


async def _fetchall(cur: Cursor, query: str, params: Sequence[Any] | None = None) -> list[Row]:
    return await (await cur.execute(query, params)).fetchall()


async def _one(cur: Cursor, query: str, params: Sequence[Any] | None = None) -> Row:
    """The single row a statement must return."""
    return _one_row(await _fetchone(cur, query, params))


async def _write_rows(copy: AsyncCopy, batch: Sequence[tuple[Any, ...]]) -> None:
    for row in batch:
        await copy.write_row(row)


def _one_row(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    if row is None:
        raise StoreError("the database returned no row where one was expected")
    return row
