"""DNS daemons for the tests, on top of :mod:`edgeagent.lab.resolvers`.

The launchers themselves (``start_authoritative``, ``start_named``, ``start_unbound``,
``start_primary``, ...) are the lab's, so that ``edgeagent lab``, the tests and the
benchmarks run the shipped snippets the same way; import them from
:mod:`edgeagent.lab.resolvers` and the process plumbing from :mod:`edgeagent.lab.daemons`.
Here is only what tests add around them.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from edgeagent.lab.daemons import RunningDaemon

# The source checkout: the shipped snippets live in its resolvers/ directory.
REPO = Path(__file__).resolve().parents[2]


def stop_all(*daemons: RunningDaemon | None) -> None:
    """Stop every daemon given, ignoring ``None`` and errors from ones already gone."""
    for d in daemons:
        if d is not None:
            with contextlib.suppress(Exception):
                d.stop()
