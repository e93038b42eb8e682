"""What changed between two versions' entry tuples: the same answer as a comparison of
every entry by value, whatever the shape of the change."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent import entrydiff
from edgeagent.model import Action, Entry, Indicator, Scope


def _entry(n: int, source: str = "feed") -> Entry:
    return Entry(Indicator(Scope.HOST, f"h{n:04d}.example"), Action.BLOCK, source)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 60),
    edits=st.lists(st.tuples(st.sampled_from(["drop", "add", "source"]), st.integers(0, 99))),
)
def test_changed_entries_are_those_that_differ_by_value(
    size: int, edits: list[tuple[str, int]]
) -> None:
    old = {n: _entry(n) for n in range(0, 2 * size, 2)}
    new = dict(old)
    for kind, n in edits:
        if kind == "drop":
            new.pop(n, None)
        elif kind == "add":  # a listed one: equal, but another object (a new generation)
            new[n] = _entry(n)
        elif kind == "source" and n in new:
            new[n] = _entry(n, "other")
    before = tuple(old[k] for k in sorted(old))
    after = tuple(new[k] for k in sorted(new))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(entrydiff, "_CHUNK", 3)  # chunks, partial chunks and fine scans
        patch.setattr(entrydiff, "_BIG_CHUNK", 2)
        gone, came = entrydiff.changed(before, after)
    assert sorted(gone, key=str) == sorted(set(before) - set(after), key=str)
    assert sorted(came, key=str) == sorted(set(after) - set(before), key=str)
