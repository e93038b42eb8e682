"""Free space where the agent writes: a full disk makes the daemon not ready.

A store write, a zone file or a proxy index on a full disk fails and the old one stays
in force; the daemon keeps serving, but must not claim to be ready while it cannot
record a decision. :func:`full_reasons` is checked by ``/readyz`` each time, so
readiness returns by itself once space does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# Below this, an SQLite transaction (journal + pages) or an artefact is unlikely to fit.
MIN_FREE_BYTES = 1024 * 1024


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def full_reasons(paths: Iterable[Path], minimum: int = MIN_FREE_BYTES) -> list[str]:
    """One readiness reason per directory (of ``paths``) with less than ``minimum`` free."""
    reasons = []
    for path in dict.fromkeys(paths):
        try:
            free = free_bytes(path)
        except OSError:
            continue  # not there (yet): whoever writes there reports it
        if free < minimum:
            reasons.append(f"disk full at {path} ({free} bytes free)")
    return reasons
