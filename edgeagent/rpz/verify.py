"""Continuous proof that every resolver enforces the current policy version.

After each publish and every ``rpz.verify_interval_seconds`` the daemon calls
:meth:`Verifier.check`: every configured resolver is asked for the canary (the compiler
gives it a TXT ``edgeagent-canary serial=N`` plus an A record in the policy zone), which
proves in one query that the policy is applied and which version is served. Per resolver
it records the canary result, the serial served and the lag behind the published serial
(RFC 1982 arithmetic), in the metrics and in a :class:`VerificationState`.

Readiness: a resolver is *stale* once it has served an older serial than the published
one (or none at all) for longer than ``grace_seconds`` since that serial was published;
:attr:`VerificationState.ready` is false while any resolver is stale. Resolvers with
``serial_check = "none"`` are queried for the canary but never make the agent unready.

Only ``query`` checks are implemented: ``rndc``/``unbound-control`` serial checks are read
the same way (the canary TXT carries the serial), which needs the agent's address to be
allowed to query the resolver -- as it must be for the canary anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from edgeagent.metrics import Metrics
from edgeagent.rpz.publishers.base import CanaryResult, ResolverTarget, query_canary
from edgeagent.rpz.zonetext import serial_lag


@dataclass(frozen=True, slots=True)
class ResolverCheck:
    """A resolver to verify: where, and whether its serial counts for readiness."""

    target: ResolverTarget
    counts_for_readiness: bool = True


@dataclass(frozen=True, slots=True)
class ResolverStatus:
    """What one resolver showed at the last check.

    ``serial`` is ``None`` when the canary was not answered with a serial (resolver down,
    policy not applied). ``lag`` is the number of versions behind, ``None`` if unknown.
    ``behind_since`` is the wall-clock time since which the resolver has not served the
    published serial (``None`` while it is current).
    """

    name: str
    host: str
    port: int
    canary_ok: bool
    serial: int | None
    lag: int | None
    checked_at: float
    seconds: float
    behind_since: float | None
    stale: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "canary_ok": self.canary_ok,
            "serial": self.serial,
            "lag": self.lag,
            "checked_at": self.checked_at,
            "query_seconds": round(self.seconds, 4),
            "behind_since": self.behind_since,
            "stale": self.stale,
        }


@dataclass(frozen=True, slots=True)
class VerificationState:
    """The last verification of every resolver, for ``/readyz`` and ``/v1/status``."""

    published_serial: int | None
    resolvers: tuple[ResolverStatus, ...]
    checked_at: float | None
    grace_seconds: float

    @property
    def ready(self) -> bool:
        """False while a resolver serves a stale serial past the grace period."""
        return not any(r.stale for r in self.resolvers)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the agent is not ready (resolver names only), empty when ready."""
        return tuple(
            f"resolver {r.name} serves serial {r.serial} (published {self.published_serial})"
            for r in self.resolvers
            if r.stale
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "published_serial": self.published_serial,
            "checked_at": self.checked_at,
            "grace_seconds": self.grace_seconds,
            "ready": self.ready,
            "reasons": list(self.reasons),
            "resolvers": [r.to_dict() for r in self.resolvers],
        }


EMPTY = VerificationState(None, (), None, 0.0)


class Verifier:
    """Queries every resolver's canary and keeps each one's "behind since" time.

    Thread-safe enough for one caller at a time (the daemon's verification job); the
    returned states are immutable values.
    """

    def __init__(
        self,
        resolvers: Sequence[ResolverCheck],
        canary: str,
        *,
        grace_seconds: float,
        metrics: Metrics | None = None,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
        query: Callable[[ResolverTarget, str, float], CanaryResult] = query_canary,
    ) -> None:
        self.resolvers = tuple(resolvers)
        self.canary = canary
        self.grace_seconds = grace_seconds
        self.metrics = metrics
        self.timeout = timeout
        self.clock = clock
        self._query = query
        self._published: int | None = None
        self._published_at: float | None = None
        self._behind_since: dict[str, float] = {}
        self.last: VerificationState = EMPTY

    def note_published(self, serial: int, when: float | None = None) -> None:
        """Record that ``serial`` is now the version every resolver should serve."""
        if serial != self._published:
            self._published = serial
            self._published_at = self.clock() if when is None else when

    def check(self) -> VerificationState:
        """Query every resolver now (in parallel) and return the new state."""
        now = self.clock()
        results: list[CanaryResult] = []
        if self.resolvers:
            with ThreadPoolExecutor(max_workers=min(8, len(self.resolvers))) as pool:
                results = list(
                    pool.map(
                        lambda rc: self._query(rc.target, self.canary, self.timeout),
                        self.resolvers,
                    )
                )
        statuses = tuple(
            self._status(rc, res, now) for rc, res in zip(self.resolvers, results, strict=True)
        )
        self.last = VerificationState(self._published, statuses, now, self.grace_seconds)
        return self.last

    def _status(self, rc: ResolverCheck, res: CanaryResult, now: float) -> ResolverStatus:
        t = rc.target
        published = self._published
        lag: int | None = None
        if res.serial is not None and published is not None:
            lag = serial_lag(published, res.serial)
        current = published is None or (res.serial is not None and lag == 0)
        since: float | None = None
        if current:
            self._behind_since.pop(t.name, None)
        else:
            since = self._behind_since.setdefault(
                t.name, self._published_at if self._published_at is not None else now
            )
        stale = rc.counts_for_readiness and since is not None and now - since > self.grace_seconds
        if self.metrics is not None:
            m = self.metrics
            m.rpz_canary_ok.labels(resolver=t.name).set(1 if res.blocked else 0)
            if res.serial is not None:
                m.rpz_resolver_serial.labels(resolver=t.name).set(res.serial)
            # Unknown lag (no answer) is NaN, not a stale number that looks healthy.
            m.rpz_serial_lag.labels(resolver=t.name).set(float("nan") if lag is None else lag)
        return ResolverStatus(
            name=t.name,
            host=t.host,
            port=t.port,
            canary_ok=res.blocked,
            serial=res.serial,
            lag=lag,
            checked_at=now,
            seconds=res.seconds,
            behind_since=since,
            stale=stale,
        )
