"""Periodic jobs on the event loop, timed by the monotonic clock.

A scheduler that computes each next run from the wall clock (APScheduler 3 does) stalls
for the size of a backward clock step: the clock set back a day, and the verify, expiry,
reconcile and takedown passes wait a day. Here an interval job waits its ``seconds`` on
the loop's monotonic clock between runs, whatever the wall clock does. A cron job (a
feed's ``cron``) runs at wall-clock times by definition: its wait is measured against the
wall clock again at least every :data:`CRON_RECHECK_SECONDS`, so a step either way
moves its next run with the clock and never holds it back for longer.

Contract of :class:`PeriodicJobs` (event loop only):

- ``every(job_id, seconds, run, ...)`` / ``cron(job_id, expression, run, ...)`` add a
  job, replacing one with the same id; an interval job first runs one interval after it
  is added (plus jitter);
- one run of a job at a time; runs missed while one ran too long collapse into one;
- ``jitter``: a random delay of up to that many seconds added to each run;
- ``grace``: a run the event loop delays by more than this many seconds (a loop
  stall, not a clock step) is skipped until the next one;
- an exception in a run is logged and the job keeps its schedule;
- while paused, runs falling due are skipped (a standby does no leader work);
- ``remove(job_id)`` says whether the job existed; ``close()`` cancels every job and
  waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)

Run = Callable[[], Awaitable[object]]

CRON_RECHECK_SECONDS = 60.0
"""The longest a cron job waits without looking at the wall clock again."""
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class JobTiming:
    """How a job is spread and how late a run may start (see the module docstring)."""

    jitter: float = 0.0
    grace: float = 60.0


def next_due(due: float, now: float, seconds: float, grace: float) -> float:
    """The monotonic time of the run after the one due at ``due``: one interval later,
    or, when that is missed by more than ``grace``, the first slot of the schedule still
    ahead (missed runs collapse; a slot late by less than ``grace`` runs at once)."""
    nxt = due + seconds
    if nxt < now - grace:
        nxt += math.ceil((now - nxt) / seconds) * seconds
    return nxt


class PeriodicJobs:
    """Interval and cron jobs as asyncio tasks (see the module docstring)."""

    def __init__(self, *, paused: bool = False) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.paused = paused

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def job_ids(self) -> list[str]:
        return sorted(self._tasks)

    def every(self, job_id: str, seconds: float, run: Run, timing: JobTiming = JobTiming()) -> None:
        """Run ``run`` every ``seconds`` (monotonic clock), replacing job ``job_id``."""
        if seconds <= 0:
            raise ValueError(f"{job_id}: the interval must be positive, not {seconds}")
        self._start(job_id, self._every(job_id, seconds, run, timing))

    def cron(self, job_id: str, expression: str, run: Run, timing: JobTiming = JobTiming()) -> None:
        """Run ``run`` at the wall-clock times of the crontab ``expression`` (UTC)."""
        from apscheduler.triggers.cron import CronTrigger  # only its time arithmetic

        trigger = CronTrigger.from_crontab(expression, timezone=UTC)
        trigger.jitter = int(timing.jitter) or None

        def next_fire(now: datetime) -> datetime:
            # Strictly after ``now``: a run that ends within its own microsecond must not
            # be repeated.
            fire: datetime | None = trigger.get_next_fire_time(None, now + _TICK)
            if fire is None:
                raise ValueError(f"{job_id}: {expression!r} never fires")
            return fire

        self._start(job_id, self._cron(job_id, next_fire, run, timing))

    def remove(self, job_id: str) -> bool:
        task = self._tasks.pop(job_id, None)
        if task is None:
            return False
        task.cancel()
        return True

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _start(self, job_id: str, loop_body: Coroutine[object, object, None]) -> None:
        self.remove(job_id)
        task = asyncio.get_running_loop().create_task(loop_body)
        task.set_name(f"job:{job_id}")
        self._tasks[job_id] = task

    async def _every(self, job_id: str, seconds: float, run: Run, timing: JobTiming) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due = next_due(due, loop.time(), seconds, timing.grace)
            wake = due + random.uniform(0, timing.jitter)
            await asyncio.sleep(max(0.0, wake - loop.time()))
            if loop.time() - wake <= timing.grace:
                await self._run(job_id, run)

    async def _cron(
        self,
        job_id: str,
        next_fire: Callable[[datetime], datetime],
        run: Run,
        timing: JobTiming,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            fire = next_fire(datetime.now(UTC))
            late = 0.0
            while (left := (fire - datetime.now(UTC)).total_seconds()) > 0:
                wait = min(left, CRON_RECHECK_SECONDS)
                wake = loop.time() + wait
                await asyncio.sleep(wait)
                late = loop.time() - wake
            if late <= timing.grace:
                await self._run(job_id, run)

    async def _run(self, job_id: str, run: Run) -> None:
        if self.paused:
            return
        try:
            await run()
        except Exception:  # one failing run never ends the job
            log.exception("periodic job failed; it runs again at its next time: %s", job_id)
