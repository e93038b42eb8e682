"""PostgreSQL store backend: the central state in one database that several agents share.

Selected with ``[store] backend = "postgresql"`` (:class:`PostgresStoreConfig`); the driver
is psycopg 3 with its connection pool (the ``postgresql`` extra). Modules:

- :mod:`.connect`: reaching the database (libpq connection string, password from a file or
  the environment, pool) and errors that name ``store.dsn``, never the password;
- :mod:`.schema`: the versioned schema, migrated at open under an advisory lock;
- :mod:`.store`: :class:`~.store.PostgresStore`, the :class:`edgeagent.store.base.Store`;
- :mod:`.tickets`: :class:`~.tickets.PostgresTicketStore`, the takedown tickets.

This module holds only the config model, so that checking a config does not need the
driver unless the PostgreSQL backend is chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from edgeagent.configtypes import EnvName, Seconds, SecretFile, one_secret, read_secret
from edgeagent.store.base import StoreConfig

DSN_KEY = "store.dsn"
"""The config key that errors about reaching the database name."""


def _dsn(value: str) -> str:
    try:
        from psycopg import Error as DriverError
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        raise ValueError(
            "the PostgreSQL driver is not installed (pip install 'edgeagent[postgresql]')"
        ) from None
    try:
        params = conninfo_to_dict(value)
    except DriverError:
        # libpq's reason quotes the text it stumbled on: keep it out of the message.
        raise ValueError(
            "not a libpq connection string (key=value pairs or a postgresql:// URI)"
        ) from None
    if "password" in params:
        raise ValueError("must not hold a password: use store.password_file or store.password_env")
    return value


Dsn = Annotated[str, Field(min_length=1), AfterValidator(_dsn)]


class PostgresStoreConfig(StoreConfig):
    """``[store]`` with ``backend = "postgresql"``.

    ``dsn`` is a libpq connection string or URI, e.g. ``host=db1,db2 port=5432,5432
    dbname=edgeagent user=edgeagent target_session_attrs=read-write`` (libpq tries the
    hosts in turn and keeps the writable one). The password comes from ``password_file``
    or ``password_env`` (or neither, for peer or certificate login), read at every new
    connection so a rotated password is picked up.
    """

    backend: Literal["postgresql"]
    dsn: Dsn
    password_file: SecretFile | None = None
    password_env: EnvName | None = None
    pool_min_size: Annotated[int, Field(ge=1)] = 1
    pool_max_size: Annotated[int, Field(ge=2)] = 10
    connect_timeout_seconds: Seconds = 10.0

    @model_validator(mode="after")
    def _consistent(self) -> PostgresStoreConfig:
        one_secret(self, "password", required=False)
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        return self

    def password(self) -> str | None:
        """The password now (``None`` when the login needs none)."""
        if self.password_file is None and self.password_env is None:
            return None
        return read_secret(self.password_file, self.password_env)

    def location(self, state_dir: Path) -> str:
        """Where the store is, for a summary (the connection string holds no password)."""
        return self.dsn


__all__ = ["DSN_KEY", "PostgresStoreConfig"]
