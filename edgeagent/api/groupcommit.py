"""Group commit of ``POST /v1/decisions``: the requests that arrive while the store
writer is busy are stored together, in its next transaction.

A decision write costs mostly its transaction, not its rows: the commit's flush to disk,
and on PostgreSQL the round trips made under the policy lock. Written one by one through
the single writer thread, they queue behind each other's commits. Here each request waits
on the event loop instead; one drain at a time hands every request waiting to the writer
thread as one :meth:`edgeagent.decisions.DecisionService.create_many` call (one lock, one
audit append of all its rows, one policy bump), and answers each request with its own
outcome once that transaction has committed, never before. No timer delays a request: a
lone one goes at once, and batches grow only with the load.

If a whole batch fails for a reason that may be one request's own (not a lost database,
which every request would meet alike), each of its requests is tried again alone, so one
bad request cannot fail the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from edgeagent.decisions import DecisionRequest
from edgeagent.errors import EdgeAgentError, StoreUnavailable
from edgeagent.model import Decision

Outcome = Decision | EdgeAgentError
Commit = Callable[[Sequence[tuple[DecisionRequest, str]]], Awaitable[list[Outcome]]]
"""Stores ``(request, actor)`` pairs in one transaction; an outcome per pair, in order."""

MAX_BATCH = 500
"""Requests per transaction at most: bounds how long the policy lock is held."""


@dataclass(frozen=True, slots=True)
class _Waiting:
    request: DecisionRequest
    actor: str
    answer: asyncio.Future[Decision]


class DecisionGroupCommit:
    """Gathers decision requests into shared transactions (see the module docstring).

    Use from the event loop only; ``commit`` runs the store write (on the writer thread).
    """

    def __init__(self, commit: Commit, max_batch: int = MAX_BATCH) -> None:
        self._commit = commit
        self._max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._drain: asyncio.Task[None] | None = None

    async def create(self, request: DecisionRequest, actor: str) -> Decision:
        """The stored decision, once its transaction has committed; else the error
        :meth:`DecisionService.create` would raise for this request."""
        answer: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(request, actor, answer))
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._drain_all(), name="edgeagent-api-decisions")
        return await answer

    async def close(self) -> None:
        """Wait until every request taken so far is answered."""
        if self._drain is not None:
            await asyncio.shield(self._drain)

    async def _drain_all(self) -> None:
        batch: list[_Waiting] = []
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                # A request whose caller went away before its transaction began is not stored.
                live = [w for w in batch if not w.answer.done()]
                if live:
                    await self._store(live)
        finally:  # cancelled (the loop is closing): no caller may wait for ever
            for w in batch + self._waiting:
                if not w.answer.done():
                    w.answer.cancel()

    async def _store(self, batch: list[_Waiting]) -> None:
        try:
            outcomes = await self._commit([(w.request, w.actor) for w in batch])
        except StoreUnavailable as exc:
            for w in batch:
                _answer(w, exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                _answer(batch[0], exc)
                return
            for w in batch:
                await self._store([w])
            return
        for w, outcome in zip(batch, outcomes, strict=True):
            _answer(w, outcome)


GROUP_COMMIT = web.AppKey("edgeagent_api_decision_group_commit", DecisionGroupCommit)


def _answer(waiting: _Waiting, outcome: Decision | Exception) -> None:
    if waiting.answer.done():  # the caller went away meanwhile
        return
    if isinstance(outcome, Exception):
        waiting.answer.set_exception(outcome)
    else:
        waiting.answer.set_result(outcome)
