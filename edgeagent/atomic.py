"""Write artefacts so a reader sees the old file or the new one, never a partial one.

Contract of :func:`write_atomic` (and of :func:`stage_file` + :meth:`StagedFile.commit`):

1. the data goes to a temporary file in the destination's directory (same file system,
   so the final ``rename`` is atomic), created with ``mode`` from the start (no window in
   which other users could open it) and, if ``group`` is given, handed to that group;
2. the temporary file is fsynced, then ``check(tmp_path)`` runs on it; any exception from
   ``check`` removes the temporary file and propagates: the destination is untouched;
3. ``rename`` over the destination, then fsync the directory so the rename survives a
   crash.

A process killed at any point leaves the destination as it was (plus, at worst, a stray
``.<name>.tmp-*`` file, which :func:`remove_stale_temps` clears).
"""

from __future__ import annotations

import contextlib
import grp
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

Check = Callable[[Path], None]

_TMP_MARK = ".tmp-"


def _gid(group: str | int) -> int:
    if isinstance(group, int):
        return group
    return grp.getgrnam(group).gr_gid


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry change (a rename or unlink) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class StagedFile:
    """A fully written, fsynced and checked temporary file waiting to replace ``path``."""

    tmp_path: Path
    path: Path

    def commit(self) -> None:
        """Atomically replace ``path`` with the staged file and make the rename durable."""
        os.replace(self.tmp_path, self.path)
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        """Remove the staged file; ``path`` stays as it was."""
        with contextlib.suppress(FileNotFoundError):
            self.tmp_path.unlink()


def stage_file(
    path: str | os.PathLike[str],
    data: bytes | str | Iterable[bytes | memoryview | str],
    mode: int,
    group: str | int | None = None,
    check: Check | None = None,
) -> StagedFile:
    """Steps 1 and 2 of the contract: write, fsync and check a temporary file next to ``path``.

    ``data`` is bytes, text (UTF-8) or an iterable of those or memoryviews (streamed,
    never joined).
    The caller commits or discards the result; use this to stage several files and switch
    them together only when all of them passed their checks.
    """
    dest = Path(path)
    fd = -1
    tmp = dest.parent / f".{dest.name}{_TMP_MARK}{os.getpid()}-{os.urandom(4).hex()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        # The umask may have cleared bits of ``mode``: set it exactly.
        os.fchmod(fd, mode)
        if group is not None:
            os.fchown(fd, -1, _gid(group))
        with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
            fd = -1  # owned by fh now
            chunks: Iterable[bytes | memoryview | str] = (
                [data] if isinstance(data, bytes | str) else data
            )
            for chunk in chunks:
                fh.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
            fh.flush()
            os.fsync(fh.fileno())
        if check is not None:
            check(tmp)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return StagedFile(tmp_path=tmp, path=dest)


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes | str | Iterable[bytes | memoryview | str],
    mode: int,
    group: str | int | None = None,
    check: Check | None = None,
) -> None:
    """Write ``data`` to ``path`` following the module contract (temp, check, fsync, rename)."""
    stage_file(path, data, mode, group=group, check=check).commit()


def remove_stale_temps(path: str | os.PathLike[str]) -> int:
    """Remove temporary files a killed writer of ``path`` left behind; return how many."""
    dest = Path(path)
    removed = 0
    for p in dest.parent.glob(f".{dest.name}{_TMP_MARK}*"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed += 1
    return removed
