"""A new feed generation moves the merged policy by its changes: the same result as a
full merge, or a full merge when it cannot be the same (allows, shared indicators)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgeagent.config import BUNDLED_LISTS_DIR
from edgeagent.engine import PolicyEngine
from edgeagent.guard import Guard
from edgeagent.model import Action, Entry, Indicator, Scope
from edgeagent.policy import BasePolicy, apply_changes, merge
from edgeagent.store import SqliteStore
from edgeagent.store.base import GenerationStatus, changes_in_memory

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def guard() -> Guard:
    return Guard.load(Path(BUNDLED_LISTS_DIR) / "protected")


def _block(feed: str, name: str, *, scope: Scope = Scope.HOST, ref: str = "") -> Entry:
    return Entry(Indicator.parse(scope, name), Action.BLOCK, feed, "csam", ref)


def _feeds_merged(guard: Guard, *generations: list[Entry]) -> BasePolicy:
    return BasePolicy.of(merge(0, [e for g in generations for e in g], guard, now=NOW))


def _moved(
    guard: Guard, before: BasePolicy, old: list[Entry], new: list[Entry]
) -> BasePolicy | None:
    gone, came = set(old) - set(new), set(new) - set(old)
    return apply_changes(before, gone, came, guard, now=NOW)


def test_random_generations_move_the_merge_exactly(guard: Guard) -> None:
    rng = random.Random(7)
    other = [_block("b", f"b{i}.example") for i in range(50)]
    for _ in range(30):
        names = rng.sample(range(400), 200)
        old = [_block("a", f"h{i}.example", ref=str(i % 3)) for i in names]
        kept = rng.sample(old, 150)
        fresh = [_block("a", f"h{i}.example", ref="new") for i in rng.sample(range(400, 800), 60)]
        # The same indicator with a changed field: removed as it was, added as it is.
        edited = [_block("a", e.indicator.value, ref="edited") for e in old if e not in kept][:5]
        refused = [_block("a", "com", scope=Scope.DOMAIN)]  # a public suffix: never listed
        expired = [
            Entry(
                Indicator.parse(Scope.HOST, "late.example"),
                Action.BLOCK,
                "a",
                expires_at=NOW - timedelta(days=1),
            )
        ]
        new = kept + fresh + edited + refused + expired
        rng.shuffle(new)
        before = _feeds_merged(guard, old, other)
        moved = _moved(guard, before, old, new)
        assert moved is not None
        assert moved.state == _feeds_merged(guard, new, other).state
        # What did not change is the same object: the enforcers' diffs rely on it.
        assert {id(e) for e in moved.state.blocks} >= {id(e) for e in other}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # An indicator another feed lists too: its sources must be merged again.
        ([_block("a", "x.example")], [_block("a", "x.example"), _block("a", "shared.example")]),
        # An allow changed.
        (
            [_block("a", "x.example")],
            [Entry(Indicator.parse(Scope.HOST, "y.example"), Action.ALLOW, "a")],
        ),
        # A block removed that the merge had refused (its count must drop).
        ([_block("a", "com", scope=Scope.DOMAIN)], []),
    ],
)
def test_changes_a_full_merge_must_judge_give_none(
    guard: Guard, old: list[Entry], new: list[Entry]
) -> None:
    other = [_block("b", "shared.example")]
    assert _moved(guard, _feeds_merged(guard, old, other), old, new) is None


def test_the_engine_moves_its_cache_and_agrees_with_a_fresh_merge(
    tmp_path: Path, guard: Guard
) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3", batch_size=7)
    first = [_block("a", f"h{i}.example") for i in range(100)]
    store.add_generation("a", first, status=GenerationStatus.LIVE)
    store.add_generation("b", [_block("b", "b.example")], status=GenerationStatus.LIVE)
    engine = PolicyEngine(store, guard)
    before = engine.current()
    second = first[10:] + [_block("a", f"n{i}.example") for i in range(10)]
    gen = store.add_generation("a", second, status=GenerationStatus.LIVE)
    after = engine.current()
    assert after.state == PolicyEngine(store, guard).current().state
    assert len(after.state.blocks) == 101
    # The entries that stayed are the objects of the previous version.
    kept = {id(e) for e in before.state.blocks} & {id(e) for e in after.state.blocks}
    assert len(kept) == 91
    # The store's comparison is the one made in memory.
    old_id = before.live_generations["a"]
    in_sql = store.generation_changes(old_id, gen.id)
    in_memory = changes_in_memory(store, old_id, gen.id)
    assert set(in_sql.removed) == set(in_memory.removed) == set(first[:10])
    assert set(in_sql.added) == set(in_memory.added) == set(second[-10:])
    # The generation the cache came from is gone: a full merge.
    store.add_generation("a", first, status=GenerationStatus.LIVE)
    assert store.prune_generations("a", keep=0) == 2
    assert engine.current().state == PolicyEngine(store, guard).current().state
    store.close()


def test_a_generation_s_indicators_are_those_of_its_entries(tmp_path: Path) -> None:
    """What a new generation's plan reads of the live one (``generation_indicators``):
    in SQLite the indicators alone, the same as the default from the entries."""
    from edgeagent.errors import NotFound
    from edgeagent.store.base import StoreBackend

    store = SqliteStore(tmp_path / "s.sqlite3", batch_size=7)
    entries = [_block("a", f"h{i}.example") for i in range(30)]
    gen = store.add_generation("a", entries, status=GenerationStatus.LIVE)
    lean = list(store.generation_indicators(gen.id))
    assert lean == [e.indicator for e in store.generation_entries(gen.id)]
    assert sorted(lean) == sorted(e.indicator for e in entries)
    assert list(StoreBackend.generation_indicators(store, gen.id)) == lean
    with pytest.raises(NotFound):
        store.generation_indicators(gen.id + 1)
    store.close()


def test_the_splice_copies_in_runs_to_the_same_result(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_spliced`` copies the kept entries a run at a time (the GIL is free between
    runs); with runs far shorter than the policy the result is the same."""
    from edgeagent import policy

    monkeypatch.setattr(policy, "_RUN", 3)
    test_random_generations_move_the_merge_exactly(guard)
