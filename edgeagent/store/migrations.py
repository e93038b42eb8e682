"""Versioned schemas: the mechanism every backend shares, and the SQLite schema.

The shape, the same for every backend (SQLite here, PostgreSQL in
:mod:`edgeagent.store.postgresql.schema`): a module holds ``MIGRATIONS``, where
``MIGRATIONS[i]`` is a tuple of single SQL statements taking a database from version ``i``
to ``i + 1`` (0 = empty database), ``CURRENT_VERSION = len(MIGRATIONS)``, a function that
reads the version a database records, and ``migrate(conn, target)``, which runs every
pending step and the version bump in one transaction (a crash half-way leaves the database
at its old version, untouched) after
:func:`edgeagent.schemaversions.pending_versions` has refused a database newer
than the code. Each store runs ``migrate`` when it opens.

For SQLite the version lives in ``PRAGMA user_version``; the steps are single statements,
not a script, because ``executescript`` would commit behind our back.

Rules for adding a migration: append, never edit a released one; keep entry values out of
any message; a data migration is plain SQL over the existing rows.

Timestamps are INTEGER microseconds since the Unix epoch (UTC), except ``audit.at``, which
is ISO-8601 text because its exact bytes are part of the hash chain and a person reading
the raw table should be able to follow it.
"""

from __future__ import annotations

import sqlite3

from edgeagent.schemaversions import pending_versions

_V1: tuple[str, ...] = (
    # Single-row counter bumped with every change of desired state.
    """CREATE TABLE policy (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL
    )""",
    "INSERT INTO policy (id, version) VALUES (1, 0)",
    # Feed snapshots. status '_loading' is internal: a generation being filled in batches,
    # invisible to every reader until it is finalised as live or held.
    """CREATE TABLE generations (
        id INTEGER PRIMARY KEY,
        feed TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('_loading', 'live', 'held', 'superseded', 'discarded')),
        created_at INTEGER NOT NULL,
        status_changed_at INTEGER NOT NULL,
        entry_count INTEGER NOT NULL DEFAULT 0,
        serial TEXT NOT NULL DEFAULT '',
        hold_reason TEXT NOT NULL DEFAULT '',
        meta TEXT NOT NULL DEFAULT '{}'
    )""",
    # At most one live and one held generation per feed, whatever the callers do.
    "CREATE UNIQUE INDEX generations_one_live ON generations (feed) WHERE status = 'live'",
    "CREATE UNIQUE INDEX generations_one_held ON generations (feed) WHERE status = 'held'",
    "CREATE INDEX generations_feed ON generations (feed, id)",
    # Bulk table with no secondary index at all: the rowid is (generation_id << 32) + n, so
    # one generation is one contiguous rowid range: ingest appends at the end of the b-tree,
    # streaming and pruning are range scans, and there is no index to maintain. (A foreign
    # key would need an index on the child column, so there is none; the store deletes a
    # generation's range itself.)
    """CREATE TABLE generation_entries (
        id INTEGER PRIMARY KEY,
        scope TEXT NOT NULL,
        value TEXT NOT NULL,
        action TEXT NOT NULL,
        category TEXT NOT NULL DEFAULT '',
        reference TEXT NOT NULL DEFAULT '',
        first_seen INTEGER,
        last_seen INTEGER,
        expires_at INTEGER
    )""",
    """CREATE TABLE decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        scope TEXT NOT NULL,
        value TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('block', 'allow')),
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        reference TEXT NOT NULL,
        notice_source TEXT NOT NULL,
        notice_received_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('active', 'pending-approval', 'revoked', 'expired', 'rejected')),
        expires_at INTEGER,
        category TEXT NOT NULL DEFAULT '',
        approved_by TEXT
    )""",
    # The duplicate rule lives in the database so two concurrent writers cannot both win.
    """CREATE UNIQUE INDEX decisions_one_open ON decisions (scope, value, action)
        WHERE status IN ('active', 'pending-approval')""",
    "CREATE INDEX decisions_status ON decisions (status)",
    "CREATE INDEX decisions_reference ON decisions (reference)",
    """CREATE TABLE decision_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        decision_id INTEGER NOT NULL REFERENCES decisions (id),
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL
    )""",
    "CREATE INDEX decision_events_decision ON decision_events (decision_id, id)",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        row_hash TEXT NOT NULL
    )""",
    "CREATE INDEX audit_at ON audit (at)",
    # Defence in depth only: anyone who can write the file can drop these triggers, which
    # is why every row also carries the hash chain that verify_audit checks.
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END""",
)

_V2: tuple[str, ...] = (
    # API tokens: only the SHA-256 of the secret is kept.
    """CREATE TABLE tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        token_hash BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),
        created_at INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked = 0",
    # The last audit row's id and hash, written in the same transaction as the row: a
    # verifier that finds fewer rows than the head names knows the tail was cut off.
    """CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_id INTEGER NOT NULL,
        last_hash TEXT NOT NULL
    )""",
    # Data migration: seed the head from whatever a v1 database already holds.
    """INSERT INTO audit_head (id, last_id, last_hash)
        SELECT 1, COALESCE(MAX(id), 0),
               COALESCE((SELECT row_hash FROM audit ORDER BY id DESC LIMIT 1), '')
        FROM audit""",
)

_V3: tuple[str, ...] = (
    # The intake triage queue. ``body`` is the JSON of what the person gave (it may hold
    # URLs and a contact: the file's 0600 is what protects it); nothing about the sender
    # that they did not type is ever a column here.
    """CREATE TABLE intake_items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        reference TEXT NOT NULL UNIQUE,
        channel TEXT NOT NULL CHECK (channel IN
            ('public-report', 'mail-quarantine', 'appeal', 'challenge')),
        state TEXT NOT NULL CHECK (state IN
            ('pending', 'accepted', 'rejected', 'upheld', 'revoked')),
        created_at INTEGER NOT NULL,
        decided_at INTEGER,
        decided_by TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        decision_ids TEXT NOT NULL DEFAULT '[]',
        body TEXT NOT NULL
    )""",
    "CREATE INDEX intake_items_state ON intake_items (state, channel, id)",
)

_V4: tuple[str, ...] = (
    # Law-enforcement hold (notices reach the hosting team only) and the jurisdiction
    # whose law governs the case; decisions made before both existed have neither.
    "ALTER TABLE decisions ADD COLUMN hold INTEGER NOT NULL DEFAULT 0 CHECK (hold IN (0, 1))",
    "ALTER TABLE decisions ADD COLUMN jurisdiction TEXT NOT NULL DEFAULT ''",
)

_V5: tuple[str, ...] = (
    # The last RPZ SOA serial handed out, central state like the policy it publishes: a
    # restarted agent continues upward from it.
    """CREATE TABLE rpz_serial (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        serial INTEGER NOT NULL CHECK (serial BETWEEN 0 AND 4294967295)
    )""",
)

_V6: tuple[str, ...] = (
    # The latest reading of each host's deadline clock (edgeagent.deadline_clock): a
    # restart after the wall clock was stepped back goes on from it, not from the step.
    """CREATE TABLE clock_marks (
        host TEXT PRIMARY KEY,
        at INTEGER NOT NULL,
        boot TEXT NOT NULL,
        monotonic REAL NOT NULL
    )""",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4, _V5, _V6)
"""``MIGRATIONS[i]`` upgrades version ``i`` to ``i + 1``."""

CURRENT_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the database header."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, target: int = CURRENT_VERSION, *, where: str = "") -> int:
    """Bring the database to ``target`` in one transaction; return the version reached.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Raise ``StoreError``
    (prefixed with ``where``) if the database is newer than ``target``
    (:func:`pending_versions`).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        for version in pending_versions(user_version(conn), target, CURRENT_VERSION, where=where):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        # PRAGMA user_version is transactional: it commits or rolls back with the steps.
        conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return target
