"""Keeps the desired state in step with the store.

``PolicyEngine.current()`` returns the ``DesiredState`` and its ``PolicyIndex`` for the
store's ``policy_version``, rebuilding only when that version moved. Feed generations are
immutable once stored, so their entries are cached by generation id: a decision changes
the policy at the cost of one merge, without re-reading the feeds.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from edgeagent.model import DecisionStatus, DesiredState, Entry
from edgeagent.policy import BlockGate, PolicyIndex, merge
from edgeagent.store.base import Store


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    state: DesiredState
    index: PolicyIndex
    live_generations: dict[str, int]  # feed -> generation id
    pending_decisions: int
    held_feeds: tuple[str, ...]


class PolicyEngine:
    def __init__(self, store: Store, gate: BlockGate) -> None:
        self.store = store
        self.gate = gate
        self._lock = threading.Lock()
        self._snapshot: PolicySnapshot | None = None
        self._generation_cache: dict[int, tuple[Entry, ...]] = {}

    @property
    def loaded(self) -> bool:
        return self._snapshot is not None

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
            gen = self.store.live_generation(feed)
            if gen is not None:
                live[feed] = gen.id
            if self.store.held_generation(feed) is not None:
                held.append(feed)
        cache = {gid: self._entries_of(gid) for gid in live.values()}
        self._generation_cache = cache  # drop superseded generations from memory
        decisions = list(self.store.active_decisions())
        pending = len(
            self.store.list_decisions(status=DecisionStatus.PENDING_APPROVAL, limit=1_000_000)
        )
        feed_entries: Iterator[Entry] = itertools.chain.from_iterable(cache.values())
        # Decisions first: where a person and a feed list the same target, the entry shown
        # (reference, category) is the person's.
        entries = itertools.chain((d.as_entry() for d in decisions), feed_entries)
        state = merge(version, entries, self.gate)
        return PolicySnapshot(state, PolicyIndex(state), live, pending, tuple(held))

    def _entries_of(self, generation_id: int) -> tuple[Entry, ...]:
        cached = self._generation_cache.get(generation_id)
        if cached is None:
            cached = tuple(self.store.generation_entries(generation_id))
        return cached
