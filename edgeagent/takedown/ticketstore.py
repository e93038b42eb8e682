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
* Nothing is ever deleted here; retention is decided by :mod:`edgeagent.takedown.evidence`.
* Safe to call from several threads.

``TicketStore(path)`` opens or creates its file with mode 0600, WAL journal and
``synchronous=FULL``. The schema is versioned (``PRAGMA user_version``); an unknown newer
version is refused. One connection behind a lock.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

from edgeagent.errors import Conflict, NotFound, StoreError
from edgeagent.takedown.tickets import CLOSED_STATES, Ticket, ticket_from_json, ticket_to_json

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reference TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL,
    closed INTEGER NOT NULL,
    notice_received_at TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_case ON tickets (customer_id, reference, closed);
CREATE INDEX IF NOT EXISTS tickets_received ON tickets (notice_received_at);
CREATE INDEX IF NOT EXISTS tickets_state ON tickets (state);
"""


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

    def list_tickets(
        self,
        *,
        state: str | None = None,
        open_only: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Ticket]:
        """Tickets, newest first, optionally by state or only open ones."""
        ...

    def received_between(self, start: datetime, end: datetime) -> list[Ticket]:
        """Tickets whose notice arrived in ``[start, end)``, oldest first, for reports."""
        ...

    def open_tickets(self) -> list[Ticket]:
        """Every open ticket, oldest first."""
        ...


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
            if version > SCHEMA_VERSION:
                raise StoreError(f"ticket store schema {version} is newer than this agent")
            if version < SCHEMA_VERSION:
                self._db.execute("BEGIN IMMEDIATE")
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self._db.execute("COMMIT")

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
                    "INSERT INTO tickets (reference, customer_id, source, state, closed,"
                    " notice_received_at, version, body) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        ticket.reference,
                        ticket.customer_id,
                        ticket.source,
                        ticket.state.value,
                        int(ticket.state in CLOSED_STATES),
                        ticket.notice_received_at.isoformat(),
                        0,
                        "{}",
                    ),
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
            cur = self._db.execute(
                "UPDATE tickets SET state=?, closed=?, version=?, body=? WHERE id=? AND version=?",
                (
                    stored.state.value,
                    int(stored.state in CLOSED_STATES),
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
        limit: int = 100,
        offset: int = 0,
    ) -> list[Ticket]:
        """Tickets, newest first, optionally by state or only open ones."""
        sql = "SELECT body FROM tickets WHERE 1=1"
        args: list[object] = []
        if state is not None:
            sql += " AND state=?"
            args.append(state)
        if open_only:
            sql += " AND closed=0"
        sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
        args += [limit, offset]
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [ticket_from_json(json.loads(r[0])) for r in rows]

    def received_between(self, start: datetime, end: datetime) -> list[Ticket]:
        """Tickets whose notice arrived in ``[start, end)``, for reports.

        Compared as ISO text: every time is stored as UTC with the same offset form.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM tickets WHERE notice_received_at >= ? AND"
                " notice_received_at < ? ORDER BY id",
                (start.isoformat(), end.isoformat()),
            ).fetchall()
        return [ticket_from_json(json.loads(r[0])) for r in rows]

    def open_tickets(self) -> list[Ticket]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM tickets WHERE closed=0 ORDER BY id"
            ).fetchall()
        return [ticket_from_json(json.loads(r[0])) for r in rows]
