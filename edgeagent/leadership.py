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
  records a notice's idempotency key in the database before it is sent (``False``: a
  channel took it already, :meth:`Leadership.confirm` recorded that). A key claimed but
  never confirmed (the leader died mid-send) is claimed again by the next leader, which
  sends the notice under the same key: sent once, the receiver dropping a repeated key.
  A deposed leader that has not noticed yet is refused by both: it can never overwrite
  a newer policy or send a notice.
- say what the store knows of the agents (:meth:`Leadership.roles`: the leader's name
  and each agent's role, by agent id; ``/v1/status`` and the metrics show it);
- never raise from :meth:`Leadership.run` (a lost database is a lost leadership, retried).
"""

from __future__ import annotations

import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def agent_name() -> str:
    """This agent among the others: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


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


@dataclass(frozen=True, slots=True)
class Roles:
    """What the store says of the agents sharing it: the leader's name (``""`` while
    none holds it) and every agent heard from recently."""

    leader: str
    agents: tuple[AgentRole, ...]


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
        """Record a notice's idempotency key before sending it: ``True`` to send (first
        time, or claimed before and never confirmed), ``False`` if it was confirmed sent;
        ``Fenced`` unless this agent leads."""

    def confirm(self, key: str) -> None:
        """Record that a channel took the notice of a claimed key (it is not sent again)."""
        return None

    @abstractmethod
    def roles(self) -> Roles:
        """The leader and every agent, as last read from the store (no database call)."""

    def status(self) -> dict[str, Any]:
        """The ``ha`` part of ``/v1/status``: role, epoch, the leader, every agent."""
        roles = self.roles()
        return {
            "role": "leader" if self.is_leader else "standby",
            "leader": roles.leader,
            "agents": [a.to_dict() for a in roles.agents],
        }

    async def close(self) -> None:
        """Give the leadership up (the next agent takes it at once)."""
        return None


class SoleLeader(Leadership):
    """The one agent on an embedded store: always the leader, nothing to fence against."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or agent_name()
        self._api = ""

    @property
    def is_leader(self) -> bool:
        return True

    async def run(
        self, on_role: Callable[[bool], None], on_policy: Callable[[], None], api: str
    ) -> None:
        self._api = api
        on_role(True)

    def check(self, what: str) -> None:
        return None

    def claim(self, key: str) -> bool:
        return True

    def roles(self) -> Roles:
        # Alive as long as it answers: it is the only agent the store has.
        me = AgentRole(self.name, True, self._api, time.time())
        return Roles(self.name, (me,))

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "name": self.name,
            "epoch": None,
            "election": "none (embedded store)",
        }
