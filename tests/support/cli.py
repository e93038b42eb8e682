"""The ``edgeagent`` command line run as a user would: a real process, this interpreter.

- :func:`edgeagent` runs ``python -m edgeagent.cli ARGS`` with the environment plus
  ``env`` and returns the finished process (exit code, stdout, stderr as text).
"""

from __future__ import annotations

import os
import subprocess
import sys


def edgeagent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeagent.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
