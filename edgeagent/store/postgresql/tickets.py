"""``PostgresTicketStore``: takedown tickets in the store's PostgreSQL database.

Implements :class:`edgeagent.takedown.ticketstore.TicketStorage` on the ``tickets`` table
of :mod:`.schema` (so every agent on the database sees one set of tickets, and the
evidence bundle's tickets and audit rows come from one place). Each call is one
transaction on a pooled connection, run as a coroutine on the pool's own event loop
(:func:`.bridge.bridged`); a committed transaction is durable when it returns.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from edgeagent.errors import Conflict, NotFound
from edgeagent.store.postgresql import schema
from edgeagent.store.postgresql.bridge import bridged
from edgeagent.store.postgresql.connect import Database
from edgeagent.store.postgresql.store import PostgresStoreConfig
from edgeagent.takedown.report import TakedownReport
from edgeagent.takedown.reportquery import report_from_rows, report_queries
from edgeagent.takedown.tickets import (
    LIVE_STATES,
    Ticket,
    ticket_from_json,
    ticket_to_json,
)
from edgeagent.takedown.ticketstore import TICKET_COLUMN_COUNT, TICKET_COLUMNS, ticket_columns

_POOL_SIZE = 4  # tickets change a few times an hour; the store's pool carries the load
_LIVE = [s.value for s in LIVE_STATES]  # content still public: overdue and due-soon views


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

    @bridged
    async def create(self, ticket: Ticket) -> Ticket:
        """Store a new ticket (its ``id`` is ignored) and return it with the new id."""
        async with self._pool.transaction("creating a ticket") as cur:
            next_id = await cur.execute("SELECT nextval(pg_get_serial_sequence('tickets', 'id'))")
            row = await next_id.fetchone()
            assert row is not None
            stored = replace(ticket, id=int(row[0]), version=0)
            await cur.execute(
                f"INSERT INTO tickets (id, {TICKET_COLUMNS}, version, body) "
                f"VALUES ({', '.join(['%s'] * (TICKET_COLUMN_COUNT + 3))})",
                (stored.id, *ticket_columns(stored), 0, json.dumps(ticket_to_json(stored))),
            )
        return stored

    @bridged
    async def update(self, ticket: Ticket) -> Ticket:
        """Replace the stored ticket if its version still matches; bump the version."""
        stored = replace(ticket, version=ticket.version + 1)
        async with self._pool.transaction("updating a ticket") as cur:
            assignments = ", ".join(f"{c.strip()} = %s" for c in TICKET_COLUMNS.split(","))
            await cur.execute(
                f"UPDATE tickets SET {assignments}, version = %s, body = %s "
                "WHERE id = %s AND version = %s",
                (
                    *ticket_columns(stored),
                    stored.version,
                    json.dumps(ticket_to_json(stored)),
                    ticket.id,
                    ticket.version,
                ),
            )
            if cur.rowcount != 1:
                await cur.execute("SELECT 1 FROM tickets WHERE id = %s", (ticket.id,))
                if await cur.fetchone():
                    raise Conflict(f"ticket {ticket.id} changed meanwhile; reload and retry")
                raise NotFound("ticket", str(ticket.id))
        return stored

    @bridged
    async def purge(self, ticket: Ticket) -> bool:
        """Delete ``ticket`` if it is still closed, without legal hold and unchanged since
        it was read (same ``version``); True if it went."""
        async with self._pool.transaction("purging a ticket") as cur:
            await cur.execute(
                "DELETE FROM tickets WHERE id = %s AND version = %s AND closed AND NOT legal_hold",
                (ticket.id, ticket.version),
            )
            return cur.rowcount == 1

    # --- reads

    async def _bodies(self, sql: str, params: tuple[Any, ...]) -> list[Ticket]:
        async with self._pool.transaction("reading tickets") as cur:
            rows = await (await cur.execute(sql, params)).fetchall()
        return [ticket_from_json(json.loads(r[0])) for r in rows]

    @bridged
    async def get(self, ticket_id: int) -> Ticket:
        found = await self._bodies("SELECT body FROM tickets WHERE id = %s", (ticket_id,))
        if not found:
            raise NotFound("ticket", str(ticket_id))
        return found[0]

    @bridged
    async def find_open(self, customer_id: str, reference: str) -> Ticket | None:
        """The open ticket for this customer and case, if any."""
        found = await self._bodies(
            "SELECT body FROM tickets WHERE customer_id = %s AND reference = %s "
            "AND NOT closed ORDER BY id DESC LIMIT 1",
            (customer_id, reference),
        )
        return found[0] if found else None

    @bridged
    async def list_tickets(
        self,
        *,
        state: str | None = None,
        open_only: bool = False,
        due_before: datetime | None = None,
        assignee: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Ticket]:
        """See :meth:`edgeagent.takedown.ticketstore.TicketStorage.list_tickets`."""
        order = "id DESC" if due_before is None else "deadline, id"
        return await self._bodies(
            "SELECT body FROM tickets WHERE (%s::text IS NULL OR state = %s) "
            "AND (NOT %s OR NOT closed) AND (%s::text IS NULL OR assignee = %s) "
            "AND (%s::timestamptz IS NULL OR "
            "(NOT removed AND state = ANY(%s) AND deadline < %s)) "
            f"ORDER BY {order} LIMIT %s OFFSET %s",
            (
                state,
                state,
                open_only,
                assignee,
                assignee,
                due_before,
                _LIVE,
                due_before,
                limit,
                offset,
            ),
        )

    @bridged
    async def count_due(self, before: datetime, limit: int) -> int:
        """See :meth:`edgeagent.takedown.ticketstore.TicketStorage.count_due`."""
        async with self._pool.transaction("counting tickets") as cur:
            await cur.execute(
                "SELECT count(*) FROM (SELECT 1 FROM tickets WHERE NOT removed "
                "AND state = ANY(%s) AND deadline < %s LIMIT %s) AS due",
                (_LIVE, before, limit),
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    @bridged
    async def sla_counts(self, now: datetime) -> dict[str, tuple[int, int]]:
        """Per notice source: ``(open tickets, open and overdue)``."""
        async with self._pool.transaction("counting tickets") as cur:
            await cur.execute(
                "SELECT source, count(*), count(*) FILTER (WHERE NOT removed AND "
                "state = ANY(%s) AND deadline <= %s) FROM tickets WHERE NOT closed "
                "GROUP BY source",
                (_LIVE, now),
            )
            rows = await cur.fetchall()
        return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}

    @bridged
    async def closed_tickets(self, *, legal_hold: bool) -> list[Ticket]:
        """Closed tickets with or without legal hold, oldest first."""
        return await self._bodies(
            "SELECT body FROM tickets WHERE closed AND legal_hold = %s ORDER BY id", (legal_hold,)
        )

    @bridged
    async def report(self, start: datetime, end: datetime) -> TakedownReport:
        """See :meth:`edgeagent.takedown.ticketstore.TicketStorage.report`."""
        async with self._pool.transaction("reporting on tickets") as cur:
            # The three queries see one snapshot.
            await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            found = [
                await (await cur.execute(sql, (start, end))).fetchall()
                for sql in report_queries("%s")
            ]
        return report_from_rows(start, end, *found)

    @bridged
    async def open_tickets(self) -> list[Ticket]:
        return await self._bodies("SELECT body FROM tickets WHERE NOT closed ORDER BY id", ())
