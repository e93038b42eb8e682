"""PolicyEngine over a real store: versions, cached feed merge, configured feeds only,
entries expired by the clock it is given."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
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


def test_entries_expire_by_the_clock_the_engine_is_given(tmp_path: Path) -> None:
    """The daemon gives it the deadline clock: after a step back of the wall clock, a
    feed entry past its end by that clock stays out of force."""
    now = datetime.now(UTC)
    ahead = now + timedelta(hours=1)  # the deadline clock, the wall clock set back an hour
    store = SqliteStore(tmp_path / "s.sqlite3")
    guard = Guard.load(Path(BUNDLED_LISTS_DIR) / "protected")
    ended = replace(_gen("a", "ended.example")[0], expires_at=now + timedelta(minutes=30))
    store.add_generation("a", [ended, *_gen("a", "on.example")], status=GenerationStatus.LIVE)
    by_wall = PolicyEngine(store, guard).current()
    by_deadline = PolicyEngine(store, guard, clock=lambda: ahead).current()
    assert [e.indicator.value for e in by_wall.state.blocks] == ["ended.example", "on.example"]
    assert [e.indicator.value for e in by_deadline.state.blocks] == ["on.example"]
    store.close()


def _decide(
    store: SqliteStore, target: str, action: Action = Action.BLOCK, *, status: str = "active"
) -> int:
    from datetime import UTC, datetime

    from edgeagent.model import DecisionStatus, NoticeSource
    from edgeagent.store.base import NewDecision

    made = store.add_decision(
        NewDecision(
            Indicator.parse(Scope.HOST, target),
            action,
            "ana",
            "report",
            "CASE-1",
            NoticeSource.HOTLINE,
            datetime.now(UTC),
            DecisionStatus(status),
        )
    )
    return made.id


def test_decisions_move_the_policy_by_change_to_the_state_a_full_rebuild_gives(
    tmp_path: Path,
) -> None:
    """Each version below is built from the last by its changed decisions (or, where the
    shortcut cannot prove the result, by a full overlay); a fresh engine, which reads
    everything, must agree on the blocks, allows, sources, refusals and counts."""
    from edgeagent.model import DecisionStatus
    from edgeagent.tally import EntryTally

    store = SqliteStore(tmp_path / "s.sqlite3")
    guard = Guard.load(Path(BUNDLED_LISTS_DIR) / "protected")
    store.add_generation(
        "a", _gen("a", "one.example", "both.example"), status=GenerationStatus.LIVE
    )
    engine = PolicyEngine(store, guard)

    def agrees() -> None:
        kept = engine.current()
        fresh = PolicyEngine(store, guard).current()
        assert kept.state == fresh.state
        assert kept.state.sources == fresh.state.sources
        assert kept.state.refused == fresh.state.refused
        assert kept.tally == EntryTally.of(fresh.state) == fresh.tally

    agrees()
    first = engine.current()
    kept_id = _decide(store, "two.example")
    agrees()
    assert engine.current().state.blocks[0] is first.state.blocks[0]  # same objects
    gone_id = _decide(store, "three.example")
    _decide(store, "both.example")  # also listed by feed a: two sources
    _decide(store, "both.example", Action.ALLOW)  # lifts both blocks
    _decide(store, "pending.example", status="pending-approval")  # not in force
    agrees()
    store.set_decision_status(gone_id, DecisionStatus.REVOKED, actor="ana", reason="wrong")
    agrees()
    assert [e.indicator.value for e in engine.current().state.blocks] == [
        "one.example",
        "two.example",
    ]
    assert engine.current().tally.by_source == {"a": 1, "decisions": 1}
    store.add_generation(
        "a", _gen("a", "one.example", "four.example"), status=GenerationStatus.LIVE
    )
    agrees()
    store.set_decision_status(kept_id, DecisionStatus.REVOKED, actor="ana", reason="done")
    agrees()
    store.close()


def test_a_new_generation_hands_its_change_over_with_the_state(tmp_path: Path) -> None:
    """The state after a feed's new generation names what changed from the last one
    (``delta``): the generation's change, less what a decision stands in for in both;
    the tally moved by it agrees with a count from scratch."""
    from edgeagent.entrydiff import changed
    from edgeagent.tally import EntryTally

    store = SqliteStore(tmp_path / "s.sqlite3")
    guard = Guard.load(Path(BUNDLED_LISTS_DIR) / "protected")
    hosts = ("one.example", "two.example", "three.example", "cover.example")
    store.add_generation("a", _gen("a", *hosts), status=GenerationStatus.LIVE)
    engine = PolicyEngine(store, guard)
    _decide(store, "cover.example")  # a decision on a feed entry: it takes its place
    _decide(store, "mine.example")
    first = engine.current()
    store.add_generation(
        "a",
        _gen("a", "one.example", "three.example", "four.example", "five.example"),
        status=GenerationStatus.LIVE,
    )
    second = engine.current()
    delta = second.state.delta
    assert delta is not None
    assert delta.base is first.state.blocks
    assert [e.indicator.value for e in delta.gone] == ["two.example"]
    assert sorted(e.indicator.value for e in delta.came) == ["five.example", "four.example"]
    gone, came = changed(first.state.blocks, second.state.blocks)
    assert {id(e) for e in delta.gone} == {id(e) for e in gone}
    assert {id(e) for e in delta.came} == {id(e) for e in came}
    assert second.tally == EntryTally.of(second.state)
    # Decisions that began in that version too, one on a feed entry: still told.
    _decide(store, "late.example")
    _decide(store, "three.example")
    store.add_generation("a", _gen("a", "one.example"), status=GenerationStatus.LIVE)
    third = engine.current()
    delta = third.state.delta
    assert delta is not None
    assert delta.base is second.state.blocks
    gone, came = changed(second.state.blocks, third.state.blocks)
    assert {id(e) for e in delta.gone} == {id(e) for e in gone}
    assert {id(e) for e in delta.came} == {id(e) for e in came}
    assert sorted(e.indicator.value for e in came) == ["late.example", "three.example"]
    assert third.tally == EntryTally.of(third.state)
    store.close()


def test_random_feeds_and_decisions_hand_over_the_change_a_comparison_finds(
    tmp_path: Path,
) -> None:
    """Feed generations and decisions (blocks and allows, on feed entries and apart,
    revoked again) in random steps: whenever a state says what changed, it is what a
    comparison with the last state finds, and the engine agrees with a fresh one."""
    import contextlib
    import random

    from edgeagent.entrydiff import changed
    from edgeagent.errors import Conflict
    from edgeagent.model import DecisionStatus
    from edgeagent.tally import EntryTally

    rng = random.Random(7)
    store = SqliteStore(tmp_path / "s.sqlite3", batch_size=5)
    guard = Guard.load(Path(BUNDLED_LISTS_DIR) / "protected")
    names = [f"n{i}.example" for i in range(40)]
    store.add_generation("a", _gen("a", *names[:20]), status=GenerationStatus.LIVE)
    engine = PolicyEngine(store, guard)
    last = engine.current()
    active: list[int] = []
    told = 0
    for _ in range(60):
        for _ in range(rng.randrange(3)):
            if active and rng.random() < 0.4:
                gone_id = active.pop(rng.randrange(len(active)))
                store.set_decision_status(gone_id, DecisionStatus.REVOKED, actor="ana", reason="r")
            else:
                action = Action.ALLOW if rng.random() < 0.2 else Action.BLOCK
                with contextlib.suppress(Conflict):  # that one is active already
                    active.append(_decide(store, rng.choice(names), action))
        if rng.random() < 0.5:
            kept = rng.sample(names, rng.randrange(10, 30))
            store.add_generation("a", _gen("a", *kept), status=GenerationStatus.LIVE)
        now = engine.current()
        delta = now.state.delta
        if delta is not None and now is not last:
            told += 1
            assert delta.base is last.state.blocks
            gone, came = changed(last.state.blocks, now.state.blocks)
            assert {id(e) for e in delta.gone} == {id(e) for e in gone}
            assert {id(e) for e in delta.came} == {id(e) for e in came}
        assert now.tally == EntryTally.of(now.state)
        last = now
    assert told > 20
    assert engine.current().state == PolicyEngine(store, guard).current().state
    store.close()


def test_a_decision_s_version_hands_its_change_over_with_the_state(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    guard = Guard.load(Path(BUNDLED_LISTS_DIR) / "protected")
    store.add_generation("a", _gen("a", "one.example"), status=GenerationStatus.LIVE)
    engine = PolicyEngine(store, guard)
    _decide(store, "first.example")
    first = engine.current()
    _decide(store, "second.example")
    second = engine.current()
    delta = second.state.delta
    assert delta is not None
    assert delta.base is first.state.blocks
    assert (delta.gone, [e.indicator.value for e in delta.came]) == ((), ["second.example"])
    store.close()


def test_latest_never_waits_for_a_rebuild(tmp_path: Path) -> None:
    """``/v1/status`` reads the last snapshot built: a rebuild in progress (holding the
    engine's lock) does not hold it up."""
    store = SqliteStore(tmp_path / "s.sqlite3")
    guard = Guard.load(Path(BUNDLED_LISTS_DIR) / "protected")
    store.add_generation("a", _gen("a", "one.example"), status=GenerationStatus.LIVE)
    engine = PolicyEngine(store, guard)
    assert engine.latest() is None
    first = engine.current()
    _decide(store, "new.example")  # a new version, not built yet
    with engine._lock:  # a rebuild in progress
        assert engine.latest() is first
    engine.set_feeds(None)
    assert engine.latest() is first  # a reload does not forget it
    assert engine.current().state.version > first.state.version
    assert engine.latest() is engine.current()
    store.close()
