"""The store backends ``[store] backend`` may name; the contract is in
:mod:`edgeagent.store.base`. Adding a backend: one module, one ``register`` line here."""

from __future__ import annotations

from typing import Any

from edgeagent.plugins import Registry
from edgeagent.store.base import StoreBackend
from edgeagent.store.postgresql.store import PostgresStore
from edgeagent.store.sqlite import SqliteStore

__all__ = ["STORE_BACKENDS"]

# Every command imports these modules through the config (command start-up): they import
# aiohttp, dnspython, cryptography only where they run (see edgeagent.plugins).
STORE_BACKENDS: Registry[StoreBackend[Any]] = Registry("store backend", key="backend")
STORE_BACKENDS.register(SqliteStore)
STORE_BACKENDS.register(PostgresStore)
