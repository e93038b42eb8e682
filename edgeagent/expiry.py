"""Expire decisions on time: one timer armed for the earliest ``expires_at`` in force.

A periodic expire pass alone lets a decision stay enforced for up to its interval past
its end. The daemon arms an :class:`ExpiryTimer` with the earliest expiry of every policy
it enforces (:attr:`edgeagent.engine.PolicySnapshot.next_expiry`); when the timer fires
it runs the expire pass, the store's policy version moves, and the rebuilt policy arms
the timer for the next expiry. The periodic pass stays as a backstop.

Both read the time from the daemon's :class:`edgeagent.deadline_clock.DeadlineClock`,
which does not follow a step back of the wall clock, not even across a restart: a
decision that expires in N seconds is out of force after N seconds of elapsed time even
if the wall clock was set back meanwhile, and at once if it was set forward past the end
(early rather than late).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class ExpiryTimer:
    """Runs ``on_due`` once the wall clock reaches the armed time. Event-loop only."""

    def __init__(
        self, on_due: Callable[[], Awaitable[object]], now: Callable[[], datetime] = _now
    ) -> None:
        self._on_due = on_due
        self._now = now
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.armed_for: datetime | None = None

    def arm(self, when: datetime | None) -> None:
        """Fire at ``when`` (at once if it has passed); ``None`` disarms. Replaces any
        earlier arming: the caller passes the earliest expiry of the policy in force."""
        self.cancel()
        self.armed_for = when
        if when is not None:
            self._schedule(when)

    def cancel(self) -> None:
        """Disarm; an expire pass already running finishes."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.armed_for = None

    async def close(self) -> None:
        """Disarm and stop a running expire pass (on shutdown, before the store closes)."""
        self.cancel()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _schedule(self, when: datetime) -> None:
        delay = max(0.0, (when - self._now()).total_seconds())
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire, when)

    def _fire(self, when: datetime) -> None:
        self._handle = None
        # call_later counts on the monotonic clock, ``now`` may be the wall clock: if that
        # is still short of ``when`` (it was stepped back), wait the rest.
        if self._now() < when:
            self._schedule(when)
            return
        self.armed_for = None
        if self._task is not None and not self._task.done():
            self._again = True  # the running pass may have looked before ``when``
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self._on_due()
            except Exception:
                log.exception("expire pass failed; the periodic pass retries it")
            if not self._again:
                return
