"""Persistent state: feed generations, decisions, audit chain, API tokens (and, with the
PostgreSQL backend, takedown tickets).

``open_store(config, state_dir)`` opens the configured backend (see
:mod:`edgeagent.store.kinds`); ``open_ticket_store`` opens the takedown tickets beside it.
Code elsewhere should depend on the :class:`edgeagent.store.base.Store` protocol only.
"""

from __future__ import annotations

from pathlib import Path

from edgeagent.store.base import Store, StoreConfig
from edgeagent.store.kinds import STORE_BACKENDS
from edgeagent.store.postgresql.store import PostgresStoreConfig
from edgeagent.store.sqlite import SqliteStore
from edgeagent.takedown.ticketstore import TicketStorage, TicketStore

TICKET_STORE_FILE_NAME = "takedown.sqlite3"
"""The SQLite ticket file in the state directory (next to a SQLite store)."""


def open_store(config: StoreConfig, state_dir: Path) -> Store:
    """Open (creating and migrating as needed) the store ``config`` (``[store]``) names."""
    return STORE_BACKENDS.plugin(config).from_config(config, state_dir)


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
    "open_store",
    "open_ticket_store",
]
