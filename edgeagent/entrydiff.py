"""What changed between two sorted entry tuples of consecutive policy versions.

Entries kept from one policy version to the next are the same objects, in the same
(sorted) order, so the differences lie in one window found by comparisons in C; inside
it identity narrows the comparison further, and only the few left are compared by value
(a new feed generation brings equal entries as new objects). The proxy index
and the policy's entry tally both move by these changes instead of a walk of the policy.
"""

from __future__ import annotations

import itertools
import operator

from edgeagent.bulk import Pacer
from edgeagent.model import DesiredState, Entry

_CHUNK = 4096  # entries compared at once by tuple equality, before the fine scan
_BIG_CHUNK = 65536  # entries a C call takes at once in a wide window (a few milliseconds)


def window(old: tuple[Entry, ...], new: tuple[Entry, ...]) -> tuple[int, int, int]:
    """``(start, old_end, new_end)``: outside ``old[start:old_end]`` and
    ``new[start:new_end]`` the two tuples hold equal entries, in the same order.

    Whole chunks are skipped by tuple equality (C code that takes the same object as
    equal without looking at it: a million entries in a few milliseconds), then the
    first differing chunk from each end is scanned by identity.
    """
    n = min(len(old), len(new))
    start = 0
    while start + _CHUNK <= n and old[start : start + _CHUNK] == new[start : start + _CHUNK]:
        start += _CHUNK
    stop = min(n, start + _CHUNK)
    start += _first_different(old[start:stop], new[start:stop])
    room = n - start  # entries after ``start`` both tuples have: the tail lies within
    tail = 0
    while (
        tail + _CHUNK <= room
        and old[len(old) - tail - _CHUNK : len(old) - tail]
        == new[len(new) - tail - _CHUNK : len(new) - tail]
    ):
        tail += _CHUNK
    size = min(_CHUNK, room - tail)
    tail += _first_different(
        old[len(old) - tail - size : len(old) - tail][::-1],
        new[len(new) - tail - size : len(new) - tail][::-1],
    )
    return start, len(old) - tail, len(new) - tail


def _first_different(old: tuple[Entry, ...], new: tuple[Entry, ...]) -> int:
    """The first position where two equally long tuples hold different objects (their
    length if none)."""
    differs = itertools.compress(itertools.count(), map(operator.is_not, old, new))
    return next(differs, len(old))


def changed(old: tuple[Entry, ...], new: tuple[Entry, ...]) -> tuple[list[Entry], list[Entry]]:
    """(entries gone, entries come) between two entry tuples (see the module docstring)."""
    start, old_end, new_end = window(old, new)
    old, new = old[start:old_end], new[start:new_end]
    # In chunks, with a pause between them: a new generation's window spans the whole
    # policy, and one C call over a million entries keeps the event loop from the GIL.
    pacer = Pacer()
    old_ids, new_ids = _ids(old, pacer), _ids(new, pacer)
    gone = _not_in(old, new_ids, pacer)
    came = _not_in(new, old_ids, pacer)
    if not gone or not came:
        return gone, came
    gone_set, came_set = set(gone), set(came)
    return [e for e in gone if e not in came_set], [e for e in came if e not in gone_set]


def blocks_changed(old: DesiredState, new: DesiredState) -> tuple[list[Entry], list[Entry]]:
    """(blocks gone, blocks come) from ``old`` to ``new``: the change the engine handed
    over with ``new`` when it was made from ``old``'s blocks (``new.delta``), at the cost
    of the change; else compared (:func:`changed`)."""
    delta = new.delta
    if delta is not None and delta.base is old.blocks:
        return list(delta.gone), list(delta.came)
    return changed(old.blocks, new.blocks)


def _ids(entries: tuple[Entry, ...], pacer: Pacer) -> set[int]:
    ids: set[int] = set()
    for i in range(0, len(entries), _BIG_CHUNK):
        ids.update(map(id, entries[i : i + _BIG_CHUNK]))
        pacer.pause()
    return ids


def _not_in(entries: tuple[Entry, ...], ids: set[int], pacer: Pacer) -> list[Entry]:
    """The entries whose identity is not in ``ids``, in order."""
    out: list[Entry] = []
    for i in range(0, len(entries), _BIG_CHUNK):
        part = entries[i : i + _BIG_CHUNK]
        out.extend(
            itertools.compress(part, map(operator.not_, map(ids.__contains__, map(id, part))))
        )
        pacer.pause()
    return out
