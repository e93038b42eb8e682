"""The console's audit chain check: a long check goes on after the page, one at a time."""

from __future__ import annotations

import threading

import pytest

from edgeagent.console.chaincheck import ChainCheck
from edgeagent.errors import StoreError
from edgeagent.store.base import AuditVerification


async def test_a_long_check_is_answered_on_a_later_ask_and_never_runs_twice() -> None:
    release = threading.Event()
    runs: list[int] = []

    def verify() -> AuditVerification:
        runs.append(1)
        release.wait(5)
        return AuditVerification(True, len(runs))

    now = [0.0]
    check = ChainCheck(verify, fresh=60, clock=lambda: now[0])
    first = await check.ask(0.01)
    assert first.result is None  # still running: the page says so at once
    again = await check.ask(0.01)
    assert again.result is None
    assert again.started_at == first.started_at
    release.set()
    done = await check.ask(5)
    assert done.result == AuditVerification(True, 1)
    assert len(runs) == 1  # the asks while it ran started no second check
    now[0] = 59.0
    assert await check.ask(5) == done  # fresh: shown again, with its start time
    now[0] = 60.0
    fresh = await check.ask(5)  # then the next ask checks again
    assert fresh.result == AuditVerification(True, 2)
    assert fresh.started_at > done.started_at


async def test_a_store_error_of_the_check_reaches_the_page_and_the_next_ask_checks_again() -> None:
    failures = [StoreError("reading the audit log failed: disk I/O error")]

    def verify() -> AuditVerification:
        if failures:
            raise failures.pop()
        return AuditVerification(True, 3)

    check = ChainCheck(verify)
    with pytest.raises(StoreError, match="disk I/O error"):
        await check.ask(5)
    assert (await check.ask(5)).result == AuditVerification(True, 3)
