"""``PostgresTicketStore``: takedown tickets in the store's PostgreSQL database.

Implements :class:`edgeagent.takedown.ticketstore.TicketStorage` on the ``tickets`` table
of :mod:`.schema` (so every agent on the database sees one set of tickets, and the
evidence bundle's tickets and audit rows come from one place). Each call is one
transaction on a pooled connection; a committed transaction is durable when it returns.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from edgeagent.errors import Conflict, NotFound
from edgeagent.store.postgresql import schema
from edgeagent.store.postgresql.connect import Database
from edgeagent.store.postgresql.store import PostgresStoreConfig
from edgeagent.takedown.tickets import CLOSED_STATES, Ticket, ticket_from_json, ticket_to_json

_POOL_SIZE = 4  # tickets change a few times an hour; the store's pool carries the load


class PostgresTicketStore:
    """PostgreSQL ticket store; opening migrates the schema like the main store."""

    def __init__(self, database: Database) -> None:
        self._pool = schema.open_pool(database, "edgeagent-tickets", max_size=_POOL_SIZE)

    @classmethod
    def from_config(cls, config: PostgresStoreConfig) -> PostgresTicketStore:
        return cls(Database.from_config(config))

    def close(self) -> None:
        self._pool.close()

    # --- writes

    def create(self, ticket: Ticket) -> Ticket:
        """Store a new ticket (its ``id`` is ignored) and return it with the new id."""
        with self._pool.transaction("creating a ticket") as cur:
            row = cur.execute("SELECT nextval(pg_get_serial_sequence('tickets', 'id'))").fetchone()
            assert row is not None
            stored = replace(ticket, id=int(row[0]), version=0)
            cur.execute(
                "INSERT INTO tickets (id, reference, customer_id, source, state, closed, "
                "notice_received_at, version, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    stored.id,
                    stored.reference,
                    stored.customer_id,
                    stored.source,
                    stored.state.value,
                    stored.state in CLOSED_STATES,
                    stored.notice_received_at,
                    0,
                    json.dumps(ticket_to_json(stored)),
                ),
            )
        return stored

    def update(self, ticket: Ticket) -> Ticket:
        """Replace the stored ticket if its version still matches; bump the version."""
        stored = replace(ticket, version=ticket.version + 1)
        with self._pool.transaction("updating a ticket") as cur:
            cur.execute(
                "UPDATE tickets SET state = %s, closed = %s, version = %s, body = %s "
                "WHERE id = %s AND version = %s",
                (
                    stored.state.value,
                    stored.state in CLOSED_STATES,
                    stored.version,
                    json.dumps(ticket_to_json(stored)),
                    ticket.id,
                    ticket.version,
                ),
            )
            if cur.rowcount != 1:
                if cur.execute("SELECT 1 FROM tickets WHERE id = %s", (ticket.id,)).fetchone():
                    raise Conflict(f"ticket {ticket.id} changed meanwhile; reload and retry")
                raise NotFound("ticket", str(ticket.id))
        return stored

    # --- reads

    def _bodies(self, sql: str, params: tuple[Any, ...]) -> list[Ticket]:
        with self._pool.transaction("reading tickets") as cur:
            rows = cur.execute(sql, params).fetchall()
        return [ticket_from_json(json.loads(r[0])) for r in rows]

    def get(self, ticket_id: int) -> Ticket:
        found = self._bodies("SELECT body FROM tickets WHERE id = %s", (ticket_id,))
        if not found:
            raise NotFound("ticket", str(ticket_id))
        return found[0]

    def find_open(self, customer_id: str, reference: str) -> Ticket | None:
        """The open ticket for this customer and case, if any."""
        found = self._bodies(
            "SELECT body FROM tickets WHERE customer_id = %s AND reference = %s "
            "AND NOT closed ORDER BY id DESC LIMIT 1",
            (customer_id, reference),
        )
        return found[0] if found else None

    def list_tickets(
        self,
        *,
        state: str | None = None,
        open_only: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Ticket]:
        """Tickets, newest first, optionally by state or only open ones."""
        return self._bodies(
            "SELECT body FROM tickets WHERE (%s::text IS NULL OR state = %s) "
            "AND (NOT %s OR NOT closed) ORDER BY id DESC LIMIT %s OFFSET %s",
            (state, state, open_only, limit, offset),
        )

    def received_between(self, start: datetime, end: datetime) -> list[Ticket]:
        """Tickets whose notice arrived in ``[start, end)``, for reports."""
        return self._bodies(
            "SELECT body FROM tickets WHERE notice_received_at >= %s "
            "AND notice_received_at < %s ORDER BY id",
            (start, end),
        )

    def open_tickets(self) -> list[Ticket]:
        return self._bodies("SELECT body FROM tickets WHERE NOT closed ORDER BY id", ())
