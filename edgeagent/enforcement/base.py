"""The enforcer contract: how one policy version reaches one layer of the network edge.

An *enforcer* turns the desired state into enforcement at one layer: RPZ zones at the
resolvers (``rpz``), the proxy's hashed index and stop page (``proxy``), diversion routes
toward the proxy (``diversion``). The daemon knows them only through this contract and
the registry in :mod:`edgeagent.enforcement.kinds`, and names none of them.

Config. An enforcer owns top-level sections of the config file: the fields of its
``Config`` (an :class:`EnforcerConfig`) *are* those sections (the RPZ enforcer's are
``rpz``, ``publishers`` and ``resolvers``), and the root settings model gets exactly these
fields (:func:`owned_sections`), so the file format does not depend on who owns what.
Typed code reads them back as one value, ``settings.sections(RpzEnforcerConfig)``. Checks
that span an enforcer's sections and the feeds belong to its config
(:meth:`EnforcerConfig.cross_checks`), and so do its lines of ``check-config``
(:meth:`EnforcerConfig.summary_lines`), the DNS action of a feed without one
(:meth:`EnforcerConfig.default_feed_action`) and the agent's own names its sections use,
which the guard refuses in any list (:meth:`EnforcerConfig.reserved_names`).

Lifecycle. The daemon calls these from its event loop and never runs two of them at once
for one enforcer:

* ``from_config(config, context)`` -- build. May read secrets and create directories;
  starts nothing and sends nothing; raises :class:`~edgeagent.errors.EdgeAgentError` (or
  ``OSError``) when it cannot be built. An enforcer whose sections enable nothing is
  *idle* (:attr:`Enforcer.active` false): the daemon starts, publishes to, verifies and
  schedules only active ones.
* ``start()`` -- open what it serves itself (listeners); raises on failure.
* ``publish(state) -> Enforced`` -- make ``state`` the enforced version: done when the
  source the targets take it from accepted it (a hidden primary, a zone file, an index),
  never waiting for every target (that is ``verify``'s job). What other agents on the
  same store could also write is *fenced*: ``context.fence(what)`` right before the
  commit, so a deposed leader never overwrites a newer policy. **Never raises**: on failure
  the last good state stays in force and the result says so (and so do status and
  metrics); the daemon then publishes the newest state again, with backoff, until it
  takes, without waiting for a new decision.
* ``verify() -> reasons`` -- prove that enforcement works now (canaries, served serials);
  the reasons the agent is not ready because of this enforcer (empty: ready).
  ``readiness()`` repeats the last verify's reasons, cheaply (``/readyz``).
  ``lagging()`` names the reachable targets that, at the last verify, had not served the
  published version for a while: while there are any, the daemon publishes the same
  state again (with backoff), and a publish of a version already accepted re-sends what
  those targets need to catch up (a NOTIFY), so none waits for its next SOA refresh.
* ``status()`` -- entries for the ``publishers`` part of ``/v1/status`` (no list data).
* ``fleet()`` -- every target it enforces at (resolvers, proxies) as
  :class:`FleetMember` values, from the last verify (``GET /v1/fleet``); none by default.
* ``edge_feed()`` -- what it serves to edge agents that follow this one over HTTP
  (``GET /v1/policy/index``, :class:`EdgeFeed`); ``None`` by default. With
  ``context.role == "edge"`` an enforcer follows a centre instead of enforcing the local
  desired state.
* ``periodic()`` -- work it wants scheduled, declared as data (:class:`PeriodicJob`); the
  daemon schedules it, and again after a reload.
* ``reload(config, context, state) -> Reloaded`` -- take new sections. When neither its
  sections nor what it uses of the context (:meth:`Enforcer.inputs`) changed, nothing
  happens. Otherwise a successor is built from the new sections, started and given the
  current ``state`` *before* this one is retired (:meth:`Enforcer.hand_over`, by default
  :meth:`Enforcer.close`), so enforcement never lapses; the daemon carries on with
  ``Reloaded.enforcer``. A successor that cannot be built or started is dropped, this one
  stays, and the outcome is ``needs-restart``.
* ``close()`` -- stop the listeners. Enforcement itself stays in place (zones, index and
  routes outlive the process: enforcement must not lapse with a restart).

Enforcers never put list entries in logs, errors, status or metric labels.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self

from pydantic.fields import FieldInfo

from edgeagent.configtypes import DnsAction
from edgeagent.errors import ConfigProblem, EdgeAgentError
from edgeagent.limits import DEFAULT_LIMITS, ConnectionLimits
from edgeagent.logs import fields
from edgeagent.model import DesiredState
from edgeagent.plugins import PluginConfig

if TYPE_CHECKING:
    from edgeagent.metrics import Metrics
    from edgeagent.proxy.artefact import Artefact, EdgeReport

log = logging.getLogger("edgeagent.enforcement")


class FeedFacts(Protocol):
    """What an enforcer may know about a configured feed (a feed config satisfies it)."""

    @property
    def action(self) -> DnsAction | None: ...

    @property
    def authority(self) -> str: ...


def unfenced(what: str) -> None:
    """The fence of an agent that always leads: nothing to refuse."""
    return None


class SerialRecord(Protocol):
    """Where the last RPZ SOA serial handed out is kept: the store (central state every
    agent on it shares, so a new leader continues above the old leader's serial)."""

    def rpz_serial(self) -> int | None: ...

    def save_rpz_serial(self, serial: int) -> None: ...


@dataclass(frozen=True, slots=True)
class EnforcerContext:
    """What an enforcer is built from besides its own sections.

    ``serials`` keeps the last RPZ serial (the store). ``fence(what)`` raises
    :class:`~edgeagent.errors.Fenced` unless this agent is the leader the database knows
    (:mod:`edgeagent.leadership`); an enforcer calls it right before it commits what it
    publishes (an index renamed into place, routes changed, a zone's UPDATE applied).
    """

    state_dir: Path
    metrics: Metrics
    feeds: Mapping[str, FeedFacts] = field(default_factory=dict)
    protected_names: tuple[str, ...] = ()
    limits: ConnectionLimits = DEFAULT_LIMITS  # for the listeners it serves
    role: Literal["standalone", "edge"] = "standalone"  # [agent] role
    fence: Callable[[str], None] = unfenced
    serials: SerialRecord | None = None  # None: a file in state_dir (tools, tests)


class EnforcerConfig(PluginConfig):
    """Base of an enforcer's ``Config``: each field is a top-level section it owns."""

    def cross_checks(self, feeds: Mapping[str, FeedFacts]) -> list[ConfigProblem]:
        """Rules spanning these sections and the feeds, each with the key to change."""
        return []

    def summary_lines(self) -> list[str]:
        """These sections' lines of ``edgeagent check-config`` (no secrets, no entries)."""
        return []

    def role_checks(self, role: str) -> list[ConfigProblem]:
        """What these sections must hold for the agent's ``[agent] role``."""
        return []

    def default_feed_action(self) -> DnsAction | None:
        """The DNS action of a feed without ``action``, if these sections decide it."""
        return None

    def reserved_names(self) -> set[str]:
        """The agent's own names these sections use, which no feed or person may list
        (the guard refuses them)."""
        return set()

    def policy_zones(self) -> set[str]:
        """The DNS zones these sections write entries under (the guard refuses a name too
        long to be an owner in the longest of them)."""
        return set()


@dataclass(frozen=True, slots=True)
class Enforced:
    """What one publish did: ``ok`` false means the last good state is still in force."""

    enforcer: str
    version: int
    ok: bool
    detail: str = ""  # why not, or counts; never list data


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    """Work an enforcer wants run every ``seconds`` (one run at a time)."""

    name: str
    seconds: float
    run: Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class FleetMember:
    """One target an enforcer enforces at, as its last verify saw it.

    ``confirmed`` is the version (an RPZ serial for resolvers) the target was last seen
    serving, ``lag`` how many versions it is behind (``None``: unknown), ``canary_ok``
    and ``reachable`` the last check (``None``: not checked yet), ``checked_at`` its Unix
    time.
    """

    name: str
    enforcer: str
    kind: str
    region: str = ""
    confirmed: int | None = None
    lag: int | None = None
    canary_ok: bool | None = None
    reachable: bool | None = None
    checked_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "enforcer": self.enforcer,
            "kind": self.kind,
            "region": self.region,
            "confirmed": self.confirmed,
            "lag": self.lag,
            "canary_ok": self.canary_ok,
            "reachable": self.reachable,
            "checked_at": self.checked_at,
        }


class EdgeFeed(Protocol):
    """What an enforcer serves to the edge agents following it (``/v1/policy/index``)."""

    def artefact(self, since: int | None, digest: str = "") -> Artefact | None:
        """What an edge holding the index ``since``/``digest`` needs (``None``: it is
        current). Blocking; raises ``LookupError`` before the first publish."""

    async def wait(self, since: int, seconds: float, digest: str = "") -> None:
        """Return when a version other than ``since`` (or, given ``digest``, another
        index at that version) is served, or after ``seconds``."""

    def release(self) -> None:
        """The agent is stopping: every wait returns now, and any later one at once."""

    def report(self, report: EdgeReport) -> None:
        """Record what an edge says it installed."""


class ReloadOutcome(StrEnum):
    UNCHANGED = "unchanged"
    APPLIED = "applied"
    NEEDS_RESTART = "needs-restart"


@dataclass(frozen=True, slots=True)
class Reloaded:
    """The outcome of :meth:`Enforcer.reload` and the enforcer to carry on with."""

    outcome: ReloadOutcome
    enforcer: Enforcer


class Enforcer(ABC):
    """Base class; see the module docstring for the contract."""

    KIND: ClassVar[str]
    Config: ClassVar[type[EnforcerConfig]]

    def __init__(self, config: EnforcerConfig, context: EnforcerContext) -> None:
        self.config = config
        self.context = context

    @classmethod
    @abstractmethod
    def from_config(cls, config: EnforcerConfig, context: EnforcerContext) -> Self:
        """Build from the sections ``config`` holds; see the module docstring."""

    @property
    @abstractmethod
    def active(self) -> bool:
        """False when the sections enable nothing (the enforcer is idle)."""

    async def start(self) -> None:
        """Open what the enforcer serves itself; nothing by default."""
        return None

    @abstractmethod
    async def publish(self, state: DesiredState) -> Enforced:
        """Make ``state`` the enforced version; never raises."""

    async def verify(self) -> tuple[str, ...]:
        """Check enforcement now; the readiness reasons (empty: ready)."""
        return ()

    def readiness(self) -> tuple[str, ...]:
        """The reasons of the last :meth:`verify`."""
        return ()

    def lagging(self) -> tuple[str, ...]:
        """Reachable targets behind the published version at the last :meth:`verify`."""
        return ()

    @abstractmethod
    def status(self) -> Mapping[str, Any]:
        """Entries for ``/v1/status`` ``publishers``; empty when idle."""

    def fleet(self) -> tuple[FleetMember, ...]:
        """The targets it enforces at, as the last verify saw them."""
        return ()

    def periodic(self) -> tuple[PeriodicJob, ...]:
        """Work to schedule while active."""
        return ()

    def edge_feed(self) -> EdgeFeed | None:
        """What it serves to edge agents, if anything."""
        return None

    def inputs(self, context: EnforcerContext) -> object:
        """What this enforcer uses of ``context``: a change to it means a rebuild."""
        return context.state_dir

    async def reload(
        self, config: EnforcerConfig, context: EnforcerContext, state: DesiredState | None
    ) -> Reloaded:
        """Take new sections without a gap in enforcement; see the module docstring."""
        if config == self.config and self.inputs(context) == self.inputs(self.context):
            return Reloaded(ReloadOutcome.UNCHANGED, self)
        successor: Enforcer | None = None
        try:
            successor = self.rebuild(config, context)
            if successor.active:
                await successor.start()
                if state is not None:
                    await successor.publish(state)
        except (EdgeAgentError, OSError) as exc:
            log.error(
                "new config not applied; the running one stays until a restart",
                extra=fields(enforcer=self.KIND, error=f"{type(exc).__name__}: {exc}"),
            )
            if successor is not None:
                await successor.close()
            return Reloaded(ReloadOutcome.NEEDS_RESTART, self)
        await self.hand_over(successor, state)
        return Reloaded(ReloadOutcome.APPLIED, successor)

    def rebuild(self, config: EnforcerConfig, context: EnforcerContext) -> Enforcer:
        """The successor for :meth:`reload` (built like :meth:`from_config`)."""
        return self.from_config(config, context)

    async def hand_over(self, successor: Enforcer, state: DesiredState | None) -> None:
        """Retire in favour of ``successor`` (already started and published to)."""
        await self.close()

    async def close(self) -> None:
        """Stop what :meth:`start` opened; nothing by default."""
        return None


def owned_sections(enforcers: Iterable[type[Enforcer]]) -> dict[str, tuple[Any, FieldInfo]]:
    """The top-level sections the enforcers own, as fields of the root settings model
    (:func:`edgeagent.plugins.concrete_model`'s ``extra_fields``)."""
    out: dict[str, tuple[Any, FieldInfo]] = {}
    for enforcer in enforcers:
        for key, info in enforcer.Config.model_fields.items():
            if key in out:
                raise TypeError(f"config section {key!r} is owned by two enforcers")
            out[key] = (info.annotation, info)
    return out
