"""Exactly one leader among the agents that share a store, and the fence that holds it.

Every agent serves the API; only the *leader* runs feed sync, publishing, verification,
decision expiry and the takedown scheduler. The store backend decides how the leader is
chosen (:meth:`edgeagent.store.base.StoreBackend.open_leadership`):

- SQLite: one agent per store, so it always leads (:class:`SoleLeader`).
- PostgreSQL: an advisory lock held by a dedicated database session
  (:mod:`edgeagent.store.postgresql.leader`); the session that takes it bumps the
  *leader epoch* in the database. When the leader's session dies (process killed, host
  gone, or paused past the session timeout) the server releases the lock and a standby
  takes it within one poll interval.

A :class:`Leadership` must:
- call ``on_role(True)`` when this agent becomes leader and ``on_role(False)`` at once
  when it learns it no longer is (the daemon stops leader work on that call);
- call ``on_policy()`` when another agent committed a policy change (a NOTIFY), so the
  policy is rebuilt at once, not at the next poll; ``notifies`` says whether it does
  (without, the daemon polls the store's policy version);
- *fence*: :meth:`Leadership.check` raises :class:`edgeagent.errors.Fenced` unless the
  database still names this agent's epoch as the leader's, and :meth:`Leadership.claim`
  records a notice's idempotency key in the database before it is sent (``False``: some
  leader recorded it already, so it was sent). A deposed leader that has not noticed
  yet is refused by both: it can never overwrite a newer policy or repeat a notice.
- never raise from :meth:`Leadership.run` (a lost database is a lost leadership, retried).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AgentRole:
    """One agent as the leadership sees it: ``name``, whether it leads, its API, and when
    it was last heard from (Unix time)."""

    name: str
    leader: bool
    api: str = ""
    seen_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "leader": self.leader, "api": self.api, "seen_at": self.seen_at}


class Leadership(ABC):
    """Whether this agent leads, and the fence; see the module docstring."""

    @property
    @abstractmethod
    def is_leader(self) -> bool:
        """What this agent believes now (the fence asks the database)."""

    @property
    def notifies(self) -> bool:
        """Whether policy changes by other agents are announced (``on_policy``)."""
        return False

    @abstractmethod
    async def run(
        self, on_role: Callable[[bool], None], on_policy: Callable[[], None], api: str
    ) -> None:
        """Hold or wait for the leadership until cancelled; ``api`` names this agent."""

    @abstractmethod
    def check(self, what: str) -> None:
        """``Fenced`` unless this agent is the leader the database knows now."""

    @abstractmethod
    def claim(self, key: str) -> bool:
        """Record a notice's idempotency key before sending it: ``True`` to send,
        ``False`` if it was recorded before; ``Fenced`` unless this agent leads."""

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """The ``ha`` part of ``/v1/status``: role, epoch, the leader, every agent."""

    async def close(self) -> None:
        """Give the leadership up (the next agent takes it at once)."""
        return None


class SoleLeader(Leadership):
    """The one agent on an embedded store: always the leader, nothing to fence against."""

    @property
    def is_leader(self) -> bool:
        return True

    async def run(
        self, on_role: Callable[[bool], None], on_policy: Callable[[], None], api: str
    ) -> None:
        on_role(True)

    def check(self, what: str) -> None:
        return None

    def claim(self, key: str) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"role": "leader", "epoch": None, "election": "none (embedded store)"}
