"""Persistence of takedown tickets: the contract (:class:`TicketStorage`) and the SQLite
file that keeps them next to an embedded store (the main SQLite store has no tickets; the
PostgreSQL backend keeps them in its database: :mod:`edgeagent.store.postgresql.tickets`).

Contract of every ticket store:

* A ticket transition is evidence: it is durable when the call returns.
* A ticket is kept as its full JSON (:func:`ticket_to_json`) plus indexed columns for the
  queries below. Tickets hold URLs: the storage must be readable by the agent only.
* :meth:`TicketStorage.update` is optimistic: it succeeds only if the stored ``version``
  equals the ticket's, and returns the ticket with ``version + 1``; otherwise
  :class:`Conflict` (:class:`NotFound` for an unknown id).
* The only deletion is :meth:`TicketStorage.purge`, of a closed ticket without legal hold,
  unchanged since the caller decided (:mod:`edgeagent.takedown.retention` decides when).
* Safe to call from several threads.

``TicketStore(path)`` opens or creates its file with mode 0600, WAL journal and
``synchronous=FULL``. The schema is versioned (``PRAGMA user_version``, :data:`MIGRATIONS`
applied in one transaction); an unknown newer version is refused. One connection behind
a lock.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from edgeagent.errors import Conflict, NotFound
from edgeagent.schemaversions import pending_versions
from edgeagent.takedown.report import TakedownReport
from edgeagent.takedown.reportquery import report_from_rows, report_queries
from edgeagent.takedown.tickets import (
    CLOSED_STATES,
    LIVE_STATES,
    Ticket,
    ticket_from_json,
    ticket_to_json,
)

# MIGRATIONS[i] takes the file from version i to i + 1 (append, never edit a released one).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS tickets (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            reference TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            source TEXT NOT NULL,
            state TEXT NOT NULL,
            closed INTEGER NOT NULL,
            notice_received_at TEXT NOT NULL,
            version INTEGER NOT NULL,
            body TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS tickets_case ON tickets (customer_id, reference, closed)",
        "CREATE INDEX IF NOT EXISTS tickets_received ON tickets (notice_received_at)",
        "CREATE INDEX IF NOT EXISTS tickets_state ON tickets (state)",
    ),
    (
        # Columns for the NOC's SLA figures, the team's "due soon" view, assignment and
        # the purge; filled from the stored JSON for tickets written before them.
        "ALTER TABLE tickets ADD COLUMN deadline TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE tickets ADD COLUMN removed INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE tickets ADD COLUMN assignee TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE tickets ADD COLUMN legal_hold INTEGER NOT NULL DEFAULT 0",
        """UPDATE tickets SET
            deadline = json_extract(body, '$.deadline'),
            removed = json_extract(body, '$.removed_at') IS NOT NULL,
            assignee = COALESCE(json_extract(body, '$.assignee'), ''),
            legal_hold = json_extract(body, '$.legal_hold')""",
        "CREATE INDEX tickets_due ON tickets (closed, deadline)",
    ),
    (
        # Minutes from notice to removal, for the report's aggregates (reportquery.py),
        # read from an index that covers them; filled from the stored JSON.
        "ALTER TABLE tickets ADD COLUMN removal_minutes REAL",
        "UPDATE tickets SET removal_minutes = json_extract(body, '$.minutes_to_removal')",
        "CREATE INDEX tickets_report ON tickets (notice_received_at, source, removal_minutes)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

STATE_DIR_KEY = "agent.state_dir"

TICKET_COLUMNS = (
    "reference, customer_id, source, state, closed, notice_received_at, deadline, removed, "
    "assignee, legal_hold, removal_minutes"
)
"""The indexed columns of every ticket store besides id, version and body."""
TICKET_COLUMN_COUNT = len(TICKET_COLUMNS.split(","))


def ticket_columns(t: Ticket) -> tuple[object, ...]:
    """The values of :data:`TICKET_COLUMNS` for ``t`` (booleans and aware datetimes)."""
    return (
        t.reference,
        t.customer_id,
        t.source,
        t.state.value,
        t.state in CLOSED_STATES,
        t.notice_received_at,
        t.deadline,
        t.removed_at is not None,
        t.assignee,
        t.legal_hold,
        t.minutes_to_removal,
    )


def _columns(t: Ticket) -> tuple[object, ...]:
    # Times as ISO text, all in UTC with one offset form, so that text order is time order.
    return tuple(v.isoformat() if isinstance(v, datetime) else v for v in ticket_columns(t))


class TicketStorage(Protocol):
    """What the takedown engine needs from a ticket store (see the module docstring)."""

    def close(self) -> None: ...

    def create(self, ticket: Ticket) -> Ticket:
        """Store a new ticket (its ``id`` is ignored); return it with its id, version 0."""
        ...

    def update(self, ticket: Ticket) -> Ticket:
        """Replace the stored ticket if its version still matches; bump the version."""
        ...

    def get(self, ticket_id: int) -> Ticket: ...

    def find_open(self, customer_id: str, reference: str) -> Ticket | None:
        """The open ticket for this customer and case, if any (the newest)."""
        ...

    def purge(self, ticket: Ticket) -> bool:
        """Delete ``ticket`` if it is still closed, without legal hold and unchanged since
        it was read (same ``version``); True if it went."""
        ...

    def list_tickets(
        self,
        *,
        state: str | None = None,
        open_only: bool = False,
        due_before: datetime | None = None,
        assignee: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Ticket]:
        """Tickets matching every filter given, newest first. ``due_before``: only those
        whose content is still public (received or under review, not removed) with a
        deadline before it, soonest first (the "due soon" view); ``assignee``: only
        those assigned to that identity (``""``: unassigned ones)."""
        ...

    def count_due(self, before: datetime, limit: int) -> int:
        """How many tickets ``list_tickets(due_before=before)`` lists, counting at most
        ``limit`` (the navigation's capped count, without reading a ticket)."""
        ...

    def sla_counts(self, now: datetime) -> dict[str, tuple[int, int]]:
        """Per notice source: ``(open tickets, open and overdue)``. Overdue: the content
        is still public (received or under review, not removed) past the deadline."""
        ...

    def closed_tickets(self, *, legal_hold: bool) -> list[Ticket]:
        """Closed tickets with or without legal hold, oldest first."""
        ...

    def report(self, start: datetime, end: datetime) -> TakedownReport:
        """The time-to-takedown report over tickets whose notice arrived in ``[start,
        end)``, aggregated by the store (:mod:`edgeagent.takedown.reportquery`), from one
        consistent view of the tickets."""
        ...

    def open_tickets(self) -> list[Ticket]:
        """Every open ticket, oldest first."""
        ...


_LIVE = tuple(s.value for s in LIVE_STATES)
# Content still public (received or under review, not removed) with a deadline before ?.
_DUE = f"removed=0 AND state IN ({','.join('?' * len(_LIVE))}) AND deadline < ?"


class TicketStore:
    """SQLite ticket store (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            # Create with 0600 before SQLite opens it, so it never exists wider.
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            os.close(fd)
        os.chmod(self.path, 0o600)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._migrate()
        for suffix in ("-wal", "-shm"):
            side = Path(f"{self.path}{suffix}")
            if side.exists():
                os.chmod(side, 0o600)

    def _migrate(self) -> None:
        with self._lock:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            # The file has no key of its own: it sits in the state directory.
            where = f"{STATE_DIR_KEY} ({self.path.name}): "
            steps = pending_versions(version, SCHEMA_VERSION, SCHEMA_VERSION, where=where)
            if steps:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for step in steps:
                        for stmt in MIGRATIONS[step]:
                            self._db.execute(stmt)
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writes

    def create(self, ticket: Ticket) -> Ticket:
        """Store a new ticket (its ``id`` is ignored) and return it with the new id."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    f"INSERT INTO tickets ({TICKET_COLUMNS}, version, body)"
                    f" VALUES ({','.join('?' * (TICKET_COLUMN_COUNT + 2))})",
                    (*_columns(ticket), 0, "{}"),
                )
                new_id = int(cur.lastrowid or 0)
                stored = replace(ticket, id=new_id, version=0)
                self._db.execute(
                    "UPDATE tickets SET body=? WHERE id=?",
                    (json.dumps(ticket_to_json(stored)), new_id),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return stored

    def update(self, ticket: Ticket) -> Ticket:
        """Replace the stored ticket if its version still matches; bump the version."""
        stored = replace(ticket, version=ticket.version + 1)
        with self._lock:
            assignments = ", ".join(f"{c.strip()}=?" for c in TICKET_COLUMNS.split(","))
            cur = self._db.execute(
                f"UPDATE tickets SET {assignments}, version=?, body=? WHERE id=? AND version=?",
                (
                    *_columns(stored),
                    stored.version,
                    json.dumps(ticket_to_json(stored)),
                    ticket.id,
                    ticket.version,
                ),
            )
            if cur.rowcount != 1:
                exists = self._db.execute("SELECT 1 FROM tickets WHERE id=?", (ticket.id,))
                if exists.fetchone() is None:
                    raise NotFound("ticket", str(ticket.id))
                raise Conflict(f"ticket {ticket.id} changed meanwhile; reload and retry")
        return stored

    def purge(self, ticket: Ticket) -> bool:
        """Delete ``ticket`` if it is still closed, without legal hold and unchanged since
        it was read (same ``version``); True if it went."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM tickets WHERE id=? AND version=? AND closed=1 AND legal_hold=0",
                (ticket.id, ticket.version),
            )
        return cur.rowcount == 1

    # --- reads

    def get(self, ticket_id: int) -> Ticket:
        with self._lock:
            row = self._db.execute("SELECT body FROM tickets WHERE id=?", (ticket_id,)).fetchone()
        if row is None:
            raise NotFound("ticket", str(ticket_id))
        return ticket_from_json(json.loads(row[0]))

    def find_open(self, customer_id: str, reference: str) -> Ticket | None:
        """The open ticket for this customer and case, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM tickets WHERE customer_id=? AND reference=? AND closed=0"
                " ORDER BY id DESC LIMIT 1",
                (customer_id, reference),
            ).fetchone()
        return None if row is None else ticket_from_json(json.loads(row[0]))

    def list_tickets(
        self,
        *,
        state: str | None = None,
        open_only: bool = False,
        due_before: datetime | None = None,
        assignee: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Ticket]:
        """Tickets matching every filter given, newest first. ``due_before``: only those
        whose content is still public (received or under review, not removed) with a
        deadline before it, soonest first (the "due soon" view); ``assignee``: only
        those assigned to that identity (``""``: unassigned ones)."""
        sql = "SELECT body FROM tickets WHERE 1=1"
        args: list[object] = []
        if state is not None:
            sql += " AND state=?"
            args.append(state)
        if open_only:
            sql += " AND closed=0"
        if assignee is not None:
            sql += " AND assignee=?"
            args.append(assignee)
        order = "id DESC"
        if due_before is not None:
            sql += f" AND {_DUE}"
            args += [*_LIVE, due_before.astimezone(UTC).isoformat()]
            order = "deadline, id"
        sql += f" ORDER BY {order} LIMIT ? OFFSET ?"
        args += [limit, offset]
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [ticket_from_json(json.loads(r[0])) for r in rows]

    def report(self, start: datetime, end: datetime) -> TakedownReport:
        """See :meth:`TicketStorage.report`. Times compared as ISO text: every time is
        stored as UTC with the same offset form."""
        q = report_queries("?")
        window = (start.astimezone(UTC).isoformat(), end.astimezone(UTC).isoformat())
        with self._lock:
            self._db.execute("BEGIN")  # the three queries see one snapshot
            try:
                found = [self._db.execute(sql, window).fetchall() for sql in q]
            finally:
                self._db.execute("COMMIT")
        return report_from_rows(start, end, *found)

    def count_due(self, before: datetime, limit: int) -> int:
        """See :meth:`TicketStorage.count_due`."""
        with self._lock:
            row = self._db.execute(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM tickets WHERE {_DUE} LIMIT ?)",
                (*_LIVE, before.astimezone(UTC).isoformat(), limit),
            ).fetchone()
        return int(row[0])

    def sla_counts(self, now: datetime) -> dict[str, tuple[int, int]]:
        """Per notice source: ``(open tickets, open and overdue)``. Overdue: the content
        is still public (received or under review, not removed) past the deadline."""
        marks = ",".join("?" * len(_LIVE))
        with self._lock:
            rows = self._db.execute(
                f"SELECT source, COUNT(*), SUM(removed=0 AND state IN ({marks}) AND deadline <= ?)"
                " FROM tickets WHERE closed=0 GROUP BY source",
                (*_LIVE, now.astimezone(UTC).isoformat()),
            ).fetchall()
        return {str(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows}

    def closed_tickets(self, *, legal_hold: bool) -> list[Ticket]:
        """Closed tickets with or without legal hold, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM tickets WHERE closed=1 AND legal_hold=? ORDER BY id",
                (int(legal_hold),),
            ).fetchall()
        return [ticket_from_json(json.loads(r[0])) for r in rows]

    def open_tickets(self) -> list[Ticket]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM tickets WHERE closed=0 ORDER BY id"
            ).fetchall()
        return [ticket_from_json(json.loads(r[0])) for r in rows]
