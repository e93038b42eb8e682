"""One process's wall clock, stepped while it runs: libfaketime on that process only.

Stepping the host's clock would disturb every other process on the machine, so the
daemon under test runs with libfaketime preloaded, its offset read from a file at every
clock reading (``FAKETIME_TIMESTAMP_FILE`` + ``FAKETIME_NO_CACHE=1``) and its monotonic
clock left alone (``FAKETIME_DONT_FAKE_MONOTONIC=1``), as a host's clock is stepped.
``FAKETIME_ONLY_CMDS`` limits the faking to the Python process itself, and the programs
it runs are given as :meth:`SteppedClock.unfaked` wrappers, which start them without
libfaketime (``named-checkzone`` hangs with it loaded): they keep the host's clock.

libfaketime 0.9.10 turns an absolute ``clock_nanosleep`` on the monotonic clock (every
``time.sleep`` of Python 3.11) into EINVAL in that mode; ``faketime_fix.c``, compiled
here and preloaded first, sends such sleeps to the kernel unchanged.

:class:`SteppedClock`: ``env()`` is what the process is started with; ``unfaked(program)``
is what it runs programs through; ``step(seconds)`` moves its wall clock (the process
sees it at its next reading); ``now()`` is the time the process reads.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.support.binaries import require_binary

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
FIX_SOURCE = Path(__file__).with_name("faketime_fix.c")
FAKED_COMMAND = "python"  # the daemon's program name (its console script's interpreter)


class SteppedClock:
    """A wall-clock offset for one process (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        require_binary("gcc")
        if not LIBFAKETIME.exists():
            raise AssertionError(f"{LIBFAKETIME} is missing: apt-get install libfaketime")
        directory.mkdir(parents=True, exist_ok=True)
        self._fix = directory / "faketime_fix.so"
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-O2", "-o", str(self._fix), str(FIX_SOURCE), "-ldl"],
            check=True,
        )
        self._file = directory / "faketime.offset"
        self.offset = 0
        self._write()

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": f"{self._fix} {LIBFAKETIME}",
            "FAKETIME_TIMESTAMP_FILE": str(self._file),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            # File times stay the host's: faking them made every stat() (thousands per
            # import) read the offset file, so a lazy import took seconds.
            "NO_FAKE_STAT": "1",
            "FAKETIME_ONLY_CMDS": FAKED_COMMAND,
        }

    def unfaked(self, program: str) -> str:
        """A wrapper running ``program`` (with its arguments) without libfaketime."""
        wrapper = self._file.with_name(f"unfaked-{Path(program).name}")
        wrapper.write_text(
            f'#!/bin/sh\nunset LD_PRELOAD\nexec {shlex.quote(require_binary(program))} "$@"\n',
            encoding="utf-8",
        )
        wrapper.chmod(0o755)
        return str(wrapper)

    def step(self, seconds: int) -> None:
        """Move the process's wall clock by ``seconds`` (back when negative)."""
        self.offset += seconds
        self._write()

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.offset, UTC)

    def _write(self) -> None:
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(f"{self.offset:+d}\n", encoding="ascii")
        tmp.replace(self._file)
