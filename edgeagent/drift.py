"""Drift: an artefact the agent wrote, changed behind its back.

An enforcer records each artefact's SHA-256 right after it made it live
(:meth:`WrittenFiles.record`); its verify pass asks :meth:`WrittenFiles.drifted`, which
hashes the files in place again. A file that is missing or whose content differs has
drifted, and the enforcer writes it again from the current state. Hashing, not
``stat``: an edit that keeps size and mtime is still found.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def file_digest(path: Path) -> str | None:
    """SHA-256 of the file's content as hex; ``None`` when there is no such file."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


class WrittenFiles:
    """The digests of the files an enforcer made live, to find them changed later."""

    def __init__(self) -> None:
        self._digests: dict[Path, str | None] = {}

    def record(self, *paths: Path) -> None:
        """Remember what ``paths`` hold now (call right after writing them)."""
        for path in paths:
            self._digests[path] = file_digest(path)

    def drifted(self) -> tuple[Path, ...]:
        """The recorded files whose content is no longer what was written."""
        return tuple(p for p, d in self._digests.items() if file_digest(p) != d)
