"""The agent's enforcers as the daemon runs them: one call at a time each, all at once.

:class:`Enforcers` holds one enforcer per registered kind. Every call into an enforcer
goes through :meth:`Enforcers.on`, which runs it alone (the contract: never two calls at
once into one enforcer) on the enforcer of that kind *in use when the call starts*: a
reload replaces enforcers, and work asked for before it (a publish, a scheduled verify)
must reach the successor, not the retired one.

Converge until done: a publish that did not take (``Enforced.ok`` false, or an enforcer
that broke its contract and raised) is retried without a new decision, with the newest
state, after an exponential backoff with jitter (:func:`retry_delay`), until it takes or
a later publish does; so is a publish after which a verify still finds reachable targets
behind (:meth:`~edgeagent.enforcement.base.Enforcer.lagging`), until none is. The
version still waiting is exported per enforcer (``edgeagent_enforcer_pending_version``),
and so are the retries and the wait before the next one
(``edgeagent_enforcer_retry_delay_seconds``); while a version waits, readiness names it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from edgeagent.enforcement.base import (
    EdgeFeed,
    Enforced,
    Enforcer,
    EnforcerConfig,
    EnforcerContext,
    ReloadOutcome,
)
from edgeagent.logs import fields
from edgeagent.metrics import Metrics
from edgeagent.model import DesiredState
from edgeagent.reloading import changed_keys

log = logging.getLogger("edgeagent.enforcement")

Work = Callable[[Enforcer], Awaitable[object]]
Job = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class EnforcersReloaded:
    """What a reload did: keys applied, keys that need a restart, kinds replaced."""

    applied: tuple[str, ...]
    needs_restart: tuple[str, ...]
    replaced: tuple[str, ...]


RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


def retry_delay(
    attempt: int,
    first: float = RETRY_FIRST_SECONDS,
    cap: float = RETRY_MAX_SECONDS,
    jitter: Callable[[], float] = random.random,
) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...): doubling from ``first`` up to ``cap``,
    then scaled into [50 %, 100 %] so that many agents do not retry in lock step."""
    delay: float = min(cap, first * 2.0 ** max(0, attempt - 1))
    return delay * (0.5 + jitter() / 2)


class Enforcers:
    """One enforcer per kind, run for the daemon; see the module docstring."""

    def __init__(
        self,
        enforcers: Iterable[Enforcer],
        metrics: Metrics | None = None,
        *,
        retry_first: float = RETRY_FIRST_SECONDS,
        retry_max: float = RETRY_MAX_SECONDS,
    ) -> None:
        self._by_kind = {e.KIND: e for e in enforcers}
        self._locks = {kind: asyncio.Lock() for kind in self._by_kind}
        self.state: DesiredState | None = None  # the last state handed to publish()
        self.metrics = metrics
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.pending: dict[str, int] = {}  # kind -> version it has not enforced yet
        self.retries: dict[str, int] = {}  # kind -> retries since its last success
        self.next_delay: dict[str, float] = {}  # kind -> wait before its next retry
        self._retrying: dict[str, asyncio.Task[None]] = {}

    @classmethod
    def build(
        cls,
        kinds: Iterable[type[Enforcer]],
        sections: Callable[[type[EnforcerConfig]], EnforcerConfig],
        context: EnforcerContext,
    ) -> Enforcers:
        """Every kind built from its sections (``sections(kind.Config)``)."""
        return cls(
            (kind.from_config(sections(kind.Config), context) for kind in kinds),
            context.metrics,
        )

    def __iter__(self) -> Iterator[Enforcer]:
        return iter(tuple(self._by_kind.values()))

    def active(self) -> list[Enforcer]:
        return [e for e in self if e.active]

    async def on(self, kind: str, work: Work) -> None:
        """Run ``work`` on the enforcer of ``kind`` in use now, if active, alone."""
        async with self._locks[kind]:
            enforcer = self._by_kind[kind]
            if enforcer.active:
                await work(enforcer)

    async def start(self) -> None:
        for enforcer in self.active():
            await enforcer.start()

    async def publish(self, state: DesiredState) -> None:
        """Hand ``state`` to every active enforcer at once; each keeps its old state on
        error (and is retried), and a slow one never holds up the others."""
        self.state = state
        await asyncio.gather(*(self._publish_kind(kind, state) for kind in list(self._by_kind)))

    async def _publish_kind(self, kind: str, state: DesiredState) -> None:
        results: list[Enforced] = []

        async def work(enforcer: Enforcer) -> None:
            results.append(await enforcer.publish(state))

        try:
            await self.on(kind, work)
            ok = all(r.ok for r in results)  # an idle enforcer has nothing to enforce
        except Exception as exc:
            # publish never raises by contract: this is a bug in that enforcer.
            log.error(
                "an enforcer failed; its last good state stays",
                extra=fields(enforcer=kind),
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            ok = False
        if ok:
            self.pending.pop(kind, None)
            self.retries.pop(kind, None)
            self._set_delay(kind, None)
        else:
            self.pending[kind] = state.version
            self._retry_later(kind)
        if self.metrics is not None:
            gauge = self.metrics.enforcer_pending_version.labels(enforcer=kind)
            gauge.set(self.pending.get(kind, 0))

    def _set_delay(self, kind: str, seconds: float | None) -> None:
        if seconds is None:
            self.next_delay.pop(kind, None)
        else:
            self.next_delay[kind] = seconds
        if self.metrics is not None:
            self.metrics.enforcer_retry_delay.labels(enforcer=kind).set(seconds or 0)

    def _lagging(self, kind: str) -> bool:
        enforcer = self._by_kind[kind]
        return enforcer.active and bool(enforcer.lagging())

    def _retry_later(self, kind: str) -> None:
        task = self._retrying.get(kind)
        if task is None or task.done():
            self._retrying[kind] = asyncio.create_task(self._retry(kind))

    async def _retry(self, kind: str) -> None:
        """Publish the newest state to ``kind`` again until it takes (or a later publish
        does), backing off between attempts."""
        try:
            await self._retry_until_done(kind)
        finally:
            self._set_delay(kind, None)  # no retry is due any more

    async def _retry_until_done(self, kind: str) -> None:
        attempt = 0
        while kind in self.pending or self._lagging(kind):
            attempt += 1
            delay = retry_delay(attempt, self.retry_first, self.retry_max)
            self._set_delay(kind, delay)
            await asyncio.sleep(delay)
            state = self.state
            if not (kind in self.pending or self._lagging(kind)) or state is None:
                return
            self.retries[kind] = self.retries.get(kind, 0) + 1
            if self.metrics is not None:
                self.metrics.enforcer_publish_retries.labels(enforcer=kind).inc()
            log.info(
                "publish retried",
                extra=fields(enforcer=kind, version=state.version, attempt=attempt),
            )
            await self._publish_kind(kind, state)

    async def verify(self) -> None:
        """Every active enforcer checks its canaries now (readiness then says the truth)."""
        await self._on_all(lambda e: e.verify(), "its readiness is unchanged")

    async def _on_all(self, work: Work, consequence: str) -> None:
        """``work`` on every enforcer at once; one failing is logged, never the others'."""
        kinds = list(self._by_kind)
        outcomes = await asyncio.gather(
            *(self.on(kind, work) for kind in kinds), return_exceptions=True
        )
        for kind, outcome in zip(kinds, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error(
                    f"an enforcer failed; {consequence}",
                    extra=fields(enforcer=kind),
                    exc_info=(type(outcome), outcome, outcome.__traceback__),
                )

    def periodic(self, kind: str) -> dict[str, tuple[float, Job]]:
        """The scheduled work of ``kind`` now: job id -> (interval, run)."""
        enforcer = self._by_kind[kind]
        if not enforcer.active:
            return {}
        return {
            f"{kind}:{job.name}": (job.seconds, self._job(kind, job.name))
            for job in enforcer.periodic()
        }

    def _job(self, kind: str, name: str) -> Job:
        async def run() -> None:
            await self.on(kind, lambda e: _run_periodic(e, name))
            if self._lagging(kind):
                self._retry_later(kind)

        return run

    async def reload(
        self,
        sections: Callable[[type[EnforcerConfig]], EnforcerConfig],
        context: EnforcerContext,
    ) -> EnforcersReloaded:
        """Hand every enforcer its new sections (``sections(kind.Config)``)."""
        applied: list[str] = []
        failed: list[str] = []
        replaced: list[str] = []
        for kind in list(self._by_kind):
            async with self._locks[kind]:
                enforcer = self._by_kind[kind]
                config = sections(enforcer.Config)
                keys = changed_keys(enforcer.config, config)
                result = await enforcer.reload(config, context, self.state)
                self._by_kind[kind] = result.enforcer
            if result.outcome is ReloadOutcome.NEEDS_RESTART:
                failed.extend(keys)
            elif result.outcome is ReloadOutcome.APPLIED:
                applied.extend(keys)
                replaced.append(kind)
        return EnforcersReloaded(tuple(applied), tuple(failed), tuple(replaced))

    async def close(self) -> None:
        for task in self._retrying.values():
            task.cancel()
        self._retrying.clear()
        for enforcer in self:
            await enforcer.close()

    def readiness(self) -> list[str]:
        """Each active enforcer's own reasons, and every policy version not enforced yet
        (a publish that did not take and waits for its retry)."""
        reasons = [reason for e in self.active() for reason in e.readiness()]
        for e in self.active():
            version = self.pending.get(e.KIND)
            if version is not None:
                reasons.append(
                    f"{e.KIND}: policy version {version} not enforced yet "
                    f"({self.retries.get(e.KIND, 0)} retries, next in "
                    f"{self.next_delay.get(e.KIND, 0.0):.1f} s)"
                )
        return reasons

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for enforcer in self:
            out.update(enforcer.status())
        return out

    def edge_feed(self) -> EdgeFeed | None:
        """For ``/v1/policy/index``: the feed the first active enforcer serving one serves."""
        return next((f for e in self.active() if (f := e.edge_feed()) is not None), None)

    def fleet(self) -> dict[str, Any]:
        """For ``GET /v1/fleet``: every target of every active enforcer, and what each
        enforcer still has to enforce."""
        return {
            "members": [m.to_dict() for e in self.active() for m in e.fleet()],
            "enforcers": self.convergence(),
        }

    def convergence(self) -> dict[str, Any]:
        """Per active enforcer: the version still waiting to be enforced and the retries
        spent on it (``None`` and 0 when it is enforced)."""
        return {
            e.KIND: {
                "pending_version": self.pending.get(e.KIND),
                "retries": self.retries.get(e.KIND, 0),
                "next_retry_seconds": self.next_delay.get(e.KIND),
            }
            for e in self.active()
        }


async def _run_periodic(enforcer: Enforcer, name: str) -> None:
    for job in enforcer.periodic():
        if job.name == name:
            await job.run()
