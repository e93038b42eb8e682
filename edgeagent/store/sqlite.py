"""``SqliteStore``: the embedded default :class:`edgeagent.store.base.Store`.

Durability and safety choices, and why:

- WAL with ``synchronous=FULL``: a decision or audit row whose write has returned survives
  ``kill -9`` and power loss (FULL fsyncs the WAL on every commit).
- One writer connection guarded by a lock: the daemon is one process; every public call is
  short and serialised. Each write is one ``BEGIN IMMEDIATE`` transaction, so the
  ``policy_version`` bump is atomic with the change that caused it.
- Long reads (streaming a generation's entries, active decisions, verifying the audit chain)
  use a private read-only connection: WAL gives them a stable snapshot and they never hold
  the writer lock while the caller consumes rows at its own pace.
- Ingest of a generation runs in batches of ``batch_size`` rows (a few milliseconds
  each), each its own transaction, into a generation in the internal ``_loading`` state
  that no reader sees; a last short transaction makes it live or held. Other writers
  (decisions, audit) interleave between batches instead of waiting for a million-row
  insert: the loader lets every writer already waiting go first. The batches commit
  without an fsync (no reader sees their rows); the last transaction fsyncs the WAL, and
  with it every batch before. A crash leaves only an invisible
  ``_loading`` generation, removed later by :meth:`SqliteStore.prune_generations`.
- Files are 0600: the database is created with ``os.open(..., 0o600)`` before SQLite sees it,
  the umask is 0o077 while connecting, and the -wal/-shm files are chmodded (SQLite also
  copies the database file's mode to them).
- The audit table refuses UPDATE and DELETE by trigger. That stops mistakes, not attackers:
  anyone who can write the file can drop the trigger. The hash chain (``prev_hash``,
  ``row_hash``) and the ``audit_head`` row are what make tampering detectable.

Entry values never appear in exception messages: indicators are named by ``Indicator.ref``.
The store writes no audit rows by itself; callers audit what they do (``append_audit``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from edgeagent.bulk import Pacer
from edgeagent.configtypes import OutputPath
from edgeagent.deadline_clock import ClockMark
from edgeagent.errors import Conflict, InvalidTransition, NotFound, StorageFull, StoreError
from edgeagent.intake.base import (
    IntakeChannel,
    IntakeItem,
    IntakeState,
    NewIntakeItem,
    check_outcome,
)
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
from edgeagent.store import migrations, rows
from edgeagent.store.base import (
    OPEN_DECISION_STATUSES,
    AuditNote,
    AuditRecord,
    AuditVerification,
    DatabaseStatus,
    DecisionChanges,
    Generation,
    GenerationChanges,
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
    audit_record,
    canonical_json,
    next_row,
    utc_text,
    verify_chain,
)
from edgeagent.store.rows import DECISION_COLUMNS, GENERATION_COLUMNS, INTAKE_COLUMNS, LOADING
from edgeagent.takedown.ticketstore import TicketStore

STORE_FILE_NAME = "edgeagent.sqlite3"
"""The database file in the state directory when ``[store] path`` is not set."""

PATH_KEY = "store.path"
"""The config key errors about the database file name (as ``store.dsn`` for PostgreSQL)."""

TICKET_STORE_FILE_NAME = "takedown.sqlite3"
"""The takedown tickets' own file in the state directory (the store file has no tickets)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_OPEN_STATUSES = tuple(s.value for s in OPEN_DECISION_STATUSES)
_SCOPES = {s.value: s for s in Scope}
_ACTIONS = {a.value: a for a in Action}
_ENTRY_SELECT = (
    "SELECT scope, value, action, category, reference, first_seen, last_seen, expires_at "
    "FROM generation_entries"
)
_ENTRY_INSERT = (
    "INSERT INTO generation_entries (id, scope, value, action, category, reference, "
    "first_seen, last_seen, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_GEN_SHIFT = 32  # entry rowid = (generation id << 32) + position: one range per generation
_MAX_ENTRIES = (1 << _GEN_SHIFT) - 1
_YIELD_STEP_SECONDS = 0.0002
_YIELD_MAX_SECONDS = 0.05  # a writer that keeps coming back cannot stall an ingest
_IN_CHUNK = 500  # ids per "IN (...)" query; well under SQLite's variable limit


# --- value conversions ----------------------------------------------------------------


def _id_range(gen_id: int) -> tuple[int, int]:
    """Entry rowids of generation ``gen_id`` lie in ``(low, high]``."""
    return gen_id << _GEN_SHIFT, (gen_id << _GEN_SHIFT) + _MAX_ENTRIES


def _to_us(dt: datetime) -> int:
    """Exact microseconds since the epoch; refuses naive datetimes (ambiguous zone)."""
    return (require_aware(dt) - _EPOCH) // _US


def _opt_us(dt: datetime | None) -> int | None:
    return None if dt is None else _to_us(dt)


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SqliteStoreConfig(StoreConfig):
    """``[store] backend = "sqlite"``: one database file, by default in the state directory."""

    backend: Literal["sqlite"] = "sqlite"
    path: OutputPath | None = None  # None: <state_dir>/edgeagent.sqlite3

    def file(self, state_dir: Path) -> Path:
        return self.path or state_dir / STORE_FILE_NAME

    def location(self, state_dir: Path) -> str:
        return str(self.file(state_dir))


class SqliteStore(StoreBackend[SqliteStoreConfig]):
    """SQLite implementation of :class:`edgeagent.store.base.Store`.

    ``path`` must be a file path (not ``:memory:``): streaming readers open their own
    connections to it. ``clock`` supplies "now" (tests inject a fixed clock).
    ``batch_size`` is the number of entries per ingest transaction.
    """

    KIND = "sqlite"
    Config = SqliteStoreConfig

    @classmethod
    def from_config(cls, config: SqliteStoreConfig, state_dir: Path) -> SqliteStore:
        """The store file of ``config``; its directory is created (0700) if missing."""
        path = config.file(state_dir)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls(path)

    @classmethod
    def open_ticket_store(cls, config: SqliteStoreConfig, state_dir: Path) -> TicketStore:
        """The tickets in ``state_dir/takedown.sqlite3`` (mode 0600)."""
        return TicketStore(state_dir / TICKET_STORE_FILE_NAME)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], datetime] = _utcnow,
        busy_timeout_ms: int = 10_000,
        batch_size: int = 2_000,
    ) -> None:
        self._path = Path(path).absolute()
        self._clock = clock
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._batch_size = max(1, int(batch_size))
        self._lock = threading.RLock()
        # Writers waiting for the lock: a generation's ingest lets them in between its
        # batches (the lock is not fair, and the loader would win it back at once).
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self._closed = False
        self._conn = self._connect()

    # --- lifecycle ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        path = str(self._path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open store file {path}: {exc.strerror}") from None
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)  # an existing file made readable by others: tighten it
        except OSError as exc:
            raise StoreError(f"store file {path} is readable by others: {exc.strerror}") from None
        finally:
            os.close(fd)
        old_umask = os.umask(0o077)
        try:
            conn = sqlite3.connect(
                path,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # guarded by self._lock instead
                timeout=self._busy_timeout_ms / 1000,
            )
            try:
                self._configure(conn)
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"store {path}: WAL journal mode unavailable (got {mode})")
                migrations.migrate(conn, where=f"{PATH_KEY}: ")
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"store {path}: {exc}") from None
        finally:
            os.umask(old_umask)
        self._chmod_sidecars()
        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        # Keep a checkpointed WAL from staying at the size of the largest ingest.
        conn.execute("PRAGMA journal_size_limit = 67108864")

    def _chmod_sidecars(self) -> None:
        for suffix in ("-wal", "-shm"):
            side = Path(f"{self._path}{suffix}")
            try:
                if side.stat().st_mode & 0o077:
                    side.chmod(0o600)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(f"cannot restrict {side}: {exc.strerror}") from None

    def _reader(self) -> sqlite3.Connection:
        """A private read-only connection for one long read (closed by the caller)."""
        uri = self._path.as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(
                uri,
                uri=True,
                isolation_level=None,
                check_same_thread=False,  # a stream may be consumed by a worker thread
                timeout=self._busy_timeout_ms / 1000,
            )
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        except sqlite3.Error as exc:
            raise StoreError(f"store {self._path}: {exc}") from None
        return conn

    def close(self) -> None:
        """Close the writer connection; later calls raise ``StoreError``. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One serialised write transaction; rolls back on any exception.

        ``durable=False`` commits without waiting for the disk (``synchronous = NORMAL``):
        only for rows no reader sees until a later durable commit, which fsyncs the WAL
        and with it every frame written before.
        """
        with self._waiting_lock:
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._waiting_lock:
                self._waiting -= 1
        try:
            if self._closed:
                raise StoreError("store is closed")
            conn = self._conn
            if not durable:
                conn.execute("PRAGMA synchronous = NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    raise StorageFull(
                        f"store write failed: disk full at {self._path.parent}"
                    ) from None
                raise StoreError(f"store write failed: {exc}") from None
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous = FULL")
            self._chmod_sidecars_once()
        finally:
            self._lock.release()

    def _let_writers_in(self) -> None:
        """Wait (briefly) until every writer already waiting for the lock has had it."""
        deadline = time.monotonic() + _YIELD_MAX_SECONDS
        while self._waiting and time.monotonic() < deadline:
            time.sleep(_YIELD_STEP_SECONDS)

    _sidecars_checked = False

    def _chmod_sidecars_once(self) -> None:
        # The -wal/-shm files may first appear with the first write; check them once.
        if not self._sidecars_checked:
            self._chmod_sidecars()
            self._sidecars_checked = True

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A short consistent read on the shared connection."""
        with self._lock:
            if self._closed:
                raise StoreError("store is closed")
            conn = self._conn
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"store read failed: {exc}") from None

    def _now(self) -> datetime:
        return self._clock()

    def schema_version(self) -> int:
        """The schema version of the open database (``migrations.CURRENT_VERSION``)."""
        with self._read() as c:
            return migrations.user_version(c)

    def database_status(self, timeout: float) -> DatabaseStatus:
        """An embedded file: reachable while the store is open."""
        return DatabaseStatus(self.KIND)

    def policy_version(self) -> int:
        """Counter bumped with every change of desired state."""
        with self._read() as c:
            return int(c.execute("SELECT version FROM policy WHERE id = 1").fetchone()[0])

    @staticmethod
    def _bump_policy(c: sqlite3.Connection) -> None:
        c.execute("UPDATE policy SET version = version + 1 WHERE id = 1")

    # --- feed generations ---------------------------------------------------------------

    def _get_generation(self, c: sqlite3.Connection, generation_id: int) -> Generation:
        row = c.execute(
            f"SELECT {GENERATION_COLUMNS} FROM generations WHERE id = ? AND status != ?",
            (generation_id, LOADING),
        ).fetchone()
        if row is None:
            raise NotFound("generation", str(generation_id))
        return rows.generation(row, _from_us)

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
        """Store a snapshot of ``feed`` as ``live`` or ``held``.

        ``LIVE`` supersedes the previous live generation, discards a held one (it is older
        than this snapshot, so promoting it later would go backwards) and bumps
        ``policy_version``, all in one transaction. ``HELD`` discards an earlier held one
        and leaves the live one alone. Entries are consumed once, streaming; if the
        iterable raises, nothing becomes visible and the exception propagates.
        """
        status = rows.new_generation_status(status)
        meta_json = canonical_json(meta or {})
        now = _to_us(self._now())
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO generations (feed, status, created_at, status_changed_at, serial, "
                "hold_reason, meta) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (feed, LOADING, now, now, serial, hold_reason, meta_json),
            )
            gen_id = int(cur.lastrowid or 0)
        counter = [0]
        values = self._entry_rows(gen_id, entries, counter)
        pacer = Pacer()  # between batches: the write lock is free then
        try:
            while True:
                before = counter[0]
                with self._write(durable=False) as c:
                    c.executemany(_ENTRY_INSERT, islice(values, self._batch_size))
                self._let_writers_in()
                pacer.pause()
                if counter[0] - before < self._batch_size:
                    break
            with self._write() as c:
                changed = _to_us(self._now())
                self._clear_slot(c, feed, GenerationStatus.HELD, changed)
                if status is GenerationStatus.LIVE:
                    self._clear_slot(c, feed, GenerationStatus.LIVE, changed)
                cur = c.execute(
                    "UPDATE generations SET status = ?, entry_count = ?, status_changed_at = ? "
                    "WHERE id = ? AND status = ?",
                    (status.value, counter[0], changed, gen_id, LOADING),
                )
                if cur.rowcount != 1:
                    raise StoreError(f"generation {gen_id} of feed {feed} vanished while loading")
                if status is GenerationStatus.LIVE:
                    self._bump_policy(c)
                return self._get_generation(c, gen_id)
        except BaseException:
            self._drop_loading(gen_id)
            raise

    @staticmethod
    def _entry_rows(
        gen_id: int, entries: Iterable[Entry], counter: list[int]
    ) -> Iterator[tuple[Any, ...]]:
        # Hot loop for million-entry feeds. StrEnum members bind as their text directly, and
        # timestamps are converted once per distinct object: a feed usually stamps every
        # entry with the same fetch time, and the exact conversion is the costly part.
        base = gen_id << _GEN_SHIFT
        memo: dict[int, tuple[datetime, int]] = {}

        def us(dt: datetime | None) -> int | None:
            if dt is None:
                return None
            hit = memo.get(id(dt))
            if hit is not None and hit[0] is dt:
                return hit[1]
            value = _to_us(dt)
            if len(memo) > 64:
                memo.clear()
            memo[id(dt)] = (dt, value)  # keeps dt alive, so its id cannot be reused
            return value

        for n, e in enumerate(entries, 1):
            if n > _MAX_ENTRIES:
                raise StoreError(f"a generation holds at most {_MAX_ENTRIES} entries")
            counter[0] = n
            ind = e.indicator
            first, last, expires = e.first_seen, e.last_seen, e.expires_at
            yield (
                base + n,
                ind.scope,
                ind.value,
                e.action,
                e.category,
                e.reference,
                # Most feed entries carry no timestamps: skip the call then.
                None if first is None else us(first),
                None if last is None else us(last),
                None if expires is None else us(expires),
            )

    def _drop_loading(self, gen_id: int) -> None:
        """Best-effort removal of a generation whose ingest failed (else pruned later)."""
        try:
            with self._write() as c:
                self._delete_generation(c, gen_id)
        except StoreError:
            pass

    @staticmethod
    def _delete_generation(c: sqlite3.Connection, gen_id: int) -> None:
        lo = gen_id << _GEN_SHIFT
        c.execute(
            "DELETE FROM generation_entries WHERE id > ? AND id <= ?", (lo, lo + _MAX_ENTRIES)
        )
        c.execute("DELETE FROM generations WHERE id = ?", (gen_id,))

    @staticmethod
    def _clear_slot(c: sqlite3.Connection, feed: str, slot: GenerationStatus, changed: int) -> None:
        """Move the feed's live generation to superseded, or its held one to discarded."""
        c.execute(
            "UPDATE generations SET status = ?, status_changed_at = ? "
            "WHERE feed = ? AND status = ?",
            (rows.SLOT_SUCCESSOR[slot].value, changed, feed, slot.value),
        )

    def live_generation(self, feed: str) -> Generation | None:
        """The feed's live generation, or ``None`` if it never had one."""
        return self._slot(feed, GenerationStatus.LIVE)

    def held_generation(self, feed: str) -> Generation | None:
        """The feed's generation waiting for a supervisor, if any."""
        return self._slot(feed, GenerationStatus.HELD)

    def _slot(self, feed: str, status: GenerationStatus) -> Generation | None:
        with self._read() as c:
            row = c.execute(
                f"SELECT {GENERATION_COLUMNS} FROM generations WHERE feed = ? AND status = ?",
                (feed, status.value),
            ).fetchone()
        return None if row is None else rows.generation(row, _from_us)

    def get_generation(self, generation_id: int) -> Generation:
        """One generation by id; ``NotFound`` if unknown, pruned or still loading."""
        with self._read() as c:
            return self._get_generation(c, generation_id)

    def generations(self, feed: str) -> list[Generation]:
        """Every visible generation of ``feed``, newest first."""
        with self._read() as c:
            found = c.execute(
                f"SELECT {GENERATION_COLUMNS} FROM generations WHERE feed = ? AND status != ? "
                "ORDER BY id DESC",
                (feed, LOADING),
            ).fetchall()
        return [rows.generation(r, _from_us) for r in found]

    def generation_entries(self, generation_id: int) -> Iterator[Entry]:
        """Stream a generation's entries in insertion order; ``source`` is the feed name.

        Raises ``NotFound`` at once for an unknown generation. Rows come from a private
        read-only snapshot, never all in memory; the connection closes when the iterator is
        exhausted or discarded.
        """
        gen = self.get_generation(generation_id)
        return self._stream_entries(gen.id, gen.feed)

    def generation_indicators(self, generation_id: int) -> Iterator[Indicator]:
        """A generation's indicators only, streamed like :meth:`generation_entries` (a new
        generation's plan needs no more of the live one: a third of the cost)."""
        gen = self.get_generation(generation_id)
        return self._stream_indicators(gen.id)

    def _stream_indicators(self, gen_id: int) -> Iterator[Indicator]:
        conn = self._reader()
        try:
            cur = conn.execute(
                "SELECT scope, value FROM generation_entries WHERE id > ? AND id <= ? ORDER BY id",
                _id_range(gen_id),
            )
            scopes = _SCOPES
            for scope, value in cur:
                yield Indicator(scopes[scope], value)
        except sqlite3.Error as exc:
            raise StoreError(f"reading generation {gen_id} failed: {exc}") from None
        finally:
            conn.close()

    def generation_changes(self, old_id: int, new_id: int) -> GenerationChanges:
        """Compared inside SQLite (``EXCEPT`` over both generations' rows, on a private
        read connection): C code that leaves the GIL to the event loop, and only the
        changed rows become Python objects."""
        old, new = self.get_generation(old_id), self.get_generation(new_id)
        return GenerationChanges(
            removed=tuple(self._entries_except(old, new)),
            added=tuple(self._entries_except(new, old)),
        )

    def _entries_except(self, gen: Generation, other: Generation) -> Iterator[Entry]:
        """The entries of ``gen`` that ``other`` does not hold with the same fields."""
        conn = self._reader()
        try:
            cur = conn.execute(
                f"{_ENTRY_SELECT} WHERE id > ? AND id <= ? EXCEPT {_ENTRY_SELECT} "
                "WHERE id > ? AND id <= ?",
                (*_id_range(gen.id), *_id_range(other.id)),
            )
            yield from self._as_entries(cur, gen.feed)
        except sqlite3.Error as exc:
            what = f"generations {gen.id} and {other.id}"
            raise StoreError(f"comparing {what} failed: {exc}") from None
        finally:
            conn.close()

    def _stream_entries(self, gen_id: int, feed: str) -> Iterator[Entry]:
        conn = self._reader()
        try:
            cur = conn.execute(
                f"{_ENTRY_SELECT} WHERE id > ? AND id <= ? ORDER BY id", _id_range(gen_id)
            )
            yield from self._as_entries(cur, feed)
        except sqlite3.Error as exc:
            raise StoreError(f"reading generation {gen_id} failed: {exc}") from None
        finally:
            conn.close()

    @staticmethod
    def _as_entries(cur: sqlite3.Cursor, feed: str) -> Iterator[Entry]:
        """Rows of :data:`_ENTRY_SELECT` as the entries of ``feed``."""
        scopes, actions = _SCOPES, _ACTIONS
        memo: dict[int, datetime] = {}

        def conv(value: int | None) -> datetime | None:
            # Entries of one feed share few distinct timestamps: build each once.
            if value is None:
                return None
            dt = memo.get(value)
            if dt is None:
                if len(memo) > 1024:
                    memo.clear()
                dt = memo[value] = _from_us(value)
            return dt

        # A feed's entries share a handful of categories: one string object each, not
        # one per entry (about 50 bytes an entry in a million-entry policy).
        categories: dict[str, str] = {}
        for scope, value, action, category, reference, fs, ls, ex in cur:
            yield Entry(
                Indicator(scopes[scope], value),
                actions[action],
                feed,
                categories.setdefault(category, category),
                reference,
                conv(fs),
                conv(ls),
                conv(ex),
            )

    def promote_generation(self, generation_id: int) -> Generation:
        """Make a held generation live; the old live one becomes superseded."""
        with self._write() as c:
            gen = self._get_generation(c, generation_id)
            if gen.status is not GenerationStatus.HELD:
                allowed = ["discarded"] if gen.status is GenerationStatus.SUPERSEDED else []
                raise InvalidTransition(gen.status.value, GenerationStatus.LIVE.value, allowed)
            changed = _to_us(self._now())
            self._clear_slot(c, gen.feed, GenerationStatus.LIVE, changed)
            c.execute(
                "UPDATE generations SET status = ?, status_changed_at = ? WHERE id = ?",
                (GenerationStatus.LIVE.value, changed, generation_id),
            )
            self._bump_policy(c)
            return self._get_generation(c, generation_id)

    def discard_generation(self, generation_id: int) -> Generation:
        """Discard a held (or superseded) generation. The live one cannot be discarded:
        the last good snapshot stays until a newer one replaces it. Idempotent."""
        with self._write() as c:
            gen = self._get_generation(c, generation_id)
            if gen.status is GenerationStatus.DISCARDED:
                return gen
            if gen.status is GenerationStatus.LIVE:
                raise InvalidTransition(gen.status.value, GenerationStatus.DISCARDED.value, [])
            c.execute(
                "UPDATE generations SET status = ?, status_changed_at = ? WHERE id = ?",
                (GenerationStatus.DISCARDED.value, _to_us(self._now()), generation_id),
            )
            return self._get_generation(c, generation_id)

    def prune_generations(
        self, feed: str, keep: int, *, stale_loading_after: timedelta = timedelta(hours=1)
    ) -> int:
        """Delete all but the ``keep`` newest superseded/discarded generations of ``feed``
        (with their entries), plus ingests abandoned longer than ``stale_loading_after``.

        Live and held generations are never touched. Returns how many were deleted. Each
        generation goes in its own transaction so other writers are not held up long.
        """
        if keep < 0:
            raise StoreError("keep must be >= 0")
        stale_before = _to_us(self._now() - stale_loading_after)
        with self._read() as c:
            old = [
                int(r[0])
                for r in c.execute(
                    "SELECT id FROM generations WHERE feed = ? AND status IN (?, ?) "
                    "ORDER BY id DESC LIMIT -1 OFFSET ?",
                    (
                        feed,
                        GenerationStatus.SUPERSEDED.value,
                        GenerationStatus.DISCARDED.value,
                        keep,
                    ),
                )
            ]
            old += [
                int(r[0])
                for r in c.execute(
                    "SELECT id FROM generations WHERE feed = ? AND status = ? AND created_at < ?",
                    (feed, LOADING, stale_before),
                )
            ]
        deleted = 0
        for gen_id in old:
            with self._write() as c:
                # Re-check inside the transaction: never delete something made live since.
                row = c.execute("SELECT status FROM generations WHERE id = ?", (gen_id,)).fetchone()
                if row is None or row[0] in (
                    GenerationStatus.LIVE.value,
                    GenerationStatus.HELD.value,
                ):
                    continue
                self._delete_generation(c, gen_id)
                deleted += 1
        return deleted

    def feeds(self) -> list[str]:
        """Names of every feed with at least one visible generation, sorted."""
        with self._read() as c:
            found = c.execute(
                "SELECT DISTINCT feed FROM generations WHERE status != ? ORDER BY feed",
                (LOADING,),
            ).fetchall()
        return [str(r[0]) for r in found]

    # --- decisions ----------------------------------------------------------------------

    @staticmethod
    def _load_decisions(c: sqlite3.Connection, found: Sequence[Sequence[Any]]) -> list[Decision]:
        """Build decisions (with their histories) from ``DECISION_COLUMNS`` rows."""
        history: dict[int, list[DecisionEvent]] = {int(r[0]): [] for r in found}
        ids = list(history)
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in c.execute(
                f"SELECT {rows.EVENT_COLUMNS} FROM decision_events "
                f"WHERE decision_id IN ({marks}) ORDER BY id",
                chunk,
            ):
                did, ev = rows.event(row, _from_us)
                history[did].append(ev)
        return [rows.decision(r, history[int(r[0])], _from_us) for r in found]

    def _get_decision(self, c: sqlite3.Connection, decision_id: int) -> Decision:
        row = c.execute(
            f"SELECT {DECISION_COLUMNS} FROM decisions WHERE id = ?", (decision_id,)
        ).fetchone()
        if row is None:
            raise NotFound("decision", str(decision_id))
        return self._load_decisions(c, [row])[0]

    def add_decision(self, new: NewDecision, audit: AuditNote | None = None) -> Decision:
        """Record a decision (``active`` or ``pending-approval``) and its first event.

        Raise ``Conflict`` if an active or pending decision has the same indicator and
        action; a unique partial index enforces this, so concurrent writers cannot race.
        An active decision bumps ``policy_version`` in the same transaction.
        """
        with self._write() as c:
            did = self._insert_decision(c, new, audit)
            if new.status is DecisionStatus.ACTIVE:
                self._bump_policy(c)
            return self._get_decision(c, did)

    def add_decisions(
        self, batch: Sequence[tuple[NewDecision, AuditNote | None]]
    ) -> list[Decision | Conflict]:
        """Record every decision of ``batch`` in one transaction (one durable commit).

        A duplicate (see :meth:`add_decision`) is answered by its ``Conflict`` in its place;
        the others are stored. Any other error stores none of them.
        """
        done: list[int | Conflict] = []
        with self._write() as c:
            for new, audit in batch:
                try:
                    done.append(self._insert_decision(c, new, audit))
                except Conflict as exc:  # raised before anything of it was written
                    done.append(exc)
            ids = [d for d in done if isinstance(d, int)]
            stored = {d.id: d for d in self._decisions_by_id(c, ids)}
            if any(d.status is DecisionStatus.ACTIVE for d in stored.values()):
                self._bump_policy(c)
        return [stored[d] if isinstance(d, int) else d for d in done]

    def _decisions_by_id(self, c: sqlite3.Connection, ids: Sequence[int]) -> list[Decision]:
        found: list[Sequence[Any]] = []
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            found += c.execute(
                f"SELECT {DECISION_COLUMNS} FROM decisions "
                f"WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
        return self._load_decisions(c, found)

    def _insert_decision(
        self, c: sqlite3.Connection, new: NewDecision, audit: AuditNote | None
    ) -> int:
        """Insert ``new``, its first event and its audit row in ``c``'s transaction; its id.
        The caller bumps the policy version for active ones.

        ``Conflict`` (a duplicate) is raised before anything is written."""
        if new.status not in (DecisionStatus.ACTIVE, DecisionStatus.PENDING_APPROVAL):
            raise InvalidTransition("new", new.status.value, list(_OPEN_STATUSES))
        ind = new.indicator
        received = _to_us(new.notice_received_at)
        expires = _opt_us(new.expires_at)
        now = _to_us(self._now())
        try:
            cur = c.execute(
                "INSERT INTO decisions (scope, value, action, actor, reason, reference, "
                "notice_source, notice_received_at, created_at, status, expires_at, "
                "category, hold, jurisdiction) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ind.scope.value,
                    ind.value,
                    new.action.value,
                    new.actor,
                    new.reason,
                    new.reference,
                    new.notice_source.value,
                    received,
                    now,
                    new.status.value,
                    expires,
                    new.category,
                    int(new.hold),
                    new.jurisdiction,
                ),
            )
        except sqlite3.IntegrityError:
            row = c.execute(
                "SELECT id, status FROM decisions WHERE scope = ? AND value = ? AND "
                "action = ? AND status IN (?, ?)",
                (ind.scope.value, ind.value, new.action.value, *_OPEN_STATUSES),
            ).fetchone()
            which = f"decision {row[0]} ({row[1]})" if row else "an open decision"
            raise Conflict(
                f"{which} already has action {new.action.value} for indicator {ind.ref}"
            ) from None
        did = int(cur.lastrowid or 0)
        c.execute(
            "INSERT INTO decision_events (decision_id, at, actor, status, reason) "
            "VALUES (?, ?, ?, ?, ?)",
            (did, now, new.actor, new.status.value, new.reason),
        )
        if audit is not None:  # same transaction: no decision without its audit row
            self._audit_in(c, new.actor, audit.action, f"decision:{did}", audit.detail)
        return did

    def get_decision(self, decision_id: int) -> Decision:
        """One decision with its full history; ``NotFound`` if unknown."""
        with self._read() as c:
            return self._get_decision(c, decision_id)

    def list_decisions(
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
        """Decisions matching every given filter, oldest first (by id), with histories.

        ``source`` filters on the notice source; ``scope`` on the indicator scope;
        ``target`` on the indicator value (see :class:`TargetSearch`).
        """
        if limit < 0 or offset < 0:
            raise StoreError("limit and offset must be >= 0")
        filters = rows.decision_filters(status, source, scope, reference)
        terms = [f"{column} = ?" for column, _ in filters]
        params = [value for _, value in filters]
        if target is not None:
            condition, values = rows.target_condition(target, "?")
            terms.append(condition)
            params += values
        with self._read() as c:
            found = c.execute(
                f"SELECT {DECISION_COLUMNS} FROM decisions WHERE {' AND '.join(terms) or 'true'} "
                "ORDER BY id LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
            return self._load_decisions(c, found)

    def count_decisions(self, *, status: DecisionStatus | None = None) -> int:
        """How many decisions have ``status`` (all of them if ``None``)."""
        with self._read() as c:
            if status is None:
                return int(c.execute("SELECT count(*) FROM decisions").fetchone()[0])
            row = c.execute(
                "SELECT count(*) FROM decisions WHERE status = ?", (status.value,)
            ).fetchone()
            return int(row[0])

    def set_decision_status(
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

        Allowed: pending-approval -> active/rejected/revoked/expired; active ->
        revoked/expired; anything else raises ``InvalidTransition``. ``approved_by`` is
        recorded when given. Entering or leaving ``active`` bumps ``policy_version``.
        """
        status = DecisionStatus(status)
        with self._write() as c:
            row = c.execute("SELECT status FROM decisions WHERE id = ?", (decision_id,)).fetchone()
            if row is None:
                raise NotFound("decision", str(decision_id))
            self._transition(
                c, decision_id, DecisionStatus(row[0]), status, actor=actor, reason=reason
            )
            if approved_by is not None:
                c.execute(
                    "UPDATE decisions SET approved_by = ? WHERE id = ?", (approved_by, decision_id)
                )
            if audit is not None:
                self._audit_in(c, actor, audit.action, f"decision:{decision_id}", audit.detail)
            return self._get_decision(c, decision_id)

    def _transition(
        self,
        c: sqlite3.Connection,
        decision_id: int,
        current: DecisionStatus,
        status: DecisionStatus,
        *,
        actor: str,
        reason: str,
    ) -> None:
        changes_policy = check_decision_transition(current, status)
        c.execute("UPDATE decisions SET status = ? WHERE id = ?", (status.value, decision_id))
        c.execute(
            "INSERT INTO decision_events (decision_id, at, actor, status, reason) "
            "VALUES (?, ?, ?, ?, ?)",
            (decision_id, _to_us(self._now()), actor, status.value, reason),
        )
        if changes_policy:
            self._bump_policy(c)

    def expire_due_decisions(
        self, now: datetime | None = None, *, actor: str = "system"
    ) -> list[Decision]:
        """Mark active decisions whose ``expires_at`` is at or before ``now`` as expired
        (one transaction, one event each); return them."""
        cutoff = _to_us(now if now is not None else self._now())
        with self._write() as c:
            ids = [
                int(r[0])
                for r in c.execute(
                    "SELECT id FROM decisions WHERE status = ? AND expires_at IS NOT NULL "
                    "AND expires_at <= ? ORDER BY id",
                    (DecisionStatus.ACTIVE.value, cutoff),
                )
            ]
            for did in ids:
                self._transition(
                    c,
                    did,
                    DecisionStatus.ACTIVE,
                    DecisionStatus.EXPIRED,
                    actor=actor,
                    reason="expired",
                )
            found = [
                c.execute(f"SELECT {DECISION_COLUMNS} FROM decisions WHERE id = ?", (d,)).fetchone()
                for d in ids
            ]
            return self._load_decisions(c, found)

    def active_decisions(self) -> Iterator[Decision]:
        """Stream every active decision (with history) from a private read snapshot."""
        with self._lock:
            if self._closed:
                raise StoreError("store is closed")
        return self._stream_active()

    def _stream_active(self) -> Iterator[Decision]:
        conn = self._reader()
        try:
            conn.execute("BEGIN")  # one snapshot for decisions and their events
            cur = conn.execute(
                f"SELECT {DECISION_COLUMNS} FROM decisions WHERE status = ? ORDER BY id",
                (DecisionStatus.ACTIVE.value,),
            )
            while chunk := cur.fetchmany(_IN_CHUNK):
                yield from self._load_decisions(conn, chunk)
        except sqlite3.Error as exc:
            raise StoreError(f"reading active decisions failed: {exc}") from None
        finally:
            conn.close()

    def due_decisions(self, now: datetime) -> list[Decision]:
        with self._read() as c:
            found = c.execute(
                f"SELECT {DECISION_COLUMNS} FROM decisions WHERE status = ? "
                "AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY id",
                (DecisionStatus.ACTIVE.value, _to_us(require_aware(now))),
            ).fetchall()
            return self._load_decisions(c, found)

    def decision_changes(self, after: int) -> DecisionChanges:
        """The decisions with an event after event id ``after``: the mark is the last
        event id (SQLite has one writer at a time, so ids are committed in order)."""
        with self._read() as c:
            mark = int(c.execute("SELECT COALESCE(MAX(id), 0) FROM decision_events").fetchone()[0])
            if mark <= after:
                return DecisionChanges(after, (), ())
            found = c.execute(
                f"SELECT {DECISION_COLUMNS} FROM decisions WHERE id IN (SELECT decision_id "
                "FROM decision_events WHERE id > ? AND id <= ?) ORDER BY id",
                (after, mark),
            ).fetchall()
        decisions = [rows.decision(r, [], _from_us) for r in found]
        return DecisionChanges(
            mark,
            tuple(d for d in decisions if d.status is DecisionStatus.ACTIVE),
            tuple(d.id for d in decisions if d.status is not DecisionStatus.ACTIVE),
        )

    # --- audit --------------------------------------------------------------------------

    def append_audit(
        self, actor: str, action: str, subject: str, detail: Mapping[str, Any] | None = None
    ) -> AuditRecord:
        """Append one row to the hash chain (durable when this returns).

        ``subject`` names an object (``decision:12``, ``feed:iwf``), never a plain entry.
        """
        with self._write() as c:
            return self._audit_in(c, actor, action, subject, detail)

    def _audit_in(
        self,
        c: sqlite3.Connection,
        actor: str,
        action: str,
        subject: str,
        detail: Mapping[str, Any] | None,
    ) -> AuditRecord:
        """Append an audit row inside the caller's write transaction."""
        last = c.execute("SELECT id, row_hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        last_id, last_hash = (0, "") if last is None else (int(last[0]), str(last[1]))
        row = next_row(
            last_id,
            last_hash,
            self._now(),
            actor=actor,
            action=action,
            subject=subject,
            detail=detail,
        )
        c.execute(f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        c.execute("UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1", (row[0], row[7]))
        return audit_record(row)

    def audit_since(self, since: datetime | None = None, limit: int = 1000) -> list[AuditRecord]:
        """Audit rows from the first one written at or after ``since`` on (all if
        ``None``), in the order written, at most ``limit``. The order decides, not the
        timestamps: a row written after a step back of the clock is still returned."""
        if limit < 0:
            raise StoreError("limit must be >= 0")
        with self._read() as c:
            found = c.execute(
                f"SELECT {AUDIT_COLUMNS} FROM audit WHERE id >= (SELECT id FROM audit "
                f"WHERE at >= ? ORDER BY id LIMIT 1) ORDER BY id LIMIT ?",
                ("" if since is None else utc_text(since), limit),
            ).fetchall()
        return [audit_record(r) for r in found]

    def verify_audit(self) -> AuditVerification:
        """Recompute the whole chain from a read snapshot (:func:`chain.verify_chain`); name
        the first row that fails."""
        conn = self._reader()
        try:
            conn.execute("BEGIN")
            head = conn.execute("SELECT last_id, last_hash FROM audit_head WHERE id = 1").fetchone()
            cur = conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id")
            return verify_chain(cur, head)
        except sqlite3.Error as exc:
            raise StoreError(f"reading the audit log failed: {exc}") from None
        finally:
            conn.close()

    def audit_head(self) -> tuple[int, str]:
        """``(last_id, last_hash)`` of the chain: publish it elsewhere as an anchor."""
        with self._read() as c:
            row = c.execute("SELECT last_id, last_hash FROM audit_head WHERE id = 1").fetchone()
        return (0, "") if row is None else (int(row[0]), str(row[1]))

    # --- the intake triage queue ---------------------------------------------------------

    def add_intake_item(self, new: NewIntakeItem, audit: AuditNote) -> IntakeItem:
        """Queue ``new`` as pending with its audit row; ``Conflict`` on a reused reference."""
        with self._write() as c:
            try:
                cur = c.execute(
                    "INSERT INTO intake_items (reference, channel, state, created_at, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        new.reference,
                        new.channel.value,
                        IntakeState.PENDING.value,
                        _to_us(self._now()),
                        new.content.to_json(),
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict("an intake item with this reference exists") from None
            item_id = int(cur.lastrowid or 0)
            self._audit_in(c, "intake", audit.action, rows.intake_subject(item_id), audit.detail)
            return self._get_intake(c, item_id)

    def _get_intake(self, c: sqlite3.Connection, item_id: int) -> IntakeItem:
        row = c.execute(
            f"SELECT {INTAKE_COLUMNS} FROM intake_items WHERE id = ?", (item_id,)
        ).fetchone()
        if row is None:
            raise NotFound("intake item", str(item_id))
        return rows.intake_item(row, _from_us)

    def get_intake_item(self, item_id: int) -> IntakeItem:
        """One item; ``NotFound`` if unknown."""
        with self._read() as c:
            return self._get_intake(c, item_id)

    def list_intake_items(
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
        clause = " AND ".join(f"{column} = ?" for column, _ in filters)
        with self._read() as c:
            found = c.execute(
                f"SELECT {INTAKE_COLUMNS} FROM intake_items WHERE {clause or 'true'} "
                "ORDER BY id DESC LIMIT ? OFFSET ?",
                (*(value for _, value in filters), limit, offset),
            ).fetchall()
        return [rows.intake_item(r, _from_us) for r in found]

    def decide_intake_item(
        self,
        item_id: int,
        state: IntakeState,
        *,
        actor: str,
        reason: str,
        decision_ids: Iterable[int] = (),
        audit: AuditNote,
    ) -> IntakeItem:
        """Move a pending item to its outcome, once; the audit row in the same transaction."""
        with self._write() as c:
            item = self._get_intake(c, item_id)
            check_outcome(item.channel, item.state, state)
            c.execute(
                "UPDATE intake_items SET state = ?, decided_at = ?, decided_by = ?, reason = ?, "
                "decision_ids = ? WHERE id = ? AND state = ?",
                (
                    state.value,
                    _to_us(self._now()),
                    actor,
                    reason,
                    rows.decision_ids_json(decision_ids),
                    item_id,
                    IntakeState.PENDING.value,
                ),
            )
            self._audit_in(c, actor, audit.action, rows.intake_subject(item_id), audit.detail)
            return self._get_intake(c, item_id)

    def count_intake_items(self) -> dict[tuple[IntakeChannel, IntakeState], int]:
        """Items per (channel, state)."""
        with self._read() as c:
            found = c.execute(
                "SELECT channel, state, count(*) FROM intake_items GROUP BY channel, state"
            ).fetchall()
        return {(IntakeChannel(ch), IntakeState(st)): int(n) for ch, st, n in found}

    # --- API tokens ---------------------------------------------------------------------

    def add_token(self, name: str, role: str, token_hash: bytes) -> Token:
        """Record a token by the SHA-256 (32 bytes) of its secret; the secret is never stored.

        ``Conflict`` if the hash exists or an unrevoked token has the same name.
        """
        if len(token_hash) != 32:
            raise StoreError("token_hash must be a 32-byte SHA-256 digest")
        with self._write() as c:
            try:
                cur = c.execute(
                    "INSERT INTO tokens (name, role, token_hash, created_at) VALUES (?, ?, ?, ?)",
                    (name, role, bytes(token_hash), _to_us(self._now())),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"a token named {name!r} or with this secret exists") from None
            row = c.execute(
                f"SELECT {rows.TOKEN_COLUMNS} FROM tokens WHERE id = ?",
                (cur.lastrowid,),
            ).fetchone()
        return rows.token(row, _from_us)

    def token_by_hash(self, token_hash: bytes) -> Token | None:
        """The token with this secret hash, revoked ones included (check ``revoked``)."""
        with self._read() as c:
            row = c.execute(
                f"SELECT {rows.TOKEN_COLUMNS} FROM tokens WHERE token_hash = ?",
                (bytes(token_hash),),
            ).fetchone()
        return None if row is None else rows.token(row, _from_us)

    def list_tokens(self) -> list[Token]:
        """Every token (no hashes), oldest first."""
        with self._read() as c:
            found = c.execute(f"SELECT {rows.TOKEN_COLUMNS} FROM tokens ORDER BY id").fetchall()
        return [rows.token(r, _from_us) for r in found]

    def revoke_token(self, token_id: int) -> Token:
        """Revoke a token (kept for the record); ``NotFound`` if unknown. Idempotent."""
        with self._write() as c:
            c.execute("UPDATE tokens SET revoked = 1 WHERE id = ?", (token_id,))
            row = c.execute(
                f"SELECT {rows.TOKEN_COLUMNS} FROM tokens WHERE id = ?", (token_id,)
            ).fetchone()
            if row is None:
                raise NotFound("token", str(token_id))
        return rows.token(row, _from_us)

    # -- RPZ serial -------------------------------------------------------------------------

    def rpz_serial(self) -> int | None:
        """The last RPZ SOA serial handed out (``None``: none yet)."""
        with self._read() as c:
            row = c.execute("SELECT serial FROM rpz_serial WHERE id = 1").fetchone()
        return None if row is None else int(row[0])

    def save_rpz_serial(self, serial: int) -> None:
        """Record ``serial`` if it is newer (RFC 1982) than the one recorded."""
        with self._write() as c:
            c.execute(rows.SAVE_RPZ_SERIAL.replace("%s", "?", 1), (serial,))

    # -- deadline clock ---------------------------------------------------------------------

    def clock_mark(self, host: str) -> ClockMark | None:
        """The latest deadline-clock reading ``host`` recorded (``None``: none yet)."""
        with self._read() as c:
            row = c.execute(rows.CLOCK_MARK.replace("%s", "?"), (host,)).fetchone()
        return None if row is None else rows.clock_mark(row, _from_us)

    def save_clock_mark(self, mark: ClockMark) -> None:
        """Record ``mark`` unless its host's recorded one is as late."""
        values = (mark.host, _to_us(mark.at), mark.boot, mark.monotonic)
        with self._write() as c:
            c.execute(rows.SAVE_CLOCK_MARK.replace("%s", "?"), values)
