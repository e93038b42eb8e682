"""Bulk loops pace themselves: they work a share of the time and sleep the rest."""

from __future__ import annotations

import pytest

from edgeagent import bulk


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
        pacer.pause()
        assert clock.slept == pytest.approx([0.02])
    finally:
        bulk.set_pace(before)
