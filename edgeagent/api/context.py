"""What the control API needs from the daemon, and the typed keys it keeps on the app.

The daemon builds one :class:`ApiContext` and hands it to
:func:`edgeagent.api.app.create_app`. Everything the API reads about the rest of the agent
comes through a callable here, so the API never imports the daemon and tests can supply
small fakes. The callables are called from worker threads (they may touch the store), must
be cheap, and must never return list entries in the feeds/publishers/plan sections: those
are shown to every role, ``noc`` included (``plan(True)`` is the one exception: it is
asked for supervisors only).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any

from aiohttp import web

from edgeagent.decisions import DecisionService
from edgeagent.enforcement.base import EdgeFeed
from edgeagent.intake.triage import Triage
from edgeagent.metrics import Metrics
from edgeagent.policy import PolicyIndex
from edgeagent.store.base import Store
from edgeagent.tally import EntryTally


def _empty() -> Mapping[str, Any]:
    return {}


def _no_plan(entries: bool) -> Mapping[str, Any]:
    return {}


def _ready() -> Sequence[str]:
    return ()


def sole_leader() -> Mapping[str, Any]:
    """What an agent without a leadership reports: it leads (an embedded store)."""
    return {"leader": True, "ha": {"role": "leader"}}


def _nothing() -> None:
    return None


def _no_edge_feed() -> EdgeFeed | None:
    return None


def _no_policy() -> PolicyIndex | None:
    return None


@dataclass(frozen=True, slots=True)
class ApiContext:
    """Services and settings for one API application.

    - ``store``, ``decisions``: the store and the lifecycle rules on top of it.
    - ``policy``: the :class:`PolicyIndex` in force, or ``None`` while none is loaded.
    - ``tally``: the entry counts of the policy in force (the daemon keeps them by
      change: building a million-entry index to count it costs seconds); ``None``: they
      are counted from ``policy``.
    - ``feeds``, ``publishers``: per-feed / per-publisher state for ``GET /v1/status``.
    - ``fleet``: every resolver and proxy the enforcers verify, for ``GET /v1/fleet``.
    - ``edge_feed``: the index served to edge agents (``/v1/policy/index``), if any.
    - ``reload``: what the last config reload applied and what needs a restart (ditto).
    - ``plan``: held generations and other pending work for ``GET /v1/plan``;
      ``plan(True)`` adds the entries each held generation would add or remove.
    - ``readiness``: reasons the agent is not ready; empty means ready (``/readyz``).
    - ``leader``: ``{"leader": bool, "ha": {...}}``: whether this agent leads the agents
      sharing its store, its role and theirs (``/v1/status``, ``/readyz``).
    - ``database``: the store's database as last checked (``GET /v1/status`` ``database``).
    - ``on_change``: called (from a worker thread) after every successful decision
      write, so the daemon can rebuild and republish the policy at once.
    - ``max_body_bytes``: request body cap; larger bodies get 413.
    - ``lookup_rate_per_minute``: ``GET /v1/lookup`` budget per token.
    - ``token_cache_seconds``: how long a verified token is trusted without asking the
      store again (so a revoked token stops working within this time; 0 disables).
    - ``denied_per_minute``: denied requests (401/403) a client address may make a
      minute before it is answered 429 without a token lookup.
    - ``denial_audit_seconds``: denials beyond the first of each kind are audited as one
      row with a count per this interval (:mod:`edgeagent.api.denials`).
    - ``time_zone``: dates and times given without a zone are read in this one.
    - ``metrics``: if given, every request is counted by route template and status.
    - ``clock``: monotonic seconds, for the rate limiter (tests replace it).
    - ``triage``: the intake queue's rules as the daemon wires them (appeal key,
      notifier); ``None``: one over ``decisions`` without them.
    """

    store: Store
    decisions: DecisionService
    policy: Callable[[], PolicyIndex | None] = _no_policy
    tally: Callable[[], EntryTally | None] | None = None
    feeds: Callable[[], Mapping[str, Any]] = _empty
    publishers: Callable[[], Mapping[str, Any]] = _empty
    fleet: Callable[[], Mapping[str, Any]] = _empty
    edge_feed: Callable[[], EdgeFeed | None] = _no_edge_feed
    reload: Callable[[], Mapping[str, Any]] = _empty
    plan: Callable[[bool], Mapping[str, Any]] = _no_plan
    readiness: Callable[[], Sequence[str]] = _ready
    leader: Callable[[], Mapping[str, Any]] = sole_leader
    database: Callable[[], Mapping[str, Any]] = _empty
    on_change: Callable[[], None] = _nothing
    max_body_bytes: int = 64 * 1024
    lookup_rate_per_minute: int = 60
    token_cache_seconds: float = 2.0
    denied_per_minute: int = 30
    denial_audit_seconds: float = 60.0
    time_zone: tzinfo = UTC
    metrics: Metrics | None = None
    clock: Callable[[], float] = field(default=time.monotonic)
    triage: Triage | None = None


CONTEXT = web.AppKey("edgeagent_api_context", ApiContext)
# One thread for store writes: the store serialises writes anyway, and a single writer
# thread keeps them in arrival order without lock contention.
STORE_WRITER = web.AppKey("edgeagent_api_store_writer", ThreadPoolExecutor)
OPENAPI_DOCUMENT = web.AppKey("edgeagent_api_openapi", dict[str, Any])
