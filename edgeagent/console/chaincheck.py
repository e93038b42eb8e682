"""The audit chain check the console offers: the whole chain, one check at a time, in
the background.

Verifying recomputes every row's hash, so it takes time in proportion to the log (about
half a second per 10,000 rows on a small host) and the log only grows; the check holds
the interpreter's lock much of that time, slowing every other page meanwhile. A page
asks and waits at most a short budget: a small log's answer is on the page at once; a
long check goes on after the page is sent, and the next request for the page shows its
answer. An answer is shown again, with its time, for ``fresh`` seconds; a later ask
starts a new check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from edgeagent.store.base import AuditVerification


@dataclass(frozen=True, slots=True)
class ChainAnswer:
    """What a page shows: the result of the check that began at ``started_at``, or None
    while it still runs."""

    started_at: datetime
    result: AuditVerification | None


class ChainCheck:
    """One background verification at a time (see the module docstring)."""

    def __init__(
        self,
        verify: Callable[[], AuditVerification],
        fresh: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._verify = verify
        self._fresh = fresh
        self._clock = clock
        self._task: asyncio.Task[AuditVerification] | None = None
        self._started_at = datetime.now(UTC)
        self._last: tuple[float, ChainAnswer] | None = None  # (finished, answer)

    async def ask(self, wait: float) -> ChainAnswer:
        """The last answer while fresh; else start a check unless one runs, and give its
        result if it is done within ``wait`` seconds. A store error of the check is
        raised here, as a direct read's would be (and the next ask checks again)."""
        if self._task is None:
            if self._last is not None and self._clock() - self._last[0] < self._fresh:
                return self._last[1]
            self._task = asyncio.create_task(asyncio.to_thread(self._verify))
            self._started_at = datetime.now(UTC)
        task = self._task
        done, _ = await asyncio.wait({task}, timeout=wait)
        if not done:
            return ChainAnswer(self._started_at, None)
        self._task = None
        answer = ChainAnswer(self._started_at, task.result())
        self._last = (self._clock(), answer)
        return answer
