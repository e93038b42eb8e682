"""Persistent state: feed generations, decisions, audit chain, API tokens.

``open_store(path)`` returns the embedded SQLite backend; code elsewhere should depend on
the :class:`edgeagent.store.base.Store` protocol only.
"""

from __future__ import annotations

import os

from edgeagent.store.base import Store
from edgeagent.store.sqlite import SqliteStore


def open_store(path: str | os.PathLike[str]) -> Store:
    """Open (creating and migrating as needed) the store at ``path``; files are mode 0600."""
    return SqliteStore(path)


__all__ = ["SqliteStore", "Store", "open_store"]
