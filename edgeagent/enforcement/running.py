"""The agent's enforcers as the daemon runs them: one call at a time each, all at once.

:class:`Enforcers` holds one enforcer per registered kind. Every call into an enforcer
goes through :meth:`Enforcers.on`, which runs it alone (the contract: never two calls at
once into one enforcer) on the enforcer of that kind *in use when the call starts*: a
reload replaces enforcers, and work asked for before it (a publish, a scheduled verify)
must reach the successor, not the retired one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from edgeagent.enforcement.base import (
    Enforcer,
    EnforcerConfig,
    EnforcerContext,
    ReloadOutcome,
)
from edgeagent.logs import fields
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


class Enforcers:
    """One enforcer per kind, run for the daemon; see the module docstring."""

    def __init__(self, enforcers: Iterable[Enforcer]) -> None:
        self._by_kind = {e.KIND: e for e in enforcers}
        self._locks = {kind: asyncio.Lock() for kind in self._by_kind}
        self.state: DesiredState | None = None  # the last state handed to publish()

    @classmethod
    def build(
        cls,
        kinds: Iterable[type[Enforcer]],
        sections: Callable[[type[EnforcerConfig]], EnforcerConfig],
        context: EnforcerContext,
    ) -> Enforcers:
        """Every kind built from its sections (``sections(kind.Config)``)."""
        return cls(kind.from_config(sections(kind.Config), context) for kind in kinds)

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
        error, and a slow one (a resolver that takes its time to confirm) never holds up
        the others."""
        self.state = state
        kinds = list(self._by_kind)
        jobs = [self.on(kind, lambda e: e.publish(state)) for kind in kinds]
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        for kind, outcome in zip(kinds, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                # publish never raises by contract: this is a bug in that enforcer.
                log.error(
                    "an enforcer failed; its last good state stays",
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
        for enforcer in self:
            await enforcer.close()

    def readiness(self) -> list[str]:
        return [reason for e in self.active() for reason in e.readiness()]

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for enforcer in self:
            out.update(enforcer.status())
        return out


async def _run_periodic(enforcer: Enforcer, name: str) -> None:
    for job in enforcer.periodic():
        if job.name == name:
            await job.run()
