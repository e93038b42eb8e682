"""``LockLeadership``: one leader among the agents on a PostgreSQL store.

The contract is :mod:`edgeagent.leadership`. How it is kept here:

- Each agent keeps one *session* of its own (not pooled): it LISTENs on the policy
  channel and, every ``poll_seconds``, either tries the leader lock
  (``pg_try_advisory_lock``, a standby) or checks the epoch it holds (the leader), and
  says who it is in ``agents``. Between polls it waits for notifications, so a policy
  change another agent commits is acted on at once.
- The session runs with ``idle_session_timeout``: a leader that stops talking (killed,
  paused, hung, cut off) loses its session on the server, and with it the lock, within
  ``session_timeout_seconds``; a killed process loses it at once (the socket closes).
- Taking the lock bumps ``leader.epoch`` in the same session: the epoch names the one
  leader the database knows. Any error on the session is a lost leadership:
  ``on_role(False)`` at once, then a fresh session as a standby.
- The fence asks the database over a small pool of its own: :meth:`check` compares the
  epoch, :meth:`claim` records a notice key in a transaction that first takes the
  leader row ``FOR SHARE`` (so a new leader's epoch bump waits for it to commit); a key
  already there is claimed again (under this epoch) unless :meth:`confirm` set its
  ``sent_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from edgeagent.errors import EdgeAgentError, Fenced
from edgeagent.leadership import AgentRole, Leadership, Roles, agent_name
from edgeagent.logs import fields
from edgeagent.store.postgresql.connect import Connection, Database, Pool
from edgeagent.store.postgresql.schema import open_pool
from edgeagent.store.postgresql.store import POLICY_CHANNEL

log = logging.getLogger("edgeagent.leader")

LEADER_LOCK = 0x6564_6765_0002
"""Advisory lock key of the leadership (session-scoped, held by the leader's session)."""


class LockLeadership(Leadership):
    """See the module docstring."""

    def __init__(
        self,
        database: Database,
        *,
        poll_seconds: float = 1.0,
        session_timeout_seconds: float = 5.0,
        name: str | None = None,
    ) -> None:
        self.database = database
        self.poll_seconds = poll_seconds
        self.session_timeout_seconds = session_timeout_seconds
        self.name = name or agent_name()
        self._epoch: int | None = None  # set while this agent believes it leads
        self._session: Connection | None = None
        self._fence_pool: Pool | None = None
        self._seen: dict[str, Any] = {"epoch": None, "leader": "", "agents": []}
        self._api = ""

    @property
    def is_leader(self) -> bool:
        return self._epoch is not None

    @property
    def notifies(self) -> bool:
        return True

    # --- the session ---------------------------------------------------------------------

    async def run(
        self, on_role: Callable[[bool], None], on_policy: Callable[[], None], api: str
    ) -> None:
        self._api = api
        while True:
            try:
                if self._session is None:
                    self._session = await self._open_session()
                await self.poll_once(on_role)
                await self._wait_notifications(self._session, on_policy)
            except (psycopg.Error, EdgeAgentError, OSError) as exc:
                await self._lost(on_role, exc)
                await asyncio.sleep(self.poll_seconds)

    async def _open_session(self) -> Connection:
        await asyncio.to_thread(self._pool)  # the fence's pool; opening it migrates the schema
        conn = await self.database.connect()
        timeout_ms = int(self.session_timeout_seconds * 1000)
        await conn.execute(f"SET idle_session_timeout = {timeout_ms}")
        await conn.execute(f"LISTEN {POLICY_CHANNEL}")
        return conn

    async def poll_once(self, on_role: Callable[[bool], None]) -> None:
        """One poll: try the lock (standby) or check the epoch (leader); say who we are."""
        conn = self._session
        if conn is None:
            conn = self._session = await self._open_session()
        if self._epoch is None:
            got = await (
                await conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,))
            ).fetchone()
            if got is not None and got[0]:
                row = await _row(
                    conn,
                    "UPDATE leader SET epoch = epoch + 1, holder = %s, since = now() "
                    "WHERE id = 1 RETURNING epoch",
                    (self.name,),
                )
                if row is None:
                    raise Fenced("taking the leadership", "the leader row is missing")
                self._epoch = int(row[0])
                log.info("this agent is the leader now", extra=fields(epoch=self._epoch))
                on_role(True)
        else:
            row = await _row(conn, "SELECT epoch FROM leader WHERE id = 1")
            if row is None or int(row[0]) != self._epoch:
                raise Fenced("leading", "another agent holds a newer leader epoch")
        await conn.execute(
            "INSERT INTO agents (name, leader, api, seen_at) VALUES (%s, %s, %s, now()) "
            "ON CONFLICT (name) DO UPDATE SET leader = EXCLUDED.leader, api = EXCLUDED.api, "
            "seen_at = EXCLUDED.seen_at",
            (self.name, self._epoch is not None, self._api),
        )
        await self._read_roles(conn)

    async def _read_roles(self, conn: Connection) -> None:
        lead = await (
            await conn.execute("SELECT epoch, holder FROM leader WHERE id = 1")
        ).fetchone()
        # Agents heard from within a few session timeouts; older rows are history.
        horizon = 3 * self.session_timeout_seconds
        found = await (
            await conn.execute(
                "SELECT name, api, seen_at FROM agents "
                "WHERE seen_at > now() - make_interval(secs => %s) ORDER BY name",
                (horizon,),
            )
        ).fetchall()
        holder = str(lead[1]) if lead else ""
        # An agent's role is whether the leader row names it: a deposed leader's own row
        # says it leads until its next poll.
        self._seen = {
            "epoch": int(lead[0]) if lead else None,
            "leader": holder,
            "agents": [AgentRole(str(n), n == holder, str(api), _unix(at)) for n, api, at in found],
        }

    async def _wait_notifications(self, conn: Connection, on_policy: Callable[[], None]) -> None:
        changed = False
        async for _ in conn.notifies(timeout=self.poll_seconds):
            changed = True
            # A burst of commits is one rebuild: drain what is queued, then tell once.
            break
        if changed:
            on_policy()

    async def _lost(self, on_role: Callable[[bool], None], exc: BaseException) -> None:
        was_leader = self._epoch is not None
        self._epoch = None
        session, self._session = self._session, None
        if was_leader:
            log.error(
                "leadership lost; leader work stops",
                extra=fields(error=f"{type(exc).__name__}: {exc}"),
            )
            on_role(False)
        else:
            log.warning(
                "leader session lost; retrying", extra=fields(error=f"{type(exc).__name__}: {exc}")
            )
        if session is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await session.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        self._epoch = None
        if session is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await session.close()  # ends the session: the lock goes with it
        if self._fence_pool is not None:
            self._fence_pool.close()
            self._fence_pool = None

    # --- the fence -----------------------------------------------------------------------

    def _pool(self) -> Pool:
        if self._fence_pool is None:
            self._fence_pool = open_pool(self.database, "edgeagent-fence", max_size=2)
        return self._fence_pool

    # The fence's pool runs on a loop of its own (like the store's): these synchronous
    # calls come from worker threads, and each runs its SQL there as one coroutine.

    def check(self, what: str) -> None:
        mine = self._epoch
        if mine is None:
            raise Fenced(what, "this agent is not the leader")
        pool = self._pool()
        current = pool.run(_epoch(pool, f"checking the leader epoch for {what}"))
        if current != mine:
            raise Fenced(what, f"leader epoch {mine} is stale (the database has {current})")

    def claim(self, key: str) -> bool:
        mine = self._epoch
        if mine is None:
            raise Fenced("a takedown notice", "this agent is not the leader")
        pool = self._pool()
        return pool.run(_claim(pool, key, mine))

    def confirm(self, key: str) -> None:
        # Not fenced: it records a fact (a channel took the notice), whoever sent it.
        pool = self._pool()
        pool.run(_confirm(pool, key))

    # --- status --------------------------------------------------------------------------

    def roles(self) -> Roles:
        seen = self._seen
        return Roles(seen["leader"], tuple(seen["agents"]))

    def status(self) -> dict[str, Any]:
        seen = self._seen
        return {
            **super().status(),
            "name": self.name,
            "epoch": self._epoch if self._epoch is not None else seen["epoch"],
            "election": "postgresql advisory lock",
        }


async def _epoch(pool: Pool, what: str) -> int | None:
    async with pool.connection(what) as conn:
        row = await _row(conn, "SELECT epoch FROM leader WHERE id = 1")
    return int(row[0]) if row else None


async def _claim(pool: Pool, key: str, mine: int) -> bool:
    async with pool.transaction("recording a notice key") as cur:
        row = await (
            await cur.execute("SELECT epoch FROM leader WHERE id = 1 FOR SHARE")
        ).fetchone()
        current = int(row[0]) if row else None
        if current != mine:
            raise Fenced(
                "a takedown notice",
                f"leader epoch {mine} is stale (the database has {current})",
            )
        # A key claimed before but never confirmed: its sender died mid-send (or every
        # try failed); it goes out again under the same key.
        claimed = await (
            await cur.execute(
                "INSERT INTO notice_keys (key, epoch, recorded_at) VALUES (%s, %s, now()) "
                "ON CONFLICT (key) DO UPDATE SET epoch = EXCLUDED.epoch, "
                "recorded_at = EXCLUDED.recorded_at WHERE notice_keys.sent_at IS NULL "
                "RETURNING key",
                (key, mine),
            )
        ).fetchone()
    return claimed is not None


async def _confirm(pool: Pool, key: str) -> None:
    async with pool.transaction("confirming a notice key") as cur:
        await cur.execute("UPDATE notice_keys SET sent_at = now() WHERE key = %s", (key,))


async def _row(
    conn: Connection, query: str, params: tuple[Any, ...] = ()
) -> tuple[Any, ...] | None:
    """The first row ``query`` returns (autocommit: one statement, one transaction)."""
    return await (await conn.execute(query, params)).fetchone()


def _unix(at: datetime) -> float:
    return at.astimezone(UTC).timestamp() if at.tzinfo else at.replace(tzinfo=UTC).timestamp()
