"""What a held feed generation would change: entries it adds and removes against the live one.

A supervisor deciding on a held generation needs to see what it changes, not only how
many entries it has. :class:`HeldDiffs` computes the difference once per pair of
generations (generations never change once stored, so the result never goes stale
while both stay the same) by streaming the live generation into a set and the held one
against it.

Counts are for everyone who may see the plan (``noc`` included); the entries themselves
only for those allowed to see list entries (the API shows them to supervisors).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from edgeagent.model import Action, Entry, Indicator
from edgeagent.store.base import Generation, Store

SHOWN_ENTRIES = 1000
"""Entries listed per direction (added, removed); the counts are always complete."""


@dataclass(frozen=True, slots=True)
class GenerationDiff:
    """``held`` against ``live`` (``None``: the feed has no live generation yet).

    ``added``/``removed`` count every changed (indicator, action) pair; the
    ``*_entries`` tuples hold the first :data:`SHOWN_ENTRIES` of them, sorted.
    """

    feed: str
    held: int
    live: int | None
    added: int
    removed: int
    added_entries: tuple[Entry, ...]
    removed_entries: tuple[Entry, ...]

    @property
    def truncated(self) -> bool:
        return self.added > len(self.added_entries) or self.removed > len(self.removed_entries)

    def to_json(self, *, entries: bool) -> dict[str, Any]:
        """Counts; with ``entries``, also the changed entries (targets in plain text)."""
        out: dict[str, Any] = {
            "live_generation": self.live,
            "added": self.added,
            "removed": self.removed,
        }
        if entries:
            out["added_entries"] = [_entry_json(e) for e in self.added_entries]
            out["removed_entries"] = [_entry_json(e) for e in self.removed_entries]
            out["truncated"] = self.truncated
        return out


def _entry_json(e: Entry) -> dict[str, str]:
    return {
        "scope": e.indicator.scope.value,
        "target": e.indicator.value,
        "target_ref": e.indicator.ref,
        "action": e.action.value,
    }


def diff_generations(
    store: Store, held: Generation, live: Generation | None, shown: int = SHOWN_ENTRIES
) -> GenerationDiff:
    """Stream both generations once; memory grows with the live generation's size."""
    remaining: dict[tuple[Indicator, Action], Entry] = {}
    if live is not None:
        remaining = {(e.indicator, e.action): e for e in store.generation_entries(live.id)}
    added: list[Entry] = []
    n_added = 0
    for e in store.generation_entries(held.id):
        if remaining.pop((e.indicator, e.action), None) is None:
            n_added += 1
            added.append(e)
    removed = list(remaining.values())
    return GenerationDiff(
        feed=held.feed,
        held=held.id,
        live=live.id if live is not None else None,
        added=n_added,
        removed=len(removed),
        added_entries=_first(added, shown),
        removed_entries=_first(removed, shown),
    )


def _first(entries: list[Entry], n: int) -> tuple[Entry, ...]:
    entries.sort(key=lambda e: (e.indicator.scope.value, e.indicator.value, e.action.value))
    return tuple(entries[:n])


class HeldDiffs:
    """The diff of each feed's held generation, kept while that pair of generations is
    the held and the live one. Thread-safe; one computation per pair."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._diffs: dict[str, GenerationDiff] = {}

    def of(self, feed: str) -> GenerationDiff | None:
        """The held generation's diff, or ``None`` when ``feed`` has no held generation."""
        held = self.store.held_generation(feed)
        if held is None:
            return None
        live = self.store.live_generation(feed)
        live_id = live.id if live is not None else None
        with self._lock:
            known = self._diffs.get(feed)
            if known is not None and (known.held, known.live) == (held.id, live_id):
                return known
            diff = diff_generations(self.store, held, live)
            self._diffs[feed] = diff
            return diff
