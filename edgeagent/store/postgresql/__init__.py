"""PostgreSQL store backend: the central state in one database that several agents share.

Selected with ``[store] backend = "postgresql"``; the driver is psycopg 3's asyncio API
with :class:`psycopg_pool.AsyncConnectionPool` (the ``postgresql`` extra), behind the
synchronous store contract. Modules:

- :mod:`.store`: :class:`~.store.PostgresStore`, the store backend and its
  :class:`edgeagent.store.base.Store`, and its config model :class:`~.store.PostgresStoreConfig`;
- :mod:`.bridge`: the event loop each pool runs on, in a daemon thread of its own, and
  the bridge that runs a synchronous call's SQL on it as a coroutine;
- :mod:`.connect`: reaching the database (libpq connection string, password from a file or
  the environment, the pool on its loop) and errors that name ``store.dsn``, never the
  password;
- :mod:`.schema`: the versioned schema, migrated at open under an advisory lock;
- :mod:`.tickets`: :class:`~.tickets.PostgresTicketStore`, the takedown tickets;
- :mod:`.status`: the primary, its standbys and their lag;
- :mod:`.leader`: the leader's advisory lock on a session of its own (on the agent's main
  loop) and the fence.

Only :mod:`.store` (and the driver-free :mod:`.bridge`) is imported with the list of
backends (every config check does that), and it loads the driver modules when a store is
opened: a config that does not choose PostgreSQL needs no driver.
"""
