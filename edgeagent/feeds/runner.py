"""Runs the configured feeds for the daemon and the CLI, and exports their metrics.

:func:`feed_specs` turns the ``[feeds]`` tables into specs through the feed kinds'
registry. One ``FeedRunner`` per process: it owns the HTTP session, the in-memory status board and
the per-feed metrics (``edgeagent_feed_*``, labelled by feed name only). A sync that
stores a generation calls ``on_change`` so the policy is rebuilt and republished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from edgeagent.feeds.base import FeedConfig, FeedSpec, FeedStatus, SyncOutcome, SyncResult
from edgeagent.feeds.diff import HeldDiffs
from edgeagent.feeds.kinds import FEED_KINDS
from edgeagent.feeds.sync import (
    Progress,
    StatusBoard,
    approve_held,
    discard_held,
    schedule_feeds,
    status_dict,
    sync_feed,
)
from edgeagent.feeds.transport import make_session
from edgeagent.guard import Guard
from edgeagent.logs import fields
from edgeagent.metrics import Metrics
from edgeagent.periodic import PeriodicJobs
from edgeagent.store.base import Generation, Store

log = logging.getLogger("edgeagent.feeds")


def feed_specs(feeds: Mapping[str, FeedConfig]) -> list[FeedSpec]:
    """The spec of every configured feed, by name; reads the feeds' secrets
    (``ConfigError`` when one cannot be read)."""
    return [
        FEED_KINDS.plugin(config).from_config(name, config)
        for name, config in sorted(feeds.items())
    ]


class FeedRunner:
    def __init__(
        self,
        specs: Sequence[FeedSpec],
        store: Store,
        guard: Guard,
        metrics: Metrics,
        *,
        max_age: Callable[[FeedSpec], float] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.specs: dict[str, FeedSpec] = {}
        self.store = store
        self.guard = guard
        self.metrics = metrics
        self.board = StatusBoard()
        self.held_diffs = HeldDiffs(store)
        self.on_change = on_change
        self._session: aiohttp.ClientSession | None = None
        self._max_age_of = max_age
        self.max_age: dict[str, float] = {}
        self.replace_specs(specs)

    def replace_specs(self, specs: Sequence[FeedSpec]) -> tuple[list[str], list[str]]:
        """Take a (reloaded) configuration's feeds; return (new or changed, removed) names.

        Statuses of new feeds are read from the store; the metric series of removed feeds
        are dropped (a feed that is gone must not raise a staleness alert).
        """
        new = {s.name: s for s in specs}
        changed = sorted(name for name, spec in new.items() if self.specs.get(name) != spec)
        removed = sorted(set(self.specs) - set(new))
        fresh = [name for name in new if name not in self.specs]
        self.specs = new
        self.board.load(self.store, fresh)
        # Staleness limit: three missed intervals unless the caller says otherwise.
        self.max_age = {
            s.name: self._max_age_of(s) if self._max_age_of else 3 * (s.interval or 43200.0)
            for s in specs
        }
        for spec in new.values():
            self.metrics.feed_max_age.labels(feed=spec.name).set(self.max_age[spec.name])
            self._export(self.board.get(spec.name))
        for name in removed:
            self.metrics.forget_feed(name)
        return changed, removed

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def spec(self, name: str) -> FeedSpec:
        try:
            return self.specs[name]
        except KeyError:
            from edgeagent.errors import NotFound

            raise NotFound("feed", name) from None

    async def sync(self, name: str, progress: Progress | None = None) -> SyncResult:
        spec = self.spec(name)
        if self._session is None:
            self._session = make_session()
        self.metrics.feed_last_attempt.labels(feed=name).set(time.time())
        result = await sync_feed(
            spec, self.store, self.guard, session=self._session, progress=progress, board=self.board
        )
        self._record(result)
        return result

    async def sync_all(self, progress: Progress | None = None) -> list[SyncResult]:
        """Every enabled feed once, one after the other (a failure never stops the rest)."""
        return [
            await self.sync(name, progress)
            for name, spec in sorted(self.specs.items())
            if spec.enabled
        ]

    def schedule(self, jobs: PeriodicJobs, names: Iterable[str] | None = None) -> list[str]:
        """Schedule every feed, or only ``names`` (jobs ``feed:<name>`` are replaced)."""

        async def run(spec: FeedSpec) -> None:
            await self.sync(spec.name)

        wanted = self.specs.values() if names is None else [self.specs[n] for n in names]
        return schedule_feeds(jobs, list(wanted), run)

    def approve(
        self, name: str, actor: str, reason: str = "", generation_id: int | None = None
    ) -> Generation:
        gen = approve_held(
            self.store,
            self.spec(name).name,
            actor=actor,
            reason=reason,
            generation_id=generation_id,
            board=self.board,
        )
        self._export(self.board.get(name))
        if self.on_change:
            self.on_change()
        return gen

    def discard(
        self, name: str, actor: str, reason: str = "", generation_id: int | None = None
    ) -> Generation:
        gen = discard_held(
            self.store,
            self.spec(name).name,
            actor=actor,
            reason=reason,
            generation_id=generation_id,
            board=self.board,
        )
        self._export(self.board.get(name))
        return gen

    def status(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        out: dict[str, Any] = {}
        for name, spec in sorted(self.specs.items()):
            d = dict(status_dict(self.board.get(name), now))
            d["kind"] = str(spec.kind)
            d["enabled"] = spec.enabled
            out[name] = d
        return out

    def stale(self, now: datetime | None = None) -> list[str]:
        """Enabled feeds whose last success is older than their limit (for /readyz)."""
        when = now or datetime.now(UTC)
        late = []
        for name, spec in self.specs.items():
            if not spec.enabled:
                continue
            age = self.board.get(name).age(when)
            if age is None or age > self.max_age[name]:
                late.append(name)
        return sorted(late)

    # -- internals
    def _record(self, result: SyncResult) -> None:
        status = result.status or self.board.get(result.feed)
        self._export(status)
        for reason, n in result.rejects.items():
            self.metrics.feed_rejected.labels(feed=result.feed, reason=reason).inc(n)
        if result.outcome is SyncOutcome.FAILED:
            self.metrics.feed_failures.labels(feed=result.feed).inc()
            log.warning(
                "feed sync failed; last good generation stays",
                extra=fields(feed=result.feed, reason=result.reason),
            )
        else:
            log.info(
                "feed synced",
                extra=fields(
                    feed=result.feed,
                    outcome=str(result.outcome),
                    entries=result.entries,
                    added=result.added,
                    removed=result.removed,
                    reason=result.reason,
                ),
            )
        if result.outcome in (SyncOutcome.LIVE, SyncOutcome.HELD) and self.on_change:
            self.on_change()

    def _export(self, st: FeedStatus) -> None:
        m, feed = self.metrics, st.feed
        if st.last_success is not None:
            m.feed_last_success.labels(feed=feed).set(st.last_success.timestamp())
        if st.last_attempt is not None:
            m.feed_last_attempt.labels(feed=feed).set(st.last_attempt.timestamp())
        m.feed_entries.labels(feed=feed).set(st.entries)
        m.feed_bytes.labels(feed=feed).set(st.bytes)
        m.feed_duration.labels(feed=feed).set(st.duration)
        m.feed_held.labels(feed=feed).set(1 if st.held_generation is not None else 0)
