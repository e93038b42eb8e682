"""Store backends as plug-ins: ``[store]`` selects one by ``backend``; the agent opens the
store through the registry; a backend registered elsewhere is picked up."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from edgeagent.config import ConfigError, default_settings, load_config, summary
from edgeagent.configtypes import Name
from edgeagent.errors import StoreError
from edgeagent.service import Agent
from edgeagent.store import SqliteStore, migrations, open_store, open_ticket_store
from edgeagent.store.base import StoreBackend, StoreConfig
from edgeagent.store.kinds import STORE_BACKENDS
from edgeagent.store.sqlite import SqliteStoreConfig
from edgeagent.takedown.ticketstore import SCHEMA_VERSION as TICKET_SCHEMA_VERSION
from edgeagent.takedown.ticketstore import TicketStore


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgeagent.toml"
    path.write_text(f'[agent]\nstate_dir = "state"\n{text}', encoding="utf-8")
    return path


def problems_of(path: Path) -> set[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return {str(p) for p in info.value.problems}


def test_sqlite_is_the_default_backend(tmp_path: Path) -> None:
    settings = default_settings(tmp_path / "state")
    assert settings.store == SqliteStoreConfig()
    assert STORE_BACKENDS.plugin(settings.store) is SqliteStore
    assert settings.store_path == tmp_path / "state" / "edgeagent.sqlite3"
    assert summary(settings)[1] == f"store       sqlite {tmp_path}/state/edgeagent.sqlite3"


def test_a_sqlite_store_opens_through_the_registry(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, '[store]\npath = "db/agent.sqlite3"\n'))
    assert settings.store_path == tmp_path / "db" / "agent.sqlite3"
    store = open_store(settings.store, settings.agent.state_dir)
    try:
        assert isinstance(store, SqliteStore)
        assert store.policy_version() == 0
    finally:
        store.close()
    assert (tmp_path / "db").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "db" / "agent.sqlite3").stat().st_mode & 0o777 == 0o600


def test_sqlite_tickets_live_in_their_own_file_in_the_state_dir(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, '[store]\npath = "db/agent.sqlite3"\n'))
    tickets = open_ticket_store(settings.store, settings.agent.state_dir)
    try:
        assert isinstance(tickets, TicketStore)
        assert tickets.open_tickets() == []
    finally:
        tickets.close()
    assert (tmp_path / "state" / "takedown.sqlite3").stat().st_mode & 0o777 == 0o600


def test_sqlite_config_mistakes_name_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\nbackend = "sqlite"\npath = 5\nsize = 1\n')
    assert problems_of(path) == {
        "store.path: expected a path (string), got integer",
        "store.size: unknown key",
    }
    path = write(tmp_path, '[store]\nbackend = "postgres"\n')
    assert problems_of(path) == {"store.backend: unknown backend; allowed: sqlite, postgresql"}


def test_sqlite_databases_newer_than_the_code_name_the_key(tmp_path: Path) -> None:
    """Said as the PostgreSQL backend says it (``store.dsn: database schema version ...``)."""
    settings = load_config(write(tmp_path, '[store]\npath = "db/agent.sqlite3"\n'))
    state_dir = settings.agent.state_dir
    open_store(settings.store, state_dir).close()
    open_ticket_store(settings.store, state_dir).close()
    for path, current in (
        (tmp_path / "db" / "agent.sqlite3", migrations.CURRENT_VERSION),
        (state_dir / "takedown.sqlite3", TICKET_SCHEMA_VERSION),
    ):
        with contextlib.closing(sqlite3.connect(path)) as raw:
            raw.execute(f"PRAGMA user_version = {current + 1}")
            raw.commit()
    newer = "database schema version {} is newer than this edgeagent supports ({}); "
    newer += "upgrade edgeagent or restore a matching backup"
    with pytest.raises(StoreError) as info:
        open_store(settings.store, state_dir)
    current = migrations.CURRENT_VERSION
    assert str(info.value) == "store.path: " + newer.format(current + 1, current)
    with pytest.raises(StoreError) as info:
        open_ticket_store(settings.store, state_dir)
    current = TICKET_SCHEMA_VERSION
    assert str(info.value) == "agent.state_dir (takedown.sqlite3): " + newer.format(
        current + 1, current
    )


# ----------------------------------------------------- a backend from elsewhere


class ShelfStoreConfig(StoreConfig):
    """A SQLite file on a named shelf under the state directory (a test-only backend)."""

    backend: Literal["test-shelf"]
    shelf: Name

    def location(self, state_dir: Path) -> str:
        return f"shelf {self.shelf}"


class ShelfStore(StoreBackend[ShelfStoreConfig]):
    KIND = "test-shelf"
    Config = ShelfStoreConfig

    @classmethod
    def from_config(cls, config: ShelfStoreConfig, state_dir: Path) -> SqliteStore:
        return SqliteStore.from_config(
            SqliteStoreConfig(path=state_dir / "shelves" / config.shelf / "store.sqlite3"),
            state_dir,
        )

    @classmethod
    def open_ticket_store(cls, config: ShelfStoreConfig, state_dir: Path) -> TicketStore:
        return TicketStore(state_dir / "shelves" / config.shelf / "tickets.sqlite3")


@pytest.fixture
def shelf() -> Iterator[None]:
    STORE_BACKENDS.register(ShelfStore)
    yield
    STORE_BACKENDS.unregister(ShelfStore.KIND)


@pytest.mark.usefixtures("shelf")
def test_a_registered_backend_is_loaded_and_opened_by_the_agent(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, '[store]\nbackend = "test-shelf"\nshelf = "a"\n'))
    assert isinstance(settings.store, ShelfStoreConfig)
    assert STORE_BACKENDS.plugin(settings.store) is ShelfStore
    assert summary(settings)[1] == "store       test-shelf shelf a"
    with pytest.raises(StoreError, match="test-shelf has no store file"):
        settings.store_path  # noqa: B018
    agent = Agent.build(settings)
    try:
        assert agent.store.schema_version() > 0
    finally:
        agent.close()
    assert (tmp_path / "state" / "shelves" / "a" / "store.sqlite3").is_file()
    open_ticket_store(settings.store, settings.agent.state_dir).close()
    assert (tmp_path / "state" / "shelves" / "a" / "tickets.sqlite3").is_file()


@pytest.mark.usefixtures("shelf")
def test_store_without_backend_stays_sqlite_among_several(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, '[store]\npath = "x.sqlite3"\n'))
    assert settings.store == SqliteStoreConfig(path=tmp_path / "x.sqlite3")
    assert settings.warnings == ()


@pytest.mark.usefixtures("shelf")
def test_backend_mistakes_name_the_key_among_several(tmp_path: Path) -> None:
    assert problems_of(write(tmp_path, '[store]\nbackend = "test-shelf"\n')) == {
        "store.shelf: required key missing"
    }
    assert problems_of(write(tmp_path, '[store]\nbackend = "postgres"\n')) == {
        "store.backend: unknown backend; allowed: sqlite, postgresql, test-shelf"
    }
    assert problems_of(write(tmp_path, '[store]\nbackend = "sqlite"\nshelf = "a"\n')) == {
        "store.shelf: unknown key"
    }


def test_only_a_postgresql_config_needs_the_driver(tmp_path: Path) -> None:
    """The PostgreSQL backend is always listed, but psycopg (the ``postgresql`` extra) is
    loaded only to check a dsn or open such a store."""
    sqlite = write(tmp_path, "")
    postgresql = tmp_path / "pg.toml"
    postgresql.write_text('[store]\nbackend = "postgresql"\ndsn = "host=db.example"\n', "utf-8")
    code = f"""
import sys
from pathlib import Path
sys.modules["psycopg"] = None  # as if the postgresql extra were not installed
from edgeagent.config import ConfigError, load_config, summary
from edgeagent.store import open_store
settings = load_config(Path({str(sqlite)!r}))
print(summary(settings)[1])
open_store(settings.store, settings.agent.state_dir).close()
try:
    load_config(Path({str(postgresql)!r}))
except ConfigError as exc:
    print(*exc.problems, sep="\\n")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == [
        f"store       sqlite {tmp_path}/state/edgeagent.sqlite3",
        "store.dsn: the PostgreSQL driver is not installed (pip install 'edgeagent[postgresql]')",
    ]
