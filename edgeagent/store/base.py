"""The store contract. ``SqliteStore`` (``edgeagent.store.sqlite``) is the embedded default;
``PostgresStore`` (``edgeagent.store.postgresql``) keeps the same state in a PostgreSQL
database that several agents can share.

A *store backend* is a :class:`StoreBackend` subclass registered in
:mod:`edgeagent.store.kinds`: ``KIND`` is the value of ``[store] backend`` that selects it,
``Config`` its own config model (a :class:`StoreConfig`), and
``from_config(config, state_dir)`` opens the store (creating and migrating it as needed)
and returns an object that implements :class:`Store`, and
``open_ticket_store(config, state_dir)`` opens the takedown tickets that go with that
store: the backend decides where they live (SQLite: a file of their own in the state
directory; PostgreSQL: the store's database, shared by every agent on it), and
``open_leadership(config, state_dir)`` how the agents sharing the store choose their one
leader (:mod:`edgeagent.leadership`; by default the agent is the store's only one, and
leads). Adding a
backend is one module and one line in ``kinds.py``; everything else reaches the store
through :func:`edgeagent.store.open_store` and :func:`edgeagent.store.open_ticket_store`.

A backend must:
- keep feed snapshots as *generations*. Exactly one generation per feed is ``live`` (the
  last good one; never deleted while live), at most one is ``held`` (waiting for a
  supervisor), older ones are ``superseded`` or ``discarded`` and may be pruned.
- keep every decision with its full history; nothing is ever deleted.
- keep every intake item (:mod:`edgeagent.intake.base`) with its outcome; nothing is ever
  deleted, and a decided item never changes again.
- keep an append-only audit log where each row carries the SHA-256 of the previous row
  (``prev_hash``) and its own ``row_hash`` over its content and ``prev_hash``;
  :meth:`Store.verify_audit` recomputes the chain and names the first row that fails.
- bump ``policy_version`` on every change that alters the desired state (a decision
  activated/revoked/expired, a generation made live), atomically with that change; a
  store several agents share announces each bump to them when it commits (the
  leadership's ``on_policy``).
- move decisions only along :data:`DECISION_TRANSITIONS` (:func:`check_decision_transition`).
- be safe to call from several threads; writes are serialised by the backend.
- create its files with mode 0600 and never log entry values.
- keep the last RPZ SOA serial handed out (:meth:`Store.save_rpz_serial`), central state
  like the policy: it only ever moves forward (RFC 1982), so whichever agent publishes
  next continues above it.
- keep each host's deadline-clock mark (:meth:`Store.save_clock_mark`): the latest
  reading only, never an earlier one (:mod:`edgeagent.deadline_clock`).
- bring its schema to the version the code knows when it opens, and refuse a database
  whose schema is newer (:mod:`edgeagent.store.migrations`).

Timestamps are timezone-aware UTC ``datetime``s in and out (:func:`require_aware`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

from edgeagent.deadline_clock import ClockMark
from edgeagent.errors import Conflict, InvalidTransition, StoreError
from edgeagent.intake.base import IntakeChannel, IntakeItem, IntakeState, NewIntakeItem
from edgeagent.leadership import Leadership, SoleLeader
from edgeagent.model import Action, Decision, DecisionStatus, Entry, Indicator, NoticeSource
from edgeagent.plugins import PluginConfig
from edgeagent.takedown.ticketstore import TicketStorage

OPEN_DECISION_STATUSES = (DecisionStatus.ACTIVE, DecisionStatus.PENDING_APPROVAL)
"""The statuses a new decision may have; at most one open decision per indicator and action."""

DECISION_TRANSITIONS: Mapping[DecisionStatus, tuple[DecisionStatus, ...]] = {
    DecisionStatus.PENDING_APPROVAL: (
        DecisionStatus.ACTIVE,
        DecisionStatus.REJECTED,
        DecisionStatus.REVOKED,
        DecisionStatus.EXPIRED,
    ),
    DecisionStatus.ACTIVE: (DecisionStatus.REVOKED, DecisionStatus.EXPIRED),
}
"""Status -> the statuses a decision may move to from it; the others are final."""


def check_decision_transition(current: DecisionStatus, new: DecisionStatus) -> bool:
    """Raise ``InvalidTransition`` unless ``current -> new`` is allowed; return whether the
    move enters or leaves ``active`` (and so must bump ``policy_version``)."""
    allowed = DECISION_TRANSITIONS.get(current, ())
    if new not in allowed:
        raise InvalidTransition(current.value, new.value, [a.value for a in allowed])
    return (current is DecisionStatus.ACTIVE) != (new is DecisionStatus.ACTIVE)


def require_aware(dt: datetime) -> datetime:
    """``dt`` unchanged; ``StoreError`` for a naive datetime (its zone is ambiguous)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise StoreError("naive datetime given; the store takes timezone-aware UTC times")
    return dt


class GenerationStatus(StrEnum):
    LIVE = "live"
    HELD = "held"
    SUPERSEDED = "superseded"
    DISCARDED = "discarded"


@dataclass(frozen=True, slots=True)
class GenerationChanges:
    """What differs between two generations of one feed: the entries only the old one
    holds (``removed``) and those only the new one holds (``added``). An entry whose
    fields changed is in both: its old value removed, its new value added."""

    removed: tuple[Entry, ...]
    added: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class DecisionChanges:
    """The decisions whose status changed after a mark (:meth:`Store.decision_changes`):
    those now ``active`` (without their history) and the ids of the others, as of
    ``mark``, the mark to ask from next time."""

    mark: int
    active: tuple[Decision, ...]
    inactive: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Generation:
    """One snapshot of a feed. ``meta`` holds fetch facts (etag, serial, bytes, digest)."""

    id: int
    feed: str
    status: GenerationStatus
    created_at: datetime
    entry_count: int
    serial: str = ""
    hold_reason: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewDecision:
    """What a person asks for; the store assigns id, created_at and history."""

    indicator: Indicator
    action: Action
    actor: str
    reason: str
    reference: str
    notice_source: NoticeSource
    notice_received_at: datetime
    status: DecisionStatus
    expires_at: datetime | None = None
    category: str = ""
    hold: bool = False
    jurisdiction: str = ""


@dataclass(frozen=True, slots=True)
class TargetSearch:
    """Which decisions a search by target finds: those whose indicator value is one of
    ``values`` (canonical forms of the text searched for), and, when ``host`` is set
    (the URL form of a host: a name, an IPv4 address or a bracketed IPv6 address), those
    whose value is a URL on that host."""

    values: tuple[str, ...]
    host: str | None = None


@dataclass(frozen=True, slots=True)
class AuditNote:
    """An audit row to write in the same transaction as a decision change.

    The actor is the change's actor and the subject ``decision:<id>``."""

    action: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str  # e.g. "decision.create", "feed.approve", "auth.denied"
    subject: str  # e.g. "decision:12", "feed:iwf"; never a plain list entry
    detail: Mapping[str, Any]
    prev_hash: str
    row_hash: str


@dataclass(frozen=True, slots=True)
class AuditVerification:
    ok: bool
    rows: int
    first_bad_row: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    name: str
    role: str
    created_at: datetime
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class StandbyStatus:
    """One standby streaming from the primary, as the primary reports it.

    ``synchronous``: a commit waits for it (``sync_state`` ``sync`` or ``quorum``);
    ``replay_lag_seconds`` / ``replay_lag_bytes``: how far its replay is behind
    (``None`` when the server does not say, e.g. no traffic yet or no permission)."""

    name: str
    state: str
    synchronous: bool
    replay_lag_seconds: float | None = None
    replay_lag_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "synchronous": self.synchronous,
            "replay_lag_seconds": self.replay_lag_seconds,
            "replay_lag_bytes": self.replay_lag_bytes,
        }


@dataclass(frozen=True, slots=True)
class DatabaseStatus:
    """Where the store's data is and whether it can be reached (``/v1/status``
    ``database``, ``/readyz``, the ``edgeagent_database_*`` metrics).

    ``primary`` is the ``host:port`` the agent writes to ("" for an embedded store);
    ``error`` says why it cannot be reached (naming the config key, never a password)."""

    backend: str
    reachable: bool = True
    error: str = ""
    primary: str = ""
    synchronous_commit: str = ""
    standbys: tuple[StandbyStatus, ...] = ()

    @property
    def synchronous(self) -> bool:
        """Whether a commit waits for at least one standby."""
        return self.synchronous_commit not in ("", "off", "local") and any(
            s.synchronous for s in self.standbys
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "reachable": self.reachable,
            "error": self.error or None,
            "primary": self.primary or None,
            "synchronous": self.synchronous,
            "synchronous_commit": self.synchronous_commit or None,
            "standbys": [s.to_dict() for s in self.standbys],
        }


class Store(Protocol):
    # --- lifecycle
    def close(self) -> None: ...

    def schema_version(self) -> int: ...

    def policy_version(self) -> int: ...

    def database_status(self, timeout: float) -> DatabaseStatus:
        """Reach the database within ``timeout`` seconds and say how it is. Never raises
        for an unreachable database: that is a status (``reachable=False``)."""
        ...

    # --- feed generations
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
        """Store a snapshot. ``status=LIVE`` supersedes the previous live one atomically;
        ``HELD`` replaces (discards) any earlier held one and leaves the live one alone."""
        ...

    def live_generation(self, feed: str) -> Generation | None: ...

    def held_generation(self, feed: str) -> Generation | None: ...

    def generation_entries(self, generation_id: int) -> Iterator[Entry]: ...

    def generation_indicators(self, generation_id: int) -> Iterator[Indicator]:
        """The indicators of a generation's entries (``NotFound`` for an unknown one)."""
        ...

    def generation_changes(self, old_id: int, new_id: int) -> GenerationChanges:
        """The entries that differ between generations ``old_id`` and ``new_id`` of one
        feed (``NotFound`` for an unknown one)."""
        ...

    def promote_generation(self, generation_id: int) -> Generation:
        """Make a held generation live (the old live one becomes superseded)."""
        ...

    def discard_generation(self, generation_id: int) -> Generation: ...

    def get_generation(self, generation_id: int) -> Generation: ...

    def generations(self, feed: str) -> list[Generation]:
        """Every generation of ``feed``, newest first."""
        ...

    def prune_generations(self, feed: str, keep: int) -> int:
        """Delete all but the ``keep`` newest superseded/discarded generations (and their
        entries); live and held ones are never deleted. Return how many went."""
        ...

    def feeds(self) -> list[str]: ...

    # --- decisions
    def add_decision(self, new: NewDecision, audit: AuditNote | None = None) -> Decision:
        """Raise ``Conflict`` if an active or pending decision has the same indicator and
        action. ``audit`` is written in the same transaction."""
        ...

    def add_decisions(
        self, batch: Sequence[tuple[NewDecision, AuditNote | None]]
    ) -> list[Decision | Conflict]:
        """Every decision of ``batch`` in one transaction: each stored (with its audit
        row), or answered by its ``Conflict`` in its place; any other error stores none."""
        ...

    def get_decision(self, decision_id: int) -> Decision: ...

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
    ) -> list[Decision]: ...

    def count_decisions(self, *, status: DecisionStatus | None = None) -> int:
        """How many decisions have ``status`` (all if ``None``): one number for every
        view of the pending work, however many of them a list shows."""
        ...

    def set_decision_status(
        self,
        decision_id: int,
        status: DecisionStatus,
        *,
        actor: str,
        reason: str,
        approved_by: str | None = None,
        audit: AuditNote | None = None,
    ) -> Decision: ...

    def active_decisions(self) -> Iterator[Decision]: ...

    def due_decisions(self, now: datetime) -> list[Decision]:
        """The active decisions (with history) whose ``expires_at`` is at or before
        ``now``, by id: the expire pass reads these only, not every active decision."""
        ...

    def decision_changes(self, after: int) -> DecisionChanges | None:
        """What changed among the decisions after mark ``after`` (0: from the start), at
        the cost of the change; ``None`` when this store cannot say (read every active
        decision instead)."""
        ...

    def expire_due_decisions(
        self, now: datetime | None = None, *, actor: str = "system"
    ) -> list[Decision]:
        """Expire active decisions whose ``expires_at`` has passed; return them."""
        ...

    # --- audit
    def append_audit(
        self, actor: str, action: str, subject: str, detail: Mapping[str, Any] | None = None
    ) -> AuditRecord: ...

    def audit_since(
        self, since: datetime | None = None, limit: int = 1000
    ) -> list[AuditRecord]: ...

    def verify_audit(self) -> AuditVerification: ...

    def audit_head(self) -> tuple[int, str]:
        """``(last_id, last_hash)``: an anchor to publish outside the store."""
        ...

    # --- the intake triage queue
    def add_intake_item(self, new: NewIntakeItem, audit: AuditNote) -> IntakeItem:
        """Queue an item as ``pending``; ``Conflict`` if its reference exists. ``audit``
        (subject ``intake:<id>``, actor ``intake``) is written in the same transaction."""
        ...

    def get_intake_item(self, item_id: int) -> IntakeItem: ...

    def list_intake_items(
        self,
        *,
        state: IntakeState | None = None,
        channel: IntakeChannel | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[IntakeItem]:
        """Items, newest first, optionally of one state and channel."""
        ...

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
        """Move a pending item to its outcome (:func:`edgeagent.intake.base.check_outcome`,
        else ``InvalidTransition``), with ``audit`` in the same transaction."""
        ...

    def count_intake_items(self) -> dict[tuple[IntakeChannel, IntakeState], int]:
        """How many items each channel has in each state (for metrics)."""
        ...

    # --- API tokens (only SHA-256 hashes of the secrets are stored)
    def add_token(self, name: str, role: str, token_hash: bytes) -> Token: ...

    def token_by_hash(self, token_hash: bytes) -> Token | None: ...

    def list_tokens(self) -> list[Token]: ...

    def revoke_token(self, token_id: int) -> Token: ...

    # --- the RPZ serial (:class:`edgeagent.enforcement.base.SerialRecord`)
    def rpz_serial(self) -> int | None:
        """The last RPZ SOA serial handed out by any agent on the store (``None``: none)."""
        ...

    def save_rpz_serial(self, serial: int) -> None:
        """Record ``serial`` unless the recorded one is as new or newer (RFC 1982)."""
        ...

    # --- the deadline clock's mark, per host (:mod:`edgeagent.deadline_clock`)
    def clock_mark(self, host: str) -> ClockMark | None:
        """The latest deadline-clock reading ``host`` recorded (``None``: none yet)."""
        ...

    def save_clock_mark(self, mark: ClockMark) -> None:
        """Record ``mark`` unless the one recorded for its host is as late or later."""
        ...


class StoreConfig(PluginConfig):
    """``[store]``: the keys of one backend, selected by ``backend``."""

    backend: str

    @abstractmethod
    def location(self, state_dir: Path) -> str:
        """Where the store lives, for people (``check-config``) and for noticing that a
        reload moved it (which needs a restart). Never includes a secret."""


ConfigT = TypeVar("ConfigT", bound=StoreConfig)


class StoreBackend(ABC, Generic[ConfigT]):
    """A store backend: ``KIND`` selects it, ``Config`` validates ``[store]``."""

    KIND: ClassVar[str]
    Config: ClassVar[type[StoreConfig]]

    @classmethod
    @abstractmethod
    def from_config(cls, config: ConfigT, state_dir: Path) -> Store:
        """Open the configured store (``state_dir``: the agent's state directory)."""

    @classmethod
    @abstractmethod
    def open_ticket_store(cls, config: ConfigT, state_dir: Path) -> TicketStorage:
        """Open the takedown ticket store that goes with the configured store."""

    def generation_indicators(self, generation_id: int) -> Iterator[Indicator]:
        """By default from the entries; a backend can read the indicators alone."""
        return (e.indicator for e in cast(Store, self).generation_entries(generation_id))

    def generation_changes(self, old_id: int, new_id: int) -> GenerationChanges:
        """By default both generations are streamed and compared in memory; a backend
        that can compare them in its database does so instead."""
        return changes_in_memory(cast(Store, self), old_id, new_id)

    def decision_changes(self, after: int) -> DecisionChanges | None:
        """By default a backend cannot say what changed since a mark."""
        return None

    def due_decisions(self, now: datetime) -> list[Decision]:
        """By default every active decision is read and the due ones kept."""
        return [
            d
            for d in cast(Store, self).active_decisions()
            if d.expires_at is not None and d.expires_at <= now
        ]

    @classmethod
    def open_leadership(cls, config: ConfigT, state_dir: Path) -> Leadership:
        """How the agents on this store choose their one leader
        (:mod:`edgeagent.leadership`); by default the store has one agent, which leads."""
        return SoleLeader()


def changes_in_memory(store: Store, old_id: int, new_id: int) -> GenerationChanges:
    """:meth:`Store.generation_changes` from the two generations' entry streams."""
    old, new = set(store.generation_entries(old_id)), set(store.generation_entries(new_id))
    return GenerationChanges(removed=tuple(old - new), added=tuple(new - old))
