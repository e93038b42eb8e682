"""The sync engine: fetch -> verify -> parse -> validate -> guard -> store (live or held).

Contract of :func:`sync_feed`:

- It never raises for a feed problem. Anything that goes wrong (transport, integrity,
  rollback, format) returns a ``FAILED`` :class:`SyncResult` naming the reason, and the
  live generation is untouched. Only programming errors in the caller (a wrong type) may
  escape, and even those are caught and reported as ``internal error``.
- Integrity (digest, signature) is checked on the exact bytes before parsing; a serial
  that goes backwards is refused.
- Unchanged input (HTTP 304, the same SHA-256 as the live generation, an RPZ serial that
  did not move) stores nothing and reports ``UNCHANGED``.
- Every accepted entry is judged by the guard through ``edgeagent.guard.plan_generation``;
  a generation that is empty, changes more than the limits allow, contains refused or
  four-eyes entries is stored ``HELD`` with the reasons, and the live one stays.
- Logs carry counts, reasons and short hashes only.

:func:`approve_held` / :func:`discard_held` are the supervisor's answers to a held
generation; both are audited. :func:`schedule_feeds` puts every enabled feed on the
daemon's periodic jobs (:mod:`edgeagent.periodic`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import aiohttp

from edgeagent.bulk import paced, paused_gc
from edgeagent.errors import EdgeAgentError, FeedError, NotFound
from edgeagent.feeds import (
    domainlist,
    hashedlist,
    integrity,
    localfile,
    rpz_axfr,
    rpz_transfer,
    urllist,
)
from edgeagent.feeds.base import (
    Accepted,
    FeedKind,
    FeedSpec,
    FeedStatus,
    HashedEntry,
    Item,
    RejectCounter,
    Rejected,
    SyncOutcome,
    SyncResult,
)
from edgeagent.feeds.transport import fetch, make_session
from edgeagent.guard import ChangeLimits, Guard, plan_generation
from edgeagent.model import Action, Entry, Indicator, Scope
from edgeagent.periodic import JobTiming, PeriodicJobs
from edgeagent.store.base import Generation, GenerationStatus, Store

__all__ = [
    "Progress",
    "StatusBoard",
    "approve_held",
    "default_board",
    "discard_held",
    "schedule_feeds",
    "sync_feed",
]

log = logging.getLogger(__name__)

Progress = Callable[[str, int], None]  # (feed, items parsed so far)
PROGRESS_EVERY = 100_000
_SIG_CAP = 64 * 1024  # digest and signature files are tiny
_PARSERS = {
    FeedKind.URL_LIST: urllist.parse,
    FeedKind.DOMAIN_LIST: domainlist.parse,
    FeedKind.HASHED_URL_LIST: hashedlist.parse,
}


class StatusBoard:
    """In-memory :class:`FeedStatus` per feed, safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: dict[str, FeedStatus] = {}

    def get(self, feed: str) -> FeedStatus:
        with self._lock:
            return self._status.get(feed) or FeedStatus(feed)

    def set(self, status: FeedStatus) -> None:
        with self._lock:
            self._status[status.feed] = status

    def all(self) -> dict[str, FeedStatus]:
        with self._lock:
            return dict(self._status)

    def load(self, store: Store, feeds: Iterable[str]) -> None:
        """Rebuild statuses from the generations' meta (after a restart)."""
        for feed in feeds:
            live = store.live_generation(feed)
            held = store.held_generation(feed)
            st = FeedStatus(feed)
            if live is not None:
                meta = live.meta.get("status", {})
                success = meta.get("last_success")
                st = FeedStatus(
                    feed,
                    last_success=datetime.fromisoformat(success) if success else live.created_at,
                    entries=live.entry_count,
                    rejects=MappingProxyType(dict(meta.get("rejects", {}))),
                    bytes=int(meta.get("bytes", 0)),
                    duration=float(meta.get("duration", 0.0)),
                )
            if held is not None:
                st = replace(st, held_generation=held.id)
            self.set(st)


default_board = StatusBoard()


@dataclass(slots=True)
class _Run:
    """Mutable facts gathered during one sync (turned into a frozen SyncResult)."""

    spec: FeedSpec
    started: float
    bytes_wire: int = 0
    bytes_decoded: int = 0
    etag: str = ""
    last_modified: str = ""
    sha256: str = ""
    serial: str = ""
    incremental: bool = False


def _limits(spec: FeedSpec, guard: Guard) -> ChangeLimits:
    base = guard.limits
    if (
        spec.max_removal_share is None
        and spec.max_addition_share is None
        and (spec.limit_floor is None)
    ):
        return base
    return ChangeLimits(
        max_removal_share=(
            spec.max_removal_share if spec.max_removal_share is not None else base.max_removal_share
        ),
        max_addition_share=(
            spec.max_addition_share
            if spec.max_addition_share is not None
            else base.max_addition_share
        ),
        floor=spec.limit_floor if spec.limit_floor is not None else base.floor,
    )


def _hash_scope() -> Scope | None:
    # Hashed lists need a scope for "SHA-256 of a lookup expression"; the model does not
    # have one yet (requested from the model owner as ``Scope.URL_HASH``).
    found = getattr(Scope, "URL_HASH", None)
    return found if isinstance(found, Scope) else None


def _entries(
    items: Iterable[Item],
    run: _Run,
    rejects: RejectCounter,
    progress: Progress | None,
) -> Iterator[Entry]:
    """Items -> entries, counting rejects; raises FeedError for hashes without a scope."""
    feed = run.spec.name
    hash_scope = _hash_scope()
    n = 0
    for item in paced(items):
        n += 1
        if progress is not None and n % PROGRESS_EVERY == 0:
            progress(feed, n)
        if isinstance(item, Accepted):
            yield Entry(item.indicator, item.action, feed, item.category, item.reference)
        elif isinstance(item, Rejected):
            rejects.add(item.reason, item.ref)
        elif isinstance(item, HashedEntry):
            if hash_scope is None:
                raise FeedError(feed, "hashed lists need Scope.URL_HASH in the model")
            yield Entry(Indicator(hash_scope, item.hex), Action.BLOCK, feed, item.category)
    if progress is not None:
        progress(feed, n)


async def _acquire_http(
    spec: FeedSpec, live: Generation | None, session: aiohttp.ClientSession, run: _Run
) -> bytes | None:
    meta = live.meta if live is not None else {}
    res = await fetch(
        spec,
        session,
        etag=str(meta.get("etag", "")),
        last_modified=str(meta.get("last_modified", "")),
    )
    run.bytes_wire, run.bytes_decoded = res.bytes_wire, res.bytes_decoded
    run.etag, run.last_modified = res.etag, res.last_modified
    if res.body is None:
        return None
    digest = signature = None
    if spec.digest_url:
        digest = (
            await fetch(
                spec,
                session,
                url=spec.digest_url,
                max_bytes=_SIG_CAP,
                max_decompressed_bytes=_SIG_CAP,
            )
        ).body
    if spec.public_key:
        if not spec.signature_url:
            raise FeedError(spec.name, "public key configured without a signature URL")
        signature = (
            await fetch(
                spec,
                session,
                url=spec.signature_url,
                max_bytes=_SIG_CAP,
                max_decompressed_bytes=_SIG_CAP,
            )
        ).body
    _verify(spec, res.body, digest, signature)
    return res.body


def _verify(spec: FeedSpec, body: bytes, digest: bytes | None, signature: bytes | None) -> None:
    if spec.digest_url:
        integrity.verify_digest(spec.name, body, digest or b"")
    if spec.public_key:
        integrity.verify_signature(spec.name, body, signature or b"", spec.public_key)


def _previous(store: Store, live: Generation | None) -> set[Indicator]:
    if live is None:
        return set()
    return set(paced(store.generation_indicators(live.id)))


@dataclass(frozen=True, slots=True)
class _Ctx:
    store: Store
    guard: Guard
    session: aiohttp.ClientSession | None
    progress: Progress | None
    board: StatusBoard


def _store_generation(
    ctx: _Ctx, run: _Run, live: Generation | None, make_items: Callable[[], Iterable[Item]]
) -> SyncResult:
    """Blocking part (parse, plan, store): runs in a worker thread.

    The cyclic garbage collector is paused meanwhile: a million-line list allocates
    millions of acyclic objects, and the collector's full passes over them cost more than
    a second while finding nothing to free.
    """
    with paused_gc():
        return _store_generation_now(ctx, run, live, make_items)


def _store_generation_now(
    ctx: _Ctx, run: _Run, live: Generation | None, make_items: Callable[[], Iterable[Item]]
) -> SyncResult:
    spec = run.spec
    store, guard, progress, board = ctx.store, ctx.guard, ctx.progress, ctx.board
    rejects = RejectCounter()
    previous = _previous(store, live)
    entries = _entries(make_items(), run, rejects, progress)
    plan = plan_generation(spec.name, previous, entries, guard)
    del previous
    problems = plan.safety_problems(_limits(spec, guard))
    status = GenerationStatus.HELD if problems else GenerationStatus.LIVE
    duration = time.monotonic() - run.started
    now = datetime.now(UTC)
    prior = board.get(spec.name)
    meta: dict[str, Any] = {
        "sha256": run.sha256,
        "etag": run.etag,
        "last_modified": run.last_modified,
        "bytes_wire": run.bytes_wire,
        "bytes_decoded": run.bytes_decoded,
        "rejects": dict(rejects.counts),
        "reject_samples": list(rejects.samples),
        "refused": dict(plan.refused),
        "needs_approval": len(plan.needs_approval),
        "added": plan.added,
        "removed": plan.removed,
        "incremental": run.incremental,
        "status": {
            "last_attempt": now.isoformat(),
            "last_success": now.isoformat(),
            "rejects": dict(rejects.counts),
            "bytes": run.bytes_decoded,
            "duration": round(duration, 3),
        },
    }
    gen = store.add_generation(
        spec.name,
        plan.accepted,
        status=status,
        serial=run.serial,
        hold_reason="; ".join(problems),
        meta=meta,
    )
    outcome = SyncOutcome.HELD if problems else SyncOutcome.LIVE
    live_count = plan.proposed_count if not problems else (live.entry_count if live else 0)
    st = replace(
        prior,
        last_attempt=now,
        last_success=now,
        last_outcome=outcome,
        last_reason=gen.hold_reason,
        entries=live_count,
        rejects=MappingProxyType(dict(rejects.counts)),
        bytes=run.bytes_decoded,
        duration=duration,
        held_generation=gen.id if problems else None,
        consecutive_failures=0,
    )
    board.set(st)
    log.info(
        "feed %s: %s generation %d (%d entries, +%d -%d, %d rejected)%s",
        spec.name,
        outcome,
        gen.id,
        plan.proposed_count,
        plan.added,
        plan.removed,
        rejects.total,
        f": {gen.hold_reason}" if problems else "",
    )
    return SyncResult(
        feed=spec.name,
        outcome=outcome,
        reason=gen.hold_reason,
        generation_id=gen.id,
        entries=plan.proposed_count,
        added=plan.added,
        removed=plan.removed,
        rejects=MappingProxyType(dict(rejects.counts)),
        reject_samples=tuple(rejects.samples),
        refused=MappingProxyType(dict(plan.refused)),
        bytes_wire=run.bytes_wire,
        bytes_decoded=run.bytes_decoded,
        duration=duration,
        serial=run.serial,
        status=st,
    )


def _finish(
    run: _Run, outcome: SyncOutcome, reason: str, live: Generation | None, board: StatusBoard
) -> SyncResult:
    spec = run.spec
    now = datetime.now(UTC)
    duration = time.monotonic() - run.started
    prior = board.get(spec.name)
    failed = outcome is SyncOutcome.FAILED
    st = replace(
        prior,
        last_attempt=now,
        last_success=prior.last_success if failed else now,
        last_outcome=outcome,
        last_reason=reason,
        entries=live.entry_count if live is not None else 0,
        duration=duration,
        bytes=run.bytes_decoded or prior.bytes,
        consecutive_failures=prior.consecutive_failures + 1 if failed else 0,
    )
    board.set(st)
    if failed:
        log.warning("feed %s: sync failed, last good generation stays: %s", spec.name, reason)
    else:
        log.info("feed %s: unchanged (%s)", spec.name, reason)
    return SyncResult(
        feed=spec.name,
        outcome=outcome,
        reason=reason,
        generation_id=live.id if live is not None else None,
        entries=live.entry_count if live is not None else 0,
        bytes_wire=run.bytes_wire,
        bytes_decoded=run.bytes_decoded,
        duration=duration,
        serial=run.serial or (live.serial if live is not None else ""),
        status=st,
    )


async def _run_sync(ctx: _Ctx, run: _Run) -> SyncResult:
    spec, store, guard, session, board = run.spec, ctx.store, ctx.guard, ctx.session, ctx.board
    live = await asyncio.to_thread(store.live_generation, spec.name)
    if not spec.enabled:
        return _finish(run, SyncOutcome.UNCHANGED, "feed disabled", live, board)
    if spec.kind is FeedKind.RPZ_AXFR:
        base = await asyncio.to_thread(rpz_axfr.base_from_store, store, live)
        transfer = await rpz_transfer.transfer(
            spec, base, previous_serial=live.serial if live else ""
        )
        run.serial, run.incremental = transfer.serial, transfer.incremental
        if transfer.records is None:
            return _finish(run, SyncOutcome.UNCHANGED, "zone serial unchanged", live, board)
        run.bytes_decoded = transfer.size
        records = transfer.records
        return await asyncio.to_thread(
            _store_generation, ctx, run, live, lambda: rpz_axfr.items(spec, records)
        )
    if spec.kind is FeedKind.LOCAL_FILE:
        read = await asyncio.to_thread(localfile.read, spec)
        run.bytes_wire, run.bytes_decoded = read.bytes_wire, len(read.body)
        _verify(spec, read.body, read.digest_file, read.signature)
        body: bytes | None = read.body
    else:
        if session is None:
            async with make_session() as own:
                body = await _acquire_http(spec, live, own, run)
        else:
            body = await _acquire_http(spec, live, session, run)
        if body is None:
            return _finish(run, SyncOutcome.UNCHANGED, "not modified (304)", live, board)
    assert body is not None
    run.sha256 = hashlib.sha256(body).hexdigest()
    run.serial = integrity.extract_serial(body)
    if integrity.check_serial(spec.name, live.serial if live else "", run.serial) and (
        live is not None and live.meta.get("sha256") == run.sha256
    ):
        return _finish(run, SyncOutcome.UNCHANGED, "same serial and content", live, board)
    if live is not None and live.meta.get("sha256") == run.sha256:
        return _finish(run, SyncOutcome.UNCHANGED, "same content", live, board)
    held = await asyncio.to_thread(store.held_generation, spec.name)
    if held is not None and held.meta.get("sha256") == run.sha256:
        # Re-storing the same held list would only churn generation ids under review.
        return _finish(
            run, SyncOutcome.UNCHANGED, "same content as the held generation", live, board
        )
    parser = _PARSERS.get(spec.list_kind)
    if parser is None:
        raise FeedError(spec.name, f"no list parser for {spec.list_kind}")
    data = body

    def parse() -> Iterable[Item]:
        parsed: Iterable[Item] = parser(data, spec)
        if spec.list_kind is FeedKind.HASHED_URL_LIST:
            protected = hashedlist.protected_root_hashes(guard.protected)
            parsed = hashedlist.refuse_protected(parsed, protected)
        return parsed

    return await asyncio.to_thread(_store_generation, ctx, run, live, parse)


async def sync_feed(
    spec: FeedSpec,
    store: Store,
    guard: Guard,
    *,
    session: aiohttp.ClientSession | None = None,
    progress: Progress | None = None,
    board: StatusBoard | None = None,
) -> SyncResult:
    """Sync one feed now; never raises for feed problems (see the module contract)."""
    run = _Run(spec, time.monotonic())
    statuses = board if board is not None else default_board
    try:
        return await _run_sync(_Ctx(store, guard, session, progress, statuses), run)
    except FeedError as exc:
        reason = exc.reason
    except EdgeAgentError as exc:  # store or guard trouble: message is entry-free by contract
        reason = f"{exc.__class__.__name__}: {exc}"
    except Exception as exc:  # never let one feed take the periodic jobs down
        log.exception("feed %s: internal error", spec.name)
        reason = f"internal error: {exc.__class__.__name__}"
    try:
        live = await asyncio.to_thread(store.live_generation, spec.name)
    except Exception:
        live = None
    return _finish(run, SyncOutcome.FAILED, reason, live, statuses)


# --------------------------------------------------------------------------- approval


def _held(store: Store, feed: str, generation_id: int | None) -> Generation:
    held = store.held_generation(feed)
    if held is None or (generation_id is not None and held.id != generation_id):
        raise NotFound("held generation", f"{feed}:{generation_id or ''}")
    return held


def approve_held(
    store: Store,
    feed: str,
    *,
    actor: str,
    generation_id: int | None = None,
    reason: str = "",
    board: StatusBoard | None = None,
) -> Generation:
    """Make the held generation live (audited ``feed.approve``); ``NotFound`` if none.

    Pass ``generation_id`` to approve exactly what was reviewed: a newer held generation
    that replaced it in the meantime is not approved by accident.
    """
    held = _held(store, feed, generation_id)
    gen = store.promote_generation(held.id)
    store.append_audit(
        actor,
        "feed.approve",
        f"feed:{feed}",
        {
            "generation": held.id,
            "entries": held.entry_count,
            "hold_reason": held.hold_reason,
            "reason": reason,
        },
    )
    b = board if board is not None else default_board
    b.set(replace(b.get(feed), held_generation=None, entries=gen.entry_count))
    return gen


def discard_held(
    store: Store,
    feed: str,
    *,
    actor: str,
    generation_id: int | None = None,
    reason: str = "",
    board: StatusBoard | None = None,
) -> Generation:
    """Discard the held generation (audited ``feed.discard``); the live one stays."""
    held = _held(store, feed, generation_id)
    gen = store.discard_generation(held.id)
    store.append_audit(
        actor,
        "feed.discard",
        f"feed:{feed}",
        {
            "generation": held.id,
            "entries": held.entry_count,
            "hold_reason": held.hold_reason,
            "reason": reason,
        },
    )
    b = board if board is not None else default_board
    b.set(replace(b.get(feed), held_generation=None))
    return gen


# --------------------------------------------------------------------------- schedule


def _job(
    spec: FeedSpec, run_sync: Callable[[FeedSpec], Awaitable[object]]
) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        try:
            await run_sync(spec)
        except Exception:  # one failing feed never stops another or its job
            log.exception("feed %s: scheduled sync raised", spec.name)

    job.__name__ = f"sync_{spec.name}"
    return job


def schedule_feeds(
    jobs: PeriodicJobs,
    specs: Sequence[FeedSpec],
    run_sync: Callable[[FeedSpec], Awaitable[object]],
) -> list[str]:
    """Add one job per enabled feed to ``jobs`` (:mod:`edgeagent.periodic`).

    Interval (``spec.interval`` seconds, on the monotonic clock) or cron (``spec.cron``,
    crontab syntax, on the wall clock) with ``spec.jitter`` seconds of jitter and
    ``spec.misfire_grace_time`` (a run the loop delays longer is skipped); one run per
    feed at a time in this process, missed runs collapsed into one. Job ids are
    ``feed:<name>``; existing jobs are replaced. Returns the job ids.
    """
    ids = []
    for spec in specs:
        if not spec.enabled:
            continue
        job_id = f"feed:{spec.name}"
        timing = JobTiming(jitter=spec.jitter, grace=max(1.0, spec.misfire_grace_time))
        if spec.cron:
            jobs.cron(job_id, spec.cron, _job(spec, run_sync), timing)
        elif spec.interval:
            jobs.every(job_id, spec.interval, _job(spec, run_sync), timing)
        else:
            raise FeedError(spec.name, "neither interval nor cron configured")
        ids.append(job_id)
    return ids


def status_dict(status: FeedStatus, now: datetime | None = None) -> Mapping[str, Any]:
    """A JSON-ready view of a status (for the API and ``edgeagent sync``)."""
    d: dict[str, Any] = {
        f: getattr(status, f)
        for f in (
            "feed",
            "last_reason",
            "entries",
            "bytes",
            "duration",
            "held_generation",
            "consecutive_failures",
        )
    }
    d["rejects"] = dict(status.rejects)
    for key in ("last_attempt", "last_success"):
        value = getattr(status, key)
        d[key] = value.isoformat() if value is not None else None
    d["last_outcome"] = str(status.last_outcome) if status.last_outcome else None
    d["age"] = status.age(now or datetime.now(UTC))
    return d
