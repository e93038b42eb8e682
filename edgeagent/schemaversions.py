"""Which schema steps take a database from the version it records to the code's, shared by
every versioned file or database the agent keeps (the store's backends, the SQLite
ticket store); a database newer than the code is refused, naming the config key that
points at it."""

from __future__ import annotations

from edgeagent.errors import StoreError


def pending_versions(found: int, target: int, known: int, *, where: str = "") -> range:
    """The versions whose steps take a database from ``found`` to ``target``.

    ``known`` is the newest version the code has. Raise ``StoreError`` (prefixed with
    ``where``, e.g. the config key of the database) if ``target`` is unknown or the
    database is newer than ``target``: it was written by a newer edgeagent, and refusing is
    the only safe choice, since this code does not know what the extra schema means.
    """
    if not 0 <= target <= known:
        raise StoreError(f"{where}unknown schema version {target} (this code knows 0..{known})")
    if found > target:
        raise StoreError(
            f"{where}database schema version {found} is newer than this edgeagent supports "
            f"({target}); upgrade edgeagent or restore a matching backup"
        )
    return range(found, target)
