"""Keeps the desired state in step with the store.

``PolicyEngine.current()`` returns the ``DesiredState`` for the store's
``policy_version``, rebuilding only when that version moved, and cheaply:

- the feeds' merged state is cached by the set of live generation ids (generations are
  immutable), so a decision never re-reads or re-merges the feeds;
- decisions are laid over it with :func:`edgeagent.policy.overlay`, at the cost of the
  decisions only;
- the lookup index is built on first use per version (only ``lookup`` needs it).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from edgeagent.bulk import paused_gc
from edgeagent.model import DesiredState, Entry
from edgeagent.policy import BasePolicy, BlockGate, PolicyIndex, merge, overlay
from edgeagent.store.base import Store


@dataclass(frozen=True)
class PolicySnapshot:
    state: DesiredState
    live_generations: dict[str, int]  # feed -> generation id
    held_feeds: tuple[str, ...]
    # The earliest ``expires_at`` of the active decisions (past ones included: they are
    # due now), for the daemon's expiry timer; None when no active decision expires.
    next_expiry: datetime | None = None

    @cached_property
    def index(self) -> PolicyIndex:
        return PolicyIndex(self.state)


class PolicyEngine:
    def __init__(self, store: Store, gate: BlockGate, feeds: frozenset[str] | None = None) -> None:
        self.store = store
        self.gate = gate
        # The configured feeds: a feed removed from the config stops counting even though
        # its last generation stays in the store. ``None``: every feed in the store.
        self.feeds = feeds
        self._lock = threading.Lock()
        self._snapshot: PolicySnapshot | None = None
        self._feed_key: tuple[tuple[str, int], ...] | None = None
        self._feed_part: BasePolicy | None = None

    @property
    def loaded(self) -> bool:
        return self._snapshot is not None

    def set_feeds(self, feeds: frozenset[str] | None) -> None:
        """Change the configured feeds (on reload); the next ``current()`` rebuilds."""
        with self._lock:
            self.feeds = feeds
            self._snapshot = None

    def current(self) -> PolicySnapshot:
        version = self.store.policy_version()
        snap = self._snapshot
        if snap is not None and snap.state.version == version:
            return snap
        with self._lock:
            snap = self._snapshot
            if snap is not None and snap.state.version == version:
                return snap
            snap = self._rebuild(version)
            self._snapshot = snap
            return snap

    def _rebuild(self, version: int) -> PolicySnapshot:
        live: dict[str, int] = {}
        held: list[str] = []
        for feed in self.store.feeds():
            if self.feeds is not None and feed not in self.feeds:
                continue
            gen = self.store.live_generation(feed)
            if gen is not None:
                live[feed] = gen.id
            if self.store.held_generation(feed) is not None:
                held.append(feed)
        key = tuple(sorted(live.items()))
        if self._feed_part is None or key != self._feed_key:
            with paused_gc():
                self._feed_part = self._merge_feeds(key)
            self._feed_key = key
        decisions = [d.as_entry() for d in self.store.active_decisions()]
        state = overlay(self._feed_part, decisions, self.gate, version)
        # No pending-decision count here: a new pending decision does not change the policy
        # version, so a count kept in the snapshot would go stale (ask the store instead).
        next_expiry = min((e.expires_at for e in decisions if e.expires_at), default=None)
        return PolicySnapshot(state, live, tuple(held), next_expiry)

    def _merge_feeds(self, key: tuple[tuple[str, int], ...]) -> BasePolicy:
        entries: list[Entry] = list(
            itertools.chain.from_iterable(self.store.generation_entries(gid) for _, gid in key)
        )
        return BasePolicy.of(merge(0, entries, self.gate))
