"""Periodic jobs on the monotonic clock (edgeagent.periodic)."""

from __future__ import annotations

import asyncio

import pytest

from edgeagent.periodic import JobTiming, PeriodicJobs, next_due


def test_next_due_collapses_missed_runs() -> None:
    assert next_due(100.0, 100.0, 10.0, 60.0) == 110.0
    assert next_due(100.0, 150.0, 10.0, 60.0) == 110.0  # late within the grace: at once
    assert next_due(100.0, 200.0, 10.0, 60.0) == 200.0  # beyond it: the next slot ahead
    assert next_due(100.0, 205.0, 10.0, 60.0) == 210.0


async def test_jobs_run_one_at_a_time_survive_failures_and_pause() -> None:
    runs: list[str] = []
    running = 0
    overlap = False

    async def slow() -> None:
        nonlocal running, overlap
        running += 1
        overlap = overlap or running > 1
        await asyncio.sleep(0.05)
        running -= 1
        runs.append("slow")

    async def failing() -> None:
        runs.append("failing")
        raise RuntimeError("boom")

    jobs = PeriodicJobs()
    jobs.every("slow", 0.01, slow)
    jobs.every("failing", 0.02, failing, JobTiming(jitter=0.01))
    await asyncio.sleep(0.3)
    assert not overlap
    assert runs.count("slow") >= 3
    assert runs.count("failing") >= 3
    jobs.pause()
    await asyncio.sleep(0.06)  # a run under way finishes
    paused_at = len(runs)
    await asyncio.sleep(0.15)
    assert len(runs) == paused_at
    jobs.resume()
    assert jobs.remove("failing")
    assert not jobs.remove("failing")
    assert jobs.job_ids() == ["slow"]
    await asyncio.sleep(0.15)
    assert set(runs[paused_at:]) == {"slow"}  # resumed, and only the job left
    await jobs.close()
    assert jobs.job_ids() == []


async def test_a_job_added_again_replaces_the_first() -> None:
    runs: list[int] = []
    jobs = PeriodicJobs()

    async def first() -> None:
        runs.append(1)

    async def second() -> None:
        runs.append(2)

    jobs.every("job", 0.02, first)
    jobs.every("job", 0.02, second)
    await asyncio.sleep(0.15)
    await jobs.close()
    assert set(runs) == {2}


def test_a_bad_interval_or_cron_is_refused() -> None:
    jobs = PeriodicJobs()
    with pytest.raises(ValueError, match="job: the interval must be positive"):
        jobs.every("job", 0, lambda: asyncio.sleep(0))
    with pytest.raises(ValueError):
        jobs.cron("job", "61 * * * *", lambda: asyncio.sleep(0))
