"""What a held feed generation would change against the live one."""

from __future__ import annotations

from pathlib import Path

from edgeagent.feeds.diff import HeldDiffs, diff_generations
from edgeagent.model import Action, Entry, Indicator, Scope
from edgeagent.store import SqliteStore
from edgeagent.store.base import GenerationStatus


def entries(*names: str, action: Action = Action.BLOCK) -> list[Entry]:
    return [Entry(Indicator(Scope.DOMAIN, n), action, "police") for n in names]


def test_counts_entries_and_cache(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    try:
        live = store.add_generation(
            "police", entries("a.example", "b.example", "c.example"), status=GenerationStatus.LIVE
        )
        held = store.add_generation(
            "police",
            [
                *entries("a.example", "d.example", "e.example"),
                *entries("b.example", action=Action.ALLOW),
            ],
            status=GenerationStatus.HELD,
        )
        diff = diff_generations(store, held, live, shown=2)
        assert (diff.added, diff.removed) == (3, 2)  # an action change is both
        assert [e.indicator.value for e in diff.added_entries] == ["b.example", "d.example"]
        assert diff.truncated
        out = diff.to_json(entries=False)
        assert out == {"live_generation": live.id, "added": 3, "removed": 2}
        shown = diff.to_json(entries=True)["removed_entries"]
        assert shown[0] == {
            "scope": "domain",
            "target": "b.example",
            "target_ref": Indicator(Scope.DOMAIN, "b.example").ref,
            "action": "block",
        }

        diffs = HeldDiffs(store)
        first = diffs.of("police")
        assert first is not None
        assert (first.added, first.removed, first.truncated) == (3, 2, False)
        assert diffs.of("police") is first  # the same pair: computed once
        store.promote_generation(held.id)
        assert diffs.of("police") is None  # nothing held any more
        assert diffs.of("unknown") is None
    finally:
        store.close()
