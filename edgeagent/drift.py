"""Drift: an artefact the agent wrote, changed behind its back.

An enforcer records each artefact's SHA-256 right after it made it live
(:meth:`WrittenFiles.record`); its verify pass asks :meth:`WrittenFiles.drifted`, which
hashes the files in place again. A file that is missing or whose content differs has
drifted, and the enforcer writes it again from the current state. Hashing, not
``stat``: an edit that keeps size and mtime is still found.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
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
        # path -> (digest as written, how to take the digest of the file now)
        self._digests: dict[Path, tuple[str | None, Callable[[Path], str | None]]] = {}

    def record(self, *paths: Path) -> None:
        """Remember what ``paths`` hold now (call right after writing them)."""
        for path in paths:
            self._digests[path] = (file_digest(path), file_digest)

    def record_as(self, path: Path, digest: str, digest_of: Callable[[Path], str | None]) -> None:
        """Remember that ``path`` was written with content whose ``digest_of`` is
        ``digest``, known without reading the file back (a format whose header holds the
        checksum of its body: the check then costs one pass, at verify time only).
        ``digest_of`` must give ``None`` for a missing file and never ``digest`` for one
        that differs from what was written."""
        self._digests[path] = (digest, digest_of)

    def drifted(self) -> tuple[Path, ...]:
        """The recorded files whose content is no longer what was written."""
        return tuple(p for p, (d, digest_of) in self._digests.items() if digest_of(p) != d)
