"""Continuous proof that every resolver enforces the current policy version.

After each publish and every ``rpz.verify_interval_seconds`` the daemon calls
:meth:`Verifier.check`: every configured resolver is asked for the canary (the compiler
gives it a TXT ``edgeagent-canary serial=N`` plus an A record in the policy zone), which
proves in one query that the policy is applied and which version is served. Per resolver
it records the canary result, the serial served and the lag behind the published serial
(RFC 1982 arithmetic), in the metrics and in a :class:`VerificationState`.

The pass runs apart from publishing and never holds it up: every canary is in flight at
once (a bounded pool, :data:`~edgeagent.rpz.publishers.base.QUERY_POOL`), so a pass over
a hundred resolvers with ten dead costs about one query timeout.

Readiness: a resolver is *stale* once it has served an older serial than the published
one (or none at all) for longer than ``grace_seconds`` since that serial was published;
:attr:`VerificationState.ready` is false while any resolver is stale. A resolver that does
not answer at all is *unreachable*: an alert (metric, readiness reason), never a failed
publish. Resolvers with ``serial_check = "none"`` are queried for the canary but never
make the agent unready. When resolvers name a ``region``, each region must have at least
``quorum`` of its resolvers serving the published serial once the grace period is over.

Staleness is exported per resolver as the seconds since it last served the published
serial (:attr:`ResolverStatus.confirmed_at`): with the centre gone resolvers keep the last
zone until SOA expire, and this is what the staleness alert watches.

Only ``query`` checks are implemented: ``rndc``/``unbound-control`` serial checks are read
the same way (the canary TXT carries the serial), which needs the agent's address to be
allowed to query the resolver -- as it must be for the canary anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgeagent.rpz.publishers.base import (
    CanaryQuery,
    CanaryResult,
    ResolverTarget,
    query_all,
    query_canary,
)
from edgeagent.rpz.zonetext import serial_lag

if TYPE_CHECKING:
    from edgeagent.metrics import Metrics


@dataclass(frozen=True, slots=True)
class ResolverCheck:
    """A resolver to verify: where, and whether its serial counts for readiness."""

    target: ResolverTarget
    counts_for_readiness: bool = True


@dataclass(frozen=True, slots=True)
class ResolverStatus:
    """What one resolver showed at the last check.

    ``serial`` is ``None`` when the canary was not answered with a serial (resolver down,
    policy not applied); ``reachable`` is false when it did not answer at all. ``lag`` is
    the number of versions behind, ``None`` if unknown. ``confirmed_serial`` is the last
    serial it was seen serving (kept while it is down), ``confirmed_at`` when it last
    served the published one. ``behind_since`` is the wall-clock time since which the
    resolver has not served the published serial (``None`` while it is current).
    """

    name: str
    kind: str
    region: str
    host: str
    port: int
    reachable: bool
    canary_ok: bool
    serial: int | None
    lag: int | None
    checked_at: float
    seconds: float
    behind_since: float | None
    stale: bool
    confirmed_serial: int | None = None
    confirmed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "region": self.region,
            "host": self.host,
            "port": self.port,
            "reachable": self.reachable,
            "canary_ok": self.canary_ok,
            "serial": self.serial,
            "lag": self.lag,
            "checked_at": self.checked_at,
            "query_seconds": round(self.seconds, 4),
            "behind_since": self.behind_since,
            "stale": self.stale,
            "confirmed_serial": self.confirmed_serial,
            "confirmed_at": self.confirmed_at,
        }


@dataclass(frozen=True, slots=True)
class RegionStatus:
    """How many of a region's resolvers serve the published serial."""

    region: str
    resolvers: int
    current: int
    quorum: float

    @property
    def converged(self) -> float:
        return self.current / self.resolvers if self.resolvers else 1.0

    @property
    def has_quorum(self) -> bool:
        return self.converged >= self.quorum

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "resolvers": self.resolvers,
            "current": self.current,
            "quorum": self.quorum,
            "has_quorum": self.has_quorum,
        }


@dataclass(frozen=True, slots=True)
class VerificationState:
    """The last verification of every resolver, for ``/readyz``, ``/v1/status`` and
    ``/v1/fleet``."""

    published_serial: int | None
    resolvers: tuple[ResolverStatus, ...]
    checked_at: float | None
    grace_seconds: float
    regions: tuple[RegionStatus, ...] = ()
    seconds: float = 0.0  # how long the pass took

    @property
    def ready(self) -> bool:
        """False while a resolver serves a stale serial past the grace period."""
        return not self.reasons

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the agent is not ready (resolver and region names only), empty when ready."""
        out: list[str] = []
        for r in self.resolvers:
            if r.stale and not r.reachable:
                out.append(f"resolver {r.name} unreachable (published {self.published_serial})")
            elif r.stale:
                out.append(
                    f"resolver {r.name} serves serial {r.serial} "
                    f"(published {self.published_serial})"
                )
        past_grace = any(r.stale for r in self.resolvers)
        out.extend(
            f"region {g.region}: {g.current} of {g.resolvers} resolvers serve serial "
            f"{self.published_serial} (quorum {g.quorum:g})"
            for g in self.regions
            if past_grace and not g.has_quorum
        )
        return tuple(out)

    def lagging(self, for_seconds: float = 0.0) -> tuple[ResolverStatus, ...]:
        """Reachable resolvers that have not served the published serial for more than
        ``for_seconds`` (at the last check)."""
        return tuple(
            r
            for r in self.resolvers
            if r.reachable
            and r.behind_since is not None
            and r.checked_at - r.behind_since > for_seconds
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "published_serial": self.published_serial,
            "checked_at": self.checked_at,
            "pass_seconds": round(self.seconds, 4),
            "grace_seconds": self.grace_seconds,
            "ready": self.ready,
            "reasons": list(self.reasons),
            "regions": [g.to_dict() for g in self.regions],
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
        timeout: float = 1.5,
        quorum: float = 0.5,
        clock: Callable[[], float] = time.time,
        query: CanaryQuery = query_canary,
    ) -> None:
        self.resolvers = tuple(resolvers)
        self.canary = canary
        self.grace_seconds = grace_seconds
        self.metrics = metrics
        self.timeout = timeout
        self.quorum = quorum
        self.clock = clock
        self._query = query
        self._published: int | None = None
        self._published_at: float | None = None
        self._behind_since: dict[str, float] = {}
        self._confirmed: dict[str, tuple[int, float]] = {}  # name -> (serial, last seen)
        self._current_at: dict[str, float] = {}  # name -> last time it served the published
        self.started_at = clock()
        self.last: VerificationState = EMPTY

    def note_published(self, serial: int, when: float | None = None) -> None:
        """Record that ``serial`` is now the version every resolver should serve."""
        if serial != self._published:
            self._published = serial
            self._published_at = self.clock() if when is None else when

    def check(self) -> VerificationState:
        """Query every resolver now (in parallel) and return the new state."""
        now = self.clock()
        started = time.monotonic()
        targets = [rc.target for rc in self.resolvers]
        results = query_all(targets, self.canary, self.timeout, self._query)
        statuses = tuple(
            self._status(rc, res, now) for rc, res in zip(self.resolvers, results, strict=True)
        )
        regions = self._regions(statuses)
        seconds = time.monotonic() - started
        if self.metrics is not None:
            self.metrics.rpz_verify_seconds.set(seconds)
            for g in regions:
                self.metrics.rpz_region_converged.labels(region=g.region).set(g.converged)
        self.last = VerificationState(
            self._published, statuses, now, self.grace_seconds, regions, seconds
        )
        return self.last

    def _regions(self, statuses: Sequence[ResolverStatus]) -> tuple[RegionStatus, ...]:
        counts: dict[str, list[int]] = {}
        for r in statuses:
            if not r.region:
                continue
            total_current = counts.setdefault(r.region, [0, 0])
            total_current[0] += 1
            total_current[1] += 1 if r.lag == 0 or self._published is None else 0
        return tuple(
            RegionStatus(region, total, current, self.quorum)
            for region, (total, current) in sorted(counts.items())
        )

    def _status(self, rc: ResolverCheck, res: CanaryResult, now: float) -> ResolverStatus:
        t = rc.target
        published = self._published
        lag: int | None = None
        if res.serial is not None and published is not None:
            lag = serial_lag(published, res.serial)
        if res.serial is not None:
            self._confirmed[t.name] = (res.serial, now)
        current = published is None or (res.serial is not None and lag == 0)
        since: float | None = None
        if current:
            self._behind_since.pop(t.name, None)
            self._current_at[t.name] = now
        else:
            since = self._behind_since.setdefault(
                t.name, self._published_at if self._published_at is not None else now
            )
        stale = rc.counts_for_readiness and since is not None and now - since > self.grace_seconds
        confirmed = self._confirmed.get(t.name)
        current_at = self._current_at.get(t.name)
        if self.metrics is not None:
            m = self.metrics
            m.rpz_canary_ok.labels(resolver=t.name).set(1 if res.blocked else 0)
            m.rpz_resolver_reachable.labels(resolver=t.name).set(1 if res.answered else 0)
            if res.serial is not None:
                m.rpz_resolver_serial.labels(resolver=t.name).set(res.serial)
            # Unknown lag (no answer) is NaN, not a stale number that looks healthy.
            m.rpz_serial_lag.labels(resolver=t.name).set(float("nan") if lag is None else lag)
            # Never confirmed: counted from when the agent started watching it.
            age = now - (current_at if current_at is not None else self.started_at)
            m.rpz_resolver_confirmed_age.labels(resolver=t.name).set(max(0.0, age))
        return ResolverStatus(
            name=t.name,
            kind=t.kind,
            region=t.region,
            host=t.host,
            port=t.port,
            reachable=res.answered,
            canary_ok=res.blocked,
            serial=res.serial,
            lag=lag,
            checked_at=now,
            seconds=res.seconds,
            behind_since=since,
            stale=stale,
            confirmed_serial=confirmed[0] if confirmed is not None else None,
            confirmed_at=current_at,
        )
