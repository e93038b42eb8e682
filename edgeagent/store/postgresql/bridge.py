"""An event loop in a daemon thread of its own, and the bridge that runs coroutines on it.

The PostgreSQL backend uses psycopg's asyncio API, but the store contract
(:class:`edgeagent.store.base.Store`) is synchronous and thread-safe: the app calls it from
worker threads (``asyncio.to_thread``) and the CLI calls it with no event loop at all. So
the database gets a loop of its own (:class:`LoopThread`, "the database's loop"): the pool
and its connections live there, and a synchronous method hands its SQL to that loop as one
coroutine (:meth:`LoopThread.run`, or the :func:`bridged` decorator) and waits for the
result in the caller's thread.

No driver import here: :mod:`.store` uses :func:`bridged` and is imported with every config
check, whatever the backend.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from edgeagent.errors import StoreError

T = TypeVar("T")
P = ParamSpec("P")


class LoopThread:
    """An asyncio event loop running in a daemon thread named ``name`` until :meth:`close`
    (or until the interpreter exits: see :func:`_close_at_exit`)."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        # run() and close() decide under this lock, so no coroutine is handed to a loop
        # that has stopped (its caller would wait forever).
        self._lock = threading.Lock()
        self._closed = False
        self._finishing: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        _open.add(self)

    def _serve(self) -> None:
        # The Runner's exit cancels what is still running (its callers get "store is
        # closed"), finishes async generators, joins the executor that resolves host
        # names, and closes the loop: nothing is left behind.
        with asyncio.Runner(loop_factory=lambda: self._loop) as runner:
            runner.run(self._stop.wait())

    @property
    def closed(self) -> bool:
        return self._closed

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the loop and wait for its result (or its exception).

        ``StoreError`` if the loop is closed (or closes meanwhile); ``RuntimeError`` if
        called from the loop's own thread, where waiting would block the very loop that
        has to do the work.
        """
        if threading.current_thread() is self._thread:
            work.close()
            what = getattr(work, "__qualname__", "a store call")
            raise RuntimeError(
                f"{what}: the synchronous store was called from its database's own event "
                "loop, which would wait for itself; code on that loop awaits the SQL instead"
            )
        with self._lock:
            if self._closed:
                work.close()
                raise StoreError("store is closed")
            future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise StoreError("store is closed") from None  # close() cancelled it
        except BaseException:
            # The caller gives up (KeyboardInterrupt, say): so does the work.
            future.cancel()
            raise

    def finish(self, work: Coroutine[Any, Any, None]) -> None:
        """:meth:`run` for cleanup that may come from the loop's own thread: a generator
        that the garbage collector finalizes there. There it cannot wait, so ``work`` is
        scheduled on the loop instead."""
        if threading.current_thread() is self._thread:
            task = self._loop.create_task(work)
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)
        else:
            self.run(work)

    def close(self, last: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        """Run ``last()`` on the loop (e.g. closing the pool), then stop the loop and join
        its thread. Later :meth:`run` calls raise ``StoreError``. Idempotent."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("the database's loop cannot close itself (it would join itself)")
        with self._lock:
            if self._closed:
                return
            self._closed = True
            done = asyncio.run_coroutine_threadsafe(last(), self._loop) if last else None
        try:
            if done is not None:
                done.result()
        finally:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join()
            _open.discard(self)


_open: weakref.WeakSet[LoopThread] = weakref.WeakSet()
"""Loops not closed yet."""


@atexit.register
def _close_at_exit() -> None:
    """Close the loops a program left open, while their threads still run. Past this
    point the interpreter stops daemon threads where they stand: a stream still open
    then, finalized at exit, would wait forever for a loop that no longer turns. Closed,
    it gets "store is closed" at once, and the server sees its sessions end cleanly."""
    for loop in list(_open):
        loop.close()


class _Runs(Protocol):
    def run(self, work: Coroutine[Any, Any, T]) -> T: ...


class OnLoop(Protocol):
    """What :func:`bridged` needs of the object: its pool, which runs coroutines."""

    @property
    def _pool(self) -> _Runs: ...


S = TypeVar("S", bound=OnLoop)


def bridged(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], T]:
    """The synchronous method of an async one: each call runs it on the database's loop
    (``self._pool.run``) and returns its result. Code already on that loop awaits the
    undecorated SQL helpers instead; calling a bridged method there raises."""

    @functools.wraps(method)
    def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._pool.run(method(self, *args, **kwargs))

    return call
