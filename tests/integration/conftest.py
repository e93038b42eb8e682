"""Fixtures of the integration tests.

- ``pg_server`` (session): one real PostgreSQL 15 (:func:`edgeagent.lab.postgres.start_postgres`)
  on a free loopback port, its socket and data in a temporary directory; stopped and
  removed when the session ends.
- ``pg_database``: a fresh empty database on it, owned by a fresh login role with a random
  password (a :class:`tests.support.postgres.PgDatabase`); dropped after the test.
- ``netns``: client, proxy and origin namespaces (:mod:`tests.support.netns`).
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator

import pytest

from edgeagent.lab.postgres import PostgresServer, start_postgres
from tests.support.netns import Netns, diversion_namespaces
from tests.support.postgres import PgDatabase

_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def pg_database(pg_server: PostgresServer) -> Iterator[PgDatabase]:
    n = next(_names)
    name, user, password = f"edgeagent_t{n}", f"agent_t{n}", secrets.token_urlsafe(16)
    dsn = pg_server.create_database(name, user, password)
    yield PgDatabase(pg_server, name, user, password, dsn)
    pg_server.drop_database(name, user)


@pytest.fixture
def netns() -> Iterator[Netns]:
    """Client, proxy and origin namespaces (:mod:`tests.support.netns`), deleted afterwards."""
    if os.geteuid() != 0:
        pytest.fail("network namespace tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN)")
    with diversion_namespaces() as namespaces:
        yield namespaces
