"""Persistent state: feed generations, decisions, audit chain, API tokens (and, with the
PostgreSQL backend, takedown tickets).

``open_store`` picks the backend from ``[store]`` (or opens a SQLite file at a path);
``open_ticket_store`` does the same for takedown tickets. Code elsewhere should depend on
the :class:`edgeagent.store.base.Store` protocol only.
"""

from __future__ import annotations

import os
from pathlib import Path

# First, before any backend: the backends' config models use edgeagent.config's field
# types, and edgeagent.config imports those models (below its field types). Loading the
# config module first makes that cycle resolve whichever module is imported first.
import edgeagent.config  # isort: skip
from edgeagent.store.base import Store
from edgeagent.store.postgresql import PostgresStoreConfig
from edgeagent.store.sqlite import SqliteStore, SqliteStoreConfig
from edgeagent.takedown.ticketstore import TicketStorage, TicketStore

TICKET_STORE_FILE_NAME = "takedown.sqlite3"
"""The SQLite ticket file in the state directory (next to a SQLite store)."""

StoreConfig = SqliteStoreConfig | PostgresStoreConfig
"""The ``[store]`` section: one model per backend."""


def open_store(
    where: StoreConfig | str | os.PathLike[str], *, state_dir: Path | None = None
) -> Store:
    """Open (creating and migrating as needed) the store ``[store]`` describes, or the
    SQLite file at a path; SQLite files are mode 0600 in a directory made 0700.

    ``state_dir`` holds the SQLite file when the config names no path.
    """
    if isinstance(where, PostgresStoreConfig):
        from edgeagent.store.postgresql.store import PostgresStore  # needs the driver

        return PostgresStore.from_config(where)
    if isinstance(where, SqliteStoreConfig):
        path = where.file(state_dir or edgeagent.config.default_state_dir())
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return SqliteStore(path)
    return SqliteStore(where)


def open_ticket_store(config: StoreConfig, state_dir: Path) -> TicketStorage:
    """The takedown ticket store beside the store ``config`` describes: the database's
    ``tickets`` table for PostgreSQL, else ``state_dir/takedown.sqlite3``."""
    if isinstance(config, PostgresStoreConfig):
        from edgeagent.store.postgresql.tickets import PostgresTicketStore

        return PostgresTicketStore.from_config(config)
    return TicketStore(state_dir / TICKET_STORE_FILE_NAME)


__all__ = [
    "TICKET_STORE_FILE_NAME",
    "SqliteStore",
    "Store",
    "StoreConfig",
    "open_store",
    "open_ticket_store",
]
