"""Bulk loops pace themselves while API requests are answered: they work a share of the
time and sleep the rest; with no request in flight they never sleep."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeagent import bulk
from edgeagent.store import SqliteStore
from tests.support.api import ApiHarness, add_tokens, make_context, make_guard


class _Clock:
    """perf_counter and sleep on a clock that moves only when told (or slept)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_paced_loop_sleeps_so_that_it_works_its_share_of_the_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(bulk, "time", clock)
    seen = []
    with bulk.request_in_flight():
        for item in bulk.paced(range(10), share=0.25, chunk=4):
            clock.now += 0.01  # the consumer's work on one item
            seen.append(item)
    assert seen == list(range(10))
    # Two full chunks of 40 ms of work, each followed by three times as long asleep.
    assert clock.slept == pytest.approx([0.12, 0.12])


def test_without_a_pace_set_bulk_loops_do_not_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(bulk, "time", clock)
    for _ in bulk.paced(range(10), chunk=2):
        clock.now += 0.01
    assert clock.slept == []
    before = bulk.set_pace(0.5)
    try:
        assert before == 1.0
        pacer = bulk.Pacer()
        clock.now += 0.02
        with bulk.request_in_flight():
            pacer.pause()
        assert clock.slept == pytest.approx([0.02])
    finally:
        bulk.set_pace(before)


def test_bulk_loops_sleep_only_while_requests_are_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(bulk, "time", clock)
    pacer = bulk.Pacer(share=0.5)
    clock.now += 0.03
    pacer.pause()  # nobody waits: no sleep, and this work is not owed later
    assert clock.slept == []
    with bulk.request_in_flight():
        assert bulk.requests_in_flight() == 1
        clock.now += 0.01
        pacer.pause()
        assert clock.slept == pytest.approx([0.01])  # the 10 ms since, not the 40
        with bulk.request_aside():  # e.g. the sync request waiting for this very work
            assert bulk.requests_in_flight() == 0
            clock.now += 0.01
            pacer.pause()
        assert clock.slept == pytest.approx([0.01])
    assert bulk.requests_in_flight() == 0
    clock.now += 0.01
    pacer.pause()
    assert clock.slept == pytest.approx([0.01])


async def test_the_api_counts_its_requests_in_flight(tmp_path: Path) -> None:
    # Bulk work in the daemon's worker threads pauses only while some request is.
    seen: list[int] = []

    def tally() -> None:
        seen.append(bulk.requests_in_flight())

    store = SqliteStore(tmp_path / "s.db")
    tokens = add_tokens(store)
    ctx = make_context(store, make_guard(tmp_path / "p"), tally=tally)
    async with ApiHarness(store, ctx, tokens) as api:
        status, _ = await api.call("GET", "/v1/status", "noc")
    store.close()
    assert status == 200
    assert seen == [1]
    assert bulk.requests_in_flight() == 0
