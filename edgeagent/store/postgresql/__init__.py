"""PostgreSQL store backend: the central state in one database that several agents share.

Selected with ``[store] backend = "postgresql"``; the driver is psycopg 3 with its
connection pool (the ``postgresql`` extra). Modules:

- :mod:`.store`: :class:`~.store.PostgresStore`, the store backend and its
  :class:`edgeagent.store.base.Store`, and its config model :class:`~.store.PostgresStoreConfig`;
- :mod:`.connect`: reaching the database (libpq connection string, password from a file or
  the environment, pool) and errors that name ``store.dsn``, never the password;
- :mod:`.schema`: the versioned schema, migrated at open under an advisory lock;
- :mod:`.tickets`: :class:`~.tickets.PostgresTicketStore`, the takedown tickets.

Only :mod:`.store` is imported with the list of backends (every config check does that),
and it loads the driver modules when a store is opened: a config that does not choose
PostgreSQL needs no driver.
"""
