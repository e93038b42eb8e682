"""Persistent state: feed generations, decisions, audit chain, API tokens (and, with the
PostgreSQL backend, takedown tickets).

``open_store(config, state_dir)`` opens the configured backend (see
:mod:`edgeagent.store.kinds`) and ``open_ticket_store(config, state_dir)`` the takedown
tickets that go with it; code elsewhere should depend on the
:class:`edgeagent.store.base.Store` protocol only.
"""

from __future__ import annotations

from pathlib import Path

from edgeagent.leadership import Leadership
from edgeagent.store.base import Store, StoreConfig
from edgeagent.store.kinds import STORE_BACKENDS
from edgeagent.store.sqlite import SqliteStore
from edgeagent.takedown.ticketstore import TicketStorage


def open_store(config: StoreConfig, state_dir: Path) -> Store:
    """Open (creating and migrating as needed) the store ``config`` (``[store]``) names."""
    return STORE_BACKENDS.plugin(config).from_config(config, state_dir)


def open_ticket_store(config: StoreConfig, state_dir: Path) -> TicketStorage:
    """Open the takedown ticket store that goes with the store ``config`` names; where
    the tickets live is the backend's choice."""
    return STORE_BACKENDS.plugin(config).open_ticket_store(config, state_dir)


def open_leadership(config: StoreConfig, state_dir: Path) -> Leadership:
    """How the agents on the store ``config`` names choose their one leader."""
    return STORE_BACKENDS.plugin(config).open_leadership(config, state_dir)


__all__ = ["SqliteStore", "Store", "open_leadership", "open_store", "open_ticket_store"]
