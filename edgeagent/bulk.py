"""Helpers for million-entry work (feed ingest, policy merge)."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

PACE_CHUNK = 2000
"""Items between two looks at the clock in :func:`paced` (a few milliseconds of work)."""
_pace = {"share": 1.0}  # the daemon lowers it while its event loop answers requests


class _InFlight:
    """API requests being answered now (the daemon's API middleware counts them): bulk
    loops pause only while there are some, as no one else waits for the GIL otherwise."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.count += n


_in_flight = _InFlight()


@contextmanager
def request_in_flight() -> Iterator[None]:
    """Count one API request as being answered for the duration (paced loops pause)."""
    _in_flight.add(1)
    try:
        yield
    finally:
        _in_flight.add(-1)


@contextmanager
def request_aside() -> Iterator[None]:
    """Inside :func:`request_in_flight`: the request does not count for the duration (a
    long poll, or a request waiting for the very bulk work that would pause for it)."""
    _in_flight.add(-1)
    try:
        yield
    finally:
        _in_flight.add(1)


def requests_in_flight() -> int:
    """How many API requests are being answered now."""
    return _in_flight.count


def set_pace(share: float) -> float:
    """Let paced bulk loops work ``share`` (0 < share <= 1) of the time from now on (1:
    no pauses, as one-shot commands want); returns the share before."""
    before, _pace["share"] = _pace["share"], min(1.0, max(0.05, share))
    return before


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for a bulk build.

    Parsing or merging a million-entry list allocates millions of acyclic objects; the
    collector's full passes over them cost seconds and free nothing. Nested or concurrent
    uses are safe: only the outermost user that found it enabled turns it back on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Pacer:
    """Sleeps at the points a bulk loop calls :meth:`pause` so that, while API requests
    are being answered (:func:`request_in_flight`), the loop works at most ``share`` of
    the time (by default the one :func:`set_pace` set); with none waiting, it never sleeps.

    Bulk work on a million entries runs in a worker thread and holds the GIL while it
    computes; the event loop then answers requests only at the switch interval, and on a
    busy machine hardly at all for long stretches. Sleeping releases the GIL and the CPU:
    the API keeps its latency, the bulk work takes longer. The time measured is wall
    time, so work already slowed down by the event loop sleeps less; work done while no
    request was in flight owes no sleep.
    """

    def __init__(self, share: float | None = None) -> None:
        share = _pace["share"] if share is None else share
        self._rest = (1 - share) / share
        self._since = time.perf_counter()

    def pause(self) -> None:
        """Sleep in proportion to the work since the last pause (call it between chunks
        of a few milliseconds of work, never while holding a lock others wait for)."""
        if self._rest > 0 and _in_flight.count > 0:
            time.sleep((time.perf_counter() - self._since) * self._rest)
        self._since = time.perf_counter()


def paced(items: Iterable[T], share: float | None = None, chunk: int = PACE_CHUNK) -> Iterator[T]:
    """``items``, with a :class:`Pacer` pause after every ``chunk`` of them (the work of
    the consumer between them included)."""
    pacer = Pacer(share)
    for n, item in enumerate(items, 1):
        yield item
        if n % chunk == 0:
            pacer.pause()
