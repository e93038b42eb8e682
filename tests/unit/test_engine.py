"""PolicyEngine over a real store: versions, cached feed merge, configured feeds only."""

from __future__ import annotations

from pathlib import Path

from edgeagent.config import BUNDLED_LISTS_DIR
from edgeagent.engine import PolicyEngine
from edgeagent.guard import Guard
from edgeagent.model import Action, Entry, Indicator, Scope
from edgeagent.store import SqliteStore
from edgeagent.store.base import GenerationStatus


def _gen(name: str, *hosts: str) -> list[Entry]:
    return [Entry(Indicator.parse(Scope.HOST, h), Action.BLOCK, name) for h in hosts]


def test_only_configured_feeds_count_and_rebuilds_follow_the_version(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    guard = Guard.load(Path(BUNDLED_LISTS_DIR) / "protected")
    store.add_generation("a", _gen("a", "one.example"), status=GenerationStatus.LIVE)
    store.add_generation("gone", _gen("gone", "two.example"), status=GenerationStatus.LIVE)
    engine = PolicyEngine(store, guard, frozenset({"a"}))

    first = engine.current()
    assert [e.indicator.value for e in first.state.blocks] == ["one.example"]
    assert first.live_generations.keys() == {"a"}
    assert engine.current() is first  # same version: no rebuild

    store.add_generation(
        "a", _gen("a", "one.example", "three.example"), status=GenerationStatus.LIVE
    )
    second = engine.current()
    assert second.state.version > first.state.version
    assert [e.indicator.value for e in second.state.blocks] == ["one.example", "three.example"]

    engine.set_feeds(None)  # every feed in the store
    assert len(engine.current().state.blocks) == 3
    store.close()
