"""The deadline clock (edgeagent.deadline_clock): forward steps taken, backward ones not,
its mark in the store resumed by the next process, in the same boot or after one, and a
takedown ticket's reminder, escalation and SLA breach due on time by it across a step
back and a restart (the running daemon: ``tests/integration/test_faults_clock.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edgeagent.deadline_clock import ClockMark, DeadlineClock, boot_id
from edgeagent.store.sqlite import SqliteStore
from edgeagent.takedown.rules import Job, TakedownPolicy, due_breaches, due_jobs
from edgeagent.takedown.tickets import Ticket, sla_breached
from tests.support.tickets import T0, make_ticket

T = 1_000_000.0  # the wall clock at the start, in seconds since the epoch


class Host:
    """A host's wall and monotonic clocks, moved by hand."""

    def __init__(self) -> None:
        self.wall, self.mono = T, 50.0

    def run(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def clock(self, mark: ClockMark | None = None, boot: str = "boot-1") -> DeadlineClock:
        return DeadlineClock(
            "host.example", mark, boot=boot, wall=lambda: self.wall, monotonic=lambda: self.mono
        )


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_takes_forward_steps_and_ignores_backward_ones() -> None:
    host = Host()
    clock = host.clock()
    assert clock() == at(T)
    host.wall += 3600  # stepped forward: taken at once
    assert clock() == at(T + 3600)
    host.wall -= 86400  # stepped back a day: ignored, time goes on from before
    host.run(10)
    assert clock() == at(T + 3610)
    host.run(86400)  # both run at one pace: the wall clock never catches up by itself
    assert clock() == at(host.wall + 86400)
    host.wall += 86400 + 5  # until a step forward takes it past the clock
    assert clock() == at(host.wall)


def test_a_restart_in_the_same_boot_resumes_the_offset_and_counts_the_downtime() -> None:
    host = Host()
    before = host.clock()
    host.wall -= 86400  # stepped back a day while the daemon ran
    host.run(10)
    mark = before.mark()
    assert mark == ClockMark("host.example", at(T + 10), "boot-1", 60.0)
    host.run(30)  # down for 30 s, the monotonic clock running on
    after = host.clock(mark)
    assert after() == at(T + 40)


def test_after_a_reboot_the_clock_resumes_from_the_mark() -> None:
    host = Host()
    mark = host.clock().mark()
    host.wall -= 86400
    host.mono = 3.0  # a new boot: the monotonic clock started again
    after = host.clock(mark, boot="boot-2")
    assert after() == at(T)  # the time the host was down is not known
    host.run(7)
    assert after() == at(T + 7)
    unknown = host.clock(mark, boot="")  # the kernel said no boot id: taken as a new boot
    assert unknown() == at(T)  # from the mark, as after a reboot


def test_a_mark_behind_the_wall_clock_changes_nothing() -> None:
    host = Host()
    mark = host.clock().mark()
    host.run(100)
    assert host.clock(mark)() == at(T + 100)
    host.mono = 1.0  # after a reboot too
    assert host.clock(mark, boot="boot-2")() == at(T + 100)


def test_the_mark_kept_in_the_store_survives_a_restart_after_a_step_back(tmp_path: Path) -> None:
    host = Host()
    store = SqliteStore(tmp_path / "store.db")
    assert store.clock_mark("host.example") is None
    running = host.clock()
    store.save_clock_mark(running.mark())
    host.run(20)
    host.wall -= 3600  # stepped back an hour
    store.save_clock_mark(running.mark())  # the daemon saves at shutdown
    store.close()
    host.run(5)
    store = SqliteStore(tmp_path / "store.db")
    restarted = host.clock(store.clock_mark("host.example"))
    assert restarted() == at(T + 25)  # not T + 25 - 3600
    assert host.clock()() == at(T + 25) - timedelta(hours=1)  # without the mark
    store.close()


def test_boot_id_reads_the_kernel_file_and_is_empty_without_one(tmp_path: Path) -> None:
    assert len(boot_id()) == 36  # a UUID on Linux
    assert boot_id(tmp_path / "missing") == ""


def test_a_tickets_deadlines_are_due_on_time_across_a_step_back_and_a_restart(
    tmp_path: Path,
) -> None:
    ticket = make_ticket()  # received at T0, reminder due at 30 min, deadline at 60 min
    host = Host()
    host.wall = T0.timestamp()
    store = SqliteStore(tmp_path / "store.db")
    clock = host.clock()
    host.run(20 * 60)
    host.wall -= 86400  # 20 min in, the wall clock is set back a day
    assert deadline_jobs(ticket, clock) == []
    host.run(10 * 60)
    assert deadline_jobs(ticket, clock) == ["reminder"]
    store.save_clock_mark(clock.mark())  # the daemon stops
    host.run(10 * 60)  # and starts again 10 min later
    clock = host.clock(store.clock_mark("host.example"))
    host.run(20 * 60 - 1)
    assert deadline_jobs(ticket, clock) == ["reminder"]
    host.run(1)
    assert deadline_jobs(ticket, clock) == ["escalation", "sla-breach"]
    assert not sla_breached(ticket, at(host.wall))  # the wall clock: a day late
    store.close()


def deadline_jobs(ticket: Ticket, clock: DeadlineClock) -> list[str]:
    """The ticket's jobs due by ``clock`` that its deadline sets."""
    due = due_jobs([ticket], TakedownPolicy(), clock())
    return sorted(j.kind for j in due if j.kind in ("reminder", "escalation", "sla-breach"))


def test_breaches_come_before_every_notice_and_recheck() -> None:
    # The first ticket's reminder and re-check would each wait on a mail server or a name
    # lookup; the second ticket's breach, a store write, is listed (and run) before them.
    reminding = make_ticket(id=1, deadline=T0 + timedelta(minutes=120))
    overdue = make_ticket(id=2)
    at = T0 + timedelta(minutes=61)
    kinds = [(j.kind, j.ticket_id) for j in due_jobs([reminding, overdue], TakedownPolicy(), at)]
    assert kinds[0] == ("sla-breach", 2)
    assert ("reminder", 1) in kinds
    assert ("escalation", 2) in kinds
    assert due_breaches([reminding, overdue], at) == [Job("sla-breach", 2, overdue.deadline)]
