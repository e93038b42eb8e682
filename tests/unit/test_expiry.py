"""The expiry timer: fires at the armed wall-clock time, re-arms, disarms, never early."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from edgeagent.expiry import ExpiryTimer


class Passes:
    """An expire pass that records when it ran."""

    def __init__(self) -> None:
        self.at: list[datetime] = []
        self.ran = asyncio.Event()

    async def __call__(self) -> None:
        self.at.append(datetime.now(UTC))
        self.ran.set()


async def test_fires_at_the_armed_time_and_only_the_latest_arming_counts() -> None:
    passes = Passes()
    timer = ExpiryTimer(passes)
    timer.arm(datetime.now(UTC) + timedelta(seconds=30))
    when = datetime.now(UTC) + timedelta(seconds=0.2)
    timer.arm(when)  # the policy changed: the earlier expiry replaces the later
    assert timer.armed_for == when
    await asyncio.wait_for(passes.ran.wait(), 2)
    assert passes.at[0] >= when
    assert (passes.at[0] - when).total_seconds() < 0.5
    assert timer.armed_for is None
    await timer.close()


async def test_a_past_expiry_fires_at_once_and_none_disarms() -> None:
    passes = Passes()
    timer = ExpiryTimer(passes)
    timer.arm(None)
    timer.arm(datetime.now(UTC) + timedelta(seconds=0.1))
    timer.arm(None)
    await asyncio.sleep(0.3)
    assert passes.at == []
    timer.arm(datetime.now(UTC) - timedelta(hours=1))
    await asyncio.wait_for(passes.ran.wait(), 1)
    await timer.close()


async def test_waits_while_the_wall_clock_is_behind() -> None:
    # The monotonic delay is over but the wall clock (stepped back meanwhile) has not
    # reached the expiry: the pass waits for it rather than finding nothing due.
    passes = Passes()
    skew = [timedelta(0)]

    def now() -> datetime:
        return datetime.now(UTC) - skew[0]

    timer = ExpiryTimer(passes, now)
    when = datetime.now(UTC)
    timer.arm(when)  # due at once on the monotonic clock
    skew[0] = timedelta(seconds=0.3)  # before it fires, the wall clock goes back 0.3 s
    await asyncio.wait_for(passes.ran.wait(), 2)
    assert now() >= when
    assert (passes.at[0] - when).total_seconds() >= 0.25
    await timer.close()


async def test_a_failing_pass_is_logged_and_the_timer_stays_usable() -> None:
    calls: list[int] = []

    async def failing() -> None:
        calls.append(1)
        raise RuntimeError("store gone")

    timer = ExpiryTimer(failing)
    timer.arm(datetime.now(UTC))
    await asyncio.sleep(0.1)
    timer.arm(datetime.now(UTC))
    await asyncio.sleep(0.1)
    assert calls == [1, 1]
    await timer.close()
