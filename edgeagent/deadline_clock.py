"""The one clock every deadline is compared with: decision expiry and the takedown timers
(reminder, escalation, SLA breach, re-notify, retry, re-check).

A :class:`DeadlineClock` is the wall clock, except that a step back is not followed: it
is the monotonic clock plus the largest offset between the wall clock and the monotonic
clock seen so far. A forward step is taken at the next reading; after a step back the
clock goes on from where it was, at the pace of the monotonic clock, so it stays ahead
of the wall clock by the step until a step forward takes the wall clock past it. A
deadline N seconds away then passes after N seconds of elapsed time even if the wall
clock was set back meanwhile, and at once if it was set forward past it (early rather
than late).

The largest reading is also kept per host in the store (a :class:`ClockMark`, saved by
the daemon at start, every minute and at shutdown), so a restart after a step back does
not follow the step either. With the mark comes the host's monotonic clock and boot id:

- restarted in the same boot, the clock resumes the offset it had, so the time the daemon
  was down is counted as well (the monotonic clock kept running);
- after a reboot the monotonic clock starts again at zero, so the clock resumes from the
  mark itself: it never shows less than the largest time seen before, but the time the
  host was down is counted only once the wall clock shows it.

A wall clock that was wrong ahead and is set back to the right time therefore leaves
deadlines early by the correction, across restarts, until the wall clock is stepped past
the clock again or the host's mark is removed from the store while the daemon is stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")

MARK_SECONDS = 60.0
"""How often the daemon saves its clock's mark (it is also saved at start and shutdown)."""


@dataclass(frozen=True, slots=True)
class ClockMark:
    """The latest reading ``at`` of ``host``'s deadline clock, with the host's monotonic
    clock and boot id when it was taken."""

    host: str
    at: datetime
    boot: str
    monotonic: float


def boot_id(path: Path = BOOT_ID_FILE) -> str:
    """This boot of the host (``""`` where the kernel does not say: then a mark is always
    taken as from another boot, which only forgoes counting the time the daemon was down)."""
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError:
        return ""


class DeadlineClock:
    """The wall clock, never stepped back, resumed from ``mark`` (see the module
    docstring). ``host`` and ``boot`` are what :meth:`mark` records. Thread-safe."""

    def __init__(
        self,
        host: str = "",
        mark: ClockMark | None = None,
        *,
        boot: str = "",
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self._boot = boot
        self._wall = wall
        self._monotonic = monotonic
        self._lock = threading.Lock()
        mono = monotonic()
        self._offset = wall() - mono
        if mark is not None:
            self._offset = max(self._offset, _resumed_offset(mark, boot, mono))

    def __call__(self) -> datetime:
        return self.mark().at

    def mark(self) -> ClockMark:
        """Read the clock, as the mark to keep in the store."""
        with self._lock:
            mono = self._monotonic()
            self._offset = max(self._offset, self._wall() - mono)
            at = datetime.fromtimestamp(mono + self._offset, UTC)
        return ClockMark(self.host, at, self._boot, mono)


def _resumed_offset(mark: ClockMark, boot: str, mono: float) -> float:
    """The offset to the monotonic clock that continues ``mark`` now (``mono``)."""
    if boot and mark.boot == boot:
        return mark.at.timestamp() - mark.monotonic  # the same monotonic clock: time ran on
    return mark.at.timestamp() - mono  # a new boot: from the mark itself
