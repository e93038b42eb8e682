"""Keeps the desired state in step with the store.

``PolicyEngine.current()`` returns the ``DesiredState`` for the store's
``policy_version``, rebuilding only when that version moved, and cheaply:

- the feeds' merged state is cached by the set of live generation ids (generations are
  immutable), so a decision never re-reads or re-merges the feeds;
- a new generation of one feed moves that cache by the generation's changes (compared in
  the store, :func:`edgeagent.policy.apply_changes`), not by a merge of every entry,
  whenever the result is provably the same;
- decisions are laid over it with :func:`edgeagent.policy.overlay`, at the cost of the
  decisions only;
- the lookup index is built on first use per version (only ``lookup`` needs it);
- the active decisions are kept by change (:meth:`edgeagent.store.base.Store.decision_changes`),
  and a version that only added or ended decisions moves the last state by them
  (:func:`edgeagent.policy.apply_changes`) whenever the result is provably the one the
  overlay gives: a decision on a million-entry policy costs its change, not a walk;
- the entry counts (:class:`edgeagent.tally.EntryTally`) move by the change too.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property

from edgeagent.bulk import paced, paused_gc
from edgeagent.errors import NotFound
from edgeagent.model import BlockDelta, Decision, DesiredState, Entry, Indicator
from edgeagent.policy import (
    BasePolicy,
    BlockGate,
    PolicyIndex,
    apply_changes,
    entry_position,
    merge,
    overlay,
)
from edgeagent.store.base import Store
from edgeagent.tally import EntryTally


@dataclass(frozen=True)
class PolicySnapshot:
    state: DesiredState
    live_generations: dict[str, int]  # feed -> generation id
    held_feeds: tuple[str, ...]
    tally: EntryTally  # the entry counts of ``state``
    # The earliest ``expires_at`` of the active decisions (past ones included: they are
    # due now), for the daemon's expiry timer; None when no active decision expires.
    next_expiry: datetime | None = None

    @cached_property
    def index(self) -> PolicyIndex:
        return PolicyIndex(self.state)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PolicyEngine:
    def __init__(
        self,
        store: Store,
        gate: BlockGate,
        feeds: frozenset[str] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.gate = gate
        # What an entry's expires_at is compared with: the daemon's deadline clock
        # (edgeagent.deadline_clock), so a step back brings no expired entry back.
        self.clock = clock
        # The configured feeds: a feed removed from the config stops counting even though
        # its last generation stays in the store. ``None``: every feed in the store.
        self.feeds = feeds
        self._lock = threading.Lock()
        self._snapshot: PolicySnapshot | None = None
        self._latest: PolicySnapshot | None = None  # the last one built (not reset on reload)
        self._feed_key: tuple[tuple[str, int], ...] | None = None
        self._feed_part: BasePolicy | None = None
        self._built_on: BasePolicy | None = None  # the feed part of ``_snapshot``
        self._decisions = ActiveDecisions()

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
            self._snapshot = self._latest = snap
            self._built_on = self._feed_part
            return snap

    def latest(self) -> PolicySnapshot | None:
        """The last snapshot built, never waiting for a rebuild in progress (views that
        may show the previous version for a moment: ``/v1/status``); ``None`` before the
        first one."""
        return self._latest

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
        last = prev = self._snapshot
        feeds_before = (
            self._feed_part if last is not None and self._built_on is self._feed_part else None
        )
        if self._feed_part is None or key != self._feed_key:
            with paused_gc():
                self._feed_part = self._changed_feeds(key) or self._merge_feeds(key)
            self._feed_key = key
            prev = None  # the decisions are laid over the new feed state afresh
        # Committed to self only once the state is built: a failed rebuild keeps the
        # decisions in step with the last good snapshot.
        decisions, ended, began = self._decisions.moved(self.store)
        now = self.clock()
        state = self._moved_by_decisions(prev, ended, began, now)
        if state is not None and prev is not None and ended is not None and began is not None:
            kept = [e for e in began if _holds(state, e)]  # not refused, not past its end
            tally = prev.tally.moved(prev.state, state, (ended, kept))
        else:
            decided = paced(decisions.entries.values())
            state = overlay(self._feed_part, decided, self.gate, 0, now=now)
            if (
                last is not None
                and feeds_before is not None
                and ended is not None
                and began is not None
            ):
                moved = _Moved(self._decisions, decisions, ended, began)
                delta = _overlay_delta(
                    feeds_before, self._feed_part, last, state, decisions=moved, now=now
                )
                state = replace(state, delta=delta)
            tally = last.tally.moved(last.state, state) if last else EntryTally.of(state)
        part = self._feed_part
        if part.state.delta is not None:  # told once: holding it would keep the old tuple
            self._feed_part = BasePolicy(replace(part.state, delta=None))
        state = replace(state, version=version)
        tally = replace(tally, version=version)
        self._decisions = decisions
        # No pending-decision count here: a new pending decision does not change the policy
        # version, so a count kept in the snapshot would go stale (ask the store instead).
        return PolicySnapshot(state, live, tuple(held), tally, decisions.next_expiry())

    def _moved_by_decisions(
        self,
        prev: PolicySnapshot | None,
        ended: list[Entry] | None,
        began: list[Entry] | None,
        now: datetime,
    ) -> DesiredState | None:
        """The last state moved by the decisions that ended and began, when that is what
        the overlay gives (see :func:`apply_changes`); ``None``: overlay them all."""
        if prev is None or ended is None or began is None:
            return None
        if prev.next_expiry is not None and prev.next_expiry <= now:
            return None  # the overlay leaves out a decision past its end
        moved = apply_changes(BasePolicy(prev.state), ended, began, self.gate, now=now)
        return None if moved is None else moved.state

    def _changed_feeds(self, key: tuple[tuple[str, int], ...]) -> BasePolicy | None:
        """The cached merge moved by the changes of the one feed whose generation changed
        (a new generation of a million-entry list costs its changes, not a merge of
        every entry); ``None`` when more changed or the changes need a full merge."""
        before = dict(self._feed_key or ())
        if self._feed_part is None or before.keys() != dict(key).keys():
            return None
        moved = [(before[feed], gid) for feed, gid in key if before[feed] != gid]
        if len(moved) != 1:
            return None
        try:
            changes = self.store.generation_changes(*moved[0])
        except NotFound:  # the old generation was pruned meanwhile
            return None
        return apply_changes(
            self._feed_part,
            paced(changes.removed),
            paced(changes.added),
            self.gate,
            now=self.clock(),
        )

    def _merge_feeds(self, key: tuple[tuple[str, int], ...]) -> BasePolicy:
        entries: list[Entry] = list(
            itertools.chain.from_iterable(self.store.generation_entries(gid) for _, gid in key)
        )
        return BasePolicy.of(merge(0, entries, self.gate, now=self.clock()))


@dataclass(frozen=True)
class ActiveDecisions:
    """The active decisions' entries by decision id, as of a store mark.

    Entries stay the same objects from one version to the next (the enforcers' diffs
    compare by identity first). ``expiring``: the ``expires_at`` of those that end.
    """

    entries: dict[int, Entry] = field(default_factory=dict)
    expiring: dict[int, datetime] = field(default_factory=dict)
    mark: int = 0
    known: bool = False  # False until read once

    def moved(self, store: Store) -> tuple[ActiveDecisions, list[Entry] | None, list[Entry] | None]:
        """The decisions now, with the entries that ended and began since this mark
        (``None``, ``None`` when the store could not say and every one was read)."""
        changes = store.decision_changes(self.mark)
        if changes is None:
            return _active(store.active_decisions(), 0), None, None
        if not self.known:
            return _active(changes.active, changes.mark), None, None
        entries, expiring = dict(self.entries), dict(self.expiring)
        ended: list[Entry] = []
        began: list[Entry] = []
        for gone in changes.inactive:
            entry = entries.pop(gone, None)
            expiring.pop(gone, None)
            if entry is not None:
                ended.append(entry)
        for d in changes.active:
            if d.id not in entries:
                entries[d.id] = entry = d.as_entry()
                began.append(entry)
                if d.expires_at is not None:
                    expiring[d.id] = d.expires_at
        return ActiveDecisions(entries, expiring, changes.mark, True), ended, began

    def next_expiry(self) -> datetime | None:
        """The earliest ``expires_at`` in force (past ones included: they are due now)."""
        return min(self.expiring.values(), default=None)


@dataclass(frozen=True)
class _Moved:
    """The active decisions before and after a rebuild, and those that ended and began."""

    before: ActiveDecisions
    after: ActiveDecisions
    ended: list[Entry]
    began: list[Entry]


def _overlay_delta(
    before: BasePolicy,
    after: BasePolicy,
    last: PolicySnapshot,
    state: DesiredState,
    *,
    decisions: _Moved,
    now: datetime,
) -> BlockDelta | None:
    """How ``state`` (the decisions now over the feeds ``after``) differs from the last
    one (the decisions then over ``before``), at the cost of what changed: the feeds'
    known change (``after.state.delta``, :func:`apply_changes`; none when the feeds are
    the same) and the decisions that ended and began.

    An entry is in one state and not the other only if it is one of those changes or
    shares its indicator with a decision: every other entry is the same object in both,
    kept by both overlays alike (a decision kept is the same object, judged the same,
    unless one is past its end: then ``None``). So the feeds' entries on no decision's
    indicator move as the feeds did, and on every other indicator concerned the two
    states' own entries are compared. ``None`` also when the counts do not add up."""
    if after is before:
        gone_in_feeds: tuple[Entry, ...] = ()
        came_in_feeds: tuple[Entry, ...] = ()
    else:
        delta = after.state.delta
        if delta is None or delta.base is not before.state.blocks:
            return None
        gone_in_feeds, came_in_feeds = delta.gone, delta.came
    if last.next_expiry is not None and last.next_expiry <= now:
        return None  # the overlay left out a decision the last state still held
    old = last.state
    decided = {e.indicator for e in decisions.before.entries.values()}
    decided.update(e.indicator for e in decisions.after.entries.values())
    compare = {e.indicator for e in itertools.chain(decisions.ended, decisions.began)}
    gone: list[Entry] = []
    came: list[Entry] = []
    for entries, moved in ((gone_in_feeds, gone), (came_in_feeds, came)):
        for e in entries:
            if e.indicator in decided:
                compare.add(e.indicator)
            else:
                moved.append(e)
    for ind in compare:
        was, now_is = _entry_at(old, ind), _entry_at(state, ind)
        if was is not now_is:
            if was is not None:
                gone.append(was)
            if now_is is not None:
                came.append(now_is)
    if len(state.blocks) != len(old.blocks) - len(gone) + len(came):
        return None
    return BlockDelta(old.blocks, tuple(gone), tuple(came))


def _entry_at(state: DesiredState, ind: Indicator) -> Entry | None:
    pos = entry_position(state.blocks, ind)
    return None if pos is None else state.blocks[pos]


def _holds(state: DesiredState, entry: Entry) -> bool:
    pos = entry_position(state.blocks, entry.indicator)
    return pos is not None and state.blocks[pos] is entry


def _active(decisions: Iterable[Decision], mark: int) -> ActiveDecisions:
    entries: dict[int, Entry] = {}
    expiring: dict[int, datetime] = {}
    for d in decisions:
        entries[d.id] = d.as_entry()
        if d.expires_at is not None:
            expiring[d.id] = d.expires_at
    return ActiveDecisions(entries, expiring, mark, True)
