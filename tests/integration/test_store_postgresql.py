"""PostgresStore on a real PostgreSQL 15: the store and ticket contracts, then what is its
own: migrations at start, a newer database refused, login and reachability errors naming
``store.dsn``, two agents on one database, COPY of large generations."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from edgeagent.config import load_config
from edgeagent.errors import StoreError, StoreUnavailable
from edgeagent.lab.daemons import free_tcp_port
from edgeagent.model import Action, Entry, Indicator, Scope
from edgeagent.store import open_store, open_ticket_store
from edgeagent.store.base import AuditNote, GenerationStatus
from edgeagent.store.kinds import STORE_BACKENDS
from edgeagent.store.postgresql import schema
from edgeagent.store.postgresql.connect import Database, query_error
from edgeagent.store.postgresql.store import PostgresStore
from edgeagent.store.postgresql.tickets import PostgresTicketStore
from edgeagent.takedown.ticketstore import TicketStorage
from tests.support.postgres import PgDatabase
from tests.support.store_contract import Clock, StoreContract, new_decision
from tests.support.tickets import TicketStoreContract

pytestmark = pytest.mark.integration


@dataclass
class PostgresHarness:
    """A fresh database (see :class:`tests.support.store_contract.StoreHarness`)."""

    db: Database
    schema_version: int = schema.CURRENT_VERSION

    def open(self, clock: Clock | None = None) -> PostgresStore:
        return PostgresStore(self.db) if clock is None else PostgresStore(self.db, clock=clock)

    def _raw(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.db.conninfo, password=self.db.password(), autocommit=True)

    def count_rows(self, table: str) -> int:
        with self._raw() as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])

    def insert_stale_loading(self, feed: str) -> None:
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        with self._raw() as conn:
            conn.execute(
                "INSERT INTO generations (feed, status, created_at, status_changed_at) "
                "VALUES (%s, '_loading', %s, %s)",
                (feed, epoch, epoch),
            )


class TestPostgresStoreContract(StoreContract):
    @pytest.fixture
    def harness(self, pg_database: PgDatabase) -> PostgresHarness:
        return PostgresHarness(pg_database.database())


class TestPostgresTicketStore(TicketStoreContract):
    @pytest.fixture
    def open_tickets(self, pg_database: PgDatabase) -> Callable[[], TicketStorage]:
        return lambda: PostgresTicketStore(pg_database.database())


@pytest.fixture
def store(pg_database: PgDatabase) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_database.database())
    yield s
    s.close()


def _raw(pg: PgDatabase) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(pg.dsn, password=pg.password, autocommit=True)


def _schema_version(pg: PgDatabase) -> int:
    """What :func:`schema.schema_version` reads, over a connection of the test's own."""

    async def read() -> int:
        async with await pg.database().connect() as conn:
            return await schema.schema_version(conn)

    return asyncio.run(read())


# --- schema migrations ----------------------------------------------------------------


def test_migrations_applied_at_start(pg_database: PgDatabase) -> None:
    assert _schema_version(pg_database) == 0  # an empty database
    s = PostgresStore(pg_database.database())
    assert s.schema_version() == schema.CURRENT_VERSION
    s.close()
    with _raw(pg_database) as raw:
        tables = {
            r[0]
            for r in raw.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
        row = raw.execute("SELECT version FROM schema_version").fetchone()
    assert {"policy", "generations", "decisions", "audit", "audit_head", "tokens"} <= tables
    assert "tickets" in tables
    assert row == (schema.CURRENT_VERSION,)
    # Opening again changes nothing.
    PostgresStore(pg_database.database()).close()


def test_agents_starting_together_migrate_once(pg_database: PgDatabase) -> None:
    barrier = threading.Barrier(4)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            opened.append(PostgresStore(pg_database.database()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert [s.schema_version() for s in opened] == [schema.CURRENT_VERSION] * 4
    for s in opened:
        s.close()


def test_pending_migration_applied_at_start(
    pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    PostgresStore(pg_database.database()).close()  # the database at the current version
    extra = ("CREATE TABLE later_feature (id integer)", "INSERT INTO later_feature VALUES (7)")
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, extra))
    s = PostgresStore(pg_database.database())
    assert s.schema_version() == schema.CURRENT_VERSION + 1
    s.close()
    with _raw(pg_database) as raw:
        assert raw.execute("SELECT id FROM later_feature").fetchall() == [(7,)]


def test_version_1_decisions_and_tickets_gain_the_ntd_columns(pg_database: PgDatabase) -> None:
    """Hold and jurisdiction on decisions, and the ticket columns, filled for rows that a
    version 1 agent wrote."""
    from edgeagent.takedown.tickets import ticket_to_json
    from tests.support.tickets import S, make_ticket, walk

    async def to_version_1() -> None:
        async with await pg_database.database().connect() as conn:
            await schema.migrate(conn, target=1)

    asyncio.run(to_version_1())
    with _raw(pg_database) as raw:
        raw.execute(
            "INSERT INTO decisions (scope, value, action, actor, reason, reference, "
            "notice_source, notice_received_at, created_at, status) VALUES ('host', "
            "'old.example', 'block', 'a', 'r', 'c', 'hotline', now(), now(), 'active')"
        )
        old = walk(make_ticket(id=1, legal_hold=True), S.UNDER_REVIEW, S.TEMPORARILY_REMOVED)
        body = {k: v for k, v in ticket_to_json(old).items() if k != "assignee"}
        raw.execute(
            "INSERT INTO tickets (id, reference, customer_id, source, state, closed, "
            "notice_received_at, version, body) VALUES (1, 'HL-1', 'cust-a', 'hotline', "
            "'temporarily-removed', false, %s, 0, %s)",
            (old.notice_received_at, json.dumps(body)),
        )
    s = PostgresStore(pg_database.database())
    decision = s.get_decision(1)
    assert (decision.hold, decision.jurisdiction) == (False, "")
    s.close()
    tickets = PostgresTicketStore(pg_database.database())
    assert tickets.get(1) == old
    assert tickets.sla_counts(old.deadline) == {"hotline": (1, 0)}
    tickets.close()
    with _raw(pg_database) as raw:
        row = raw.execute(
            "SELECT deadline, removed, assignee, legal_hold, removal_minutes FROM tickets"
        ).fetchone()
    assert row == (old.deadline, True, "", True, old.minutes_to_removal)


def test_failed_migration_leaves_database_untouched(
    pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    PostgresStore(pg_database.database()).close()
    broken = ("CREATE TABLE later_feature (id integer)", "THIS IS NOT SQL")
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, broken))
    with pytest.raises(StoreError, match="migrating the schema failed"):
        PostgresStore(pg_database.database())
    with _raw(pg_database) as raw:
        assert _schema_version(pg_database) == schema.CURRENT_VERSION
        assert raw.execute("SELECT to_regclass('later_feature')").fetchone() == (None,)


def test_newer_database_is_refused(pg_database: PgDatabase) -> None:
    PostgresStore(pg_database.database()).close()
    newer = schema.CURRENT_VERSION + 1
    with _raw(pg_database) as raw:
        raw.execute("UPDATE schema_version SET version = %s", (newer,))
    with pytest.raises(StoreError) as info:
        PostgresStore(pg_database.database())
    assert str(info.value) == (
        f"store.dsn: database schema version {newer} is newer than this edgeagent supports "
        f"({schema.CURRENT_VERSION}); upgrade edgeagent or restore a matching backup"
    )
    with pytest.raises(StoreError, match="newer than this edgeagent"):
        PostgresTicketStore(pg_database.database())


# --- reaching the database ------------------------------------------------------------


def test_wrong_password_names_the_key_not_the_password(pg_database: PgDatabase) -> None:
    wrong = "not-the-Pa55word"
    with pytest.raises(StoreError) as info:
        PostgresStore(Database(pg_database.dsn, lambda: wrong))
    message = str(info.value)
    assert message.startswith("store.dsn: the database refused the login")
    assert "password authentication failed" in message
    assert "store.password_file or store.password_env" in message
    assert wrong not in message
    assert pg_database.password not in message
    assert not isinstance(info.value, StoreUnavailable)


def test_unreachable_host_names_the_key() -> None:
    port = free_tcp_port()  # nothing listens there
    db = Database(f"host=127.0.0.1 port={port} dbname=x user=y", lambda: "s3cret-pw")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        PostgresStore(db)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert message.startswith("store.dsn: cannot reach the database")
    assert f"port {port} failed: Connection refused" in message
    assert "s3cret-pw" not in message


def test_multi_host_dsn_finds_the_writable_server(pg_database: PgDatabase) -> None:
    server = pg_database.server
    dead = free_tcp_port()
    dsn = (
        f"host=127.0.0.1,{server.host} port={dead},{server.port} "
        f"dbname={pg_database.name} user={pg_database.user} target_session_attrs=read-write"
    )
    s = PostgresStore(Database(dsn, lambda: pg_database.password))
    assert s.policy_version() == 0
    s.close()


def test_store_recovers_when_its_connections_are_cut(
    store: PostgresStore, pg_database: PgDatabase
) -> None:
    store.add_decision(new_decision())
    with _raw(pg_database) as raw:  # what a database restart or failover does to a pool
        raw.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (pg_database.name,),
        )
    assert store.policy_version() == 1
    assert store.list_decisions()[0].indicator.value == "bad.example.com"


# --- the pool on the database's own event loop ------------------------------------------


def _sessions(pg: PgDatabase) -> int:
    """The agent's sessions on the server (the test's own connection is not one)."""
    with _raw(pg) as raw:
        row = raw.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND application_name = 'edgeagent'",
            (pg.name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_pool_is_asyncio_on_a_loop_thread_that_close_ends(pg_database: PgDatabase) -> None:
    before = set(threading.enumerate())
    store = PostgresStore(pg_database.database())
    tickets = PostgresTicketStore(pg_database.database())
    assert isinstance(store._pool._pool, AsyncConnectionPool)
    assert isinstance(tickets._pool._pool, AsyncConnectionPool)
    started = {t.name: t.daemon for t in set(threading.enumerate()) - before}
    assert started == {"edgeagent-store-loop": True, "edgeagent-tickets-loop": True}
    # A stream left half read when the store closes: close() ends its connection too.
    gen = store.add_generation("big", _domains(25_000), status=GenerationStatus.LIVE)
    stream = store.generation_entries(gen.id)
    assert next(stream).indicator.value == "d0000000.example"
    assert len(store._pool._held) == 1  # lent to the stream
    assert _sessions(pg_database) >= 2
    store.close()
    tickets.close()
    store.close()  # idempotent
    tickets.close()
    assert set(threading.enumerate()) <= before  # no thread left behind
    assert _sessions(pg_database) == 0
    stream.close()  # nothing left to release, and no error
    with pytest.raises(StoreError, match="store is closed"):
        store.policy_version()
    with pytest.raises(StoreError, match="store is closed"):
        next(store.active_decisions())
    with pytest.raises(StoreError, match="store is closed"):
        tickets.open_tickets()


def test_the_store_refuses_calls_from_its_own_loop(store: PostgresStore) -> None:
    """A coroutine on the database's loop that called the synchronous store would wait
    for the loop it blocks: refused at once, naming what it called."""

    async def on_the_loop() -> int:
        return store.policy_version()

    with pytest.raises(RuntimeError, match="called from its database's own event loop") as info:
        store._pool.run(on_the_loop())
    assert "PostgresStore.policy_version" in str(info.value)
    assert store.policy_version() == 0  # the store itself is unharmed


def test_a_stream_dropped_on_the_loop_gives_its_connection_back(store: PostgresStore) -> None:
    """The garbage collector may finalize a half-read stream on the loop's own thread,
    where it cannot wait for its cleanup: the cleanup is scheduled there instead."""
    gen = store.add_generation("big", _domains(25_000), status=GenerationStatus.LIVE)
    stream = store.generation_entries(gen.id)
    next(stream)
    assert len(store._pool._held) == 1

    async def drop() -> None:
        stream.close()

    store._pool.run(drop())
    deadline = time.monotonic() + 10
    while store._pool._held and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not store._pool._held
    assert store.get_generation(gen.id).entry_count == 25_000


def test_streams_and_copies_leave_the_loop_free(store: PostgresStore) -> None:
    """Between two batches of a stream or a COPY the loop serves other calls, and the
    caller's iterator runs in the caller's thread (here: it reads the store itself)."""
    first = store.add_generation("big", _domains(30_000), status=GenerationStatus.LIVE)
    loop_thread = threading.current_thread()
    threads: set[threading.Thread] = set()

    def copied_from_the_live_one() -> Iterator[Entry]:
        for i, entry in enumerate(store.generation_entries(first.id)):
            threads.add(threading.current_thread())
            if i % 10_000 == 0:
                store.append_audit("test", "store.test", f"feed:{i}")
            yield entry

    second = store.add_generation("big", copied_from_the_live_one(), status=GenerationStatus.LIVE)
    assert threads == {loop_thread}
    assert second.entry_count == 30_000
    assert store.verify_audit().rows == 3
    assert list(store.generation_entries(second.id))[-1].indicator.value == "d0029999.example"


def _config(pg: PgDatabase, tmp_path: Path, password: str) -> Path:
    """An agent config with the store in ``pg``, its password in a file beside it."""
    secret = tmp_path / "pg.password"
    secret.write_text(password + "\n", encoding="utf-8")
    secret.chmod(0o600)
    config = tmp_path / "edgeagent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[store]\nbackend = "postgresql"\ndsn = "{pg.dsn}"\npassword_file = "pg.password"\n',
        encoding="utf-8",
    )
    return config


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeagent.cli", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_config_to_open_store(pg_database: PgDatabase, tmp_path: Path) -> None:
    settings = load_config(_config(pg_database, tmp_path, pg_database.password))
    assert STORE_BACKENDS.plugin(settings.store) is PostgresStore
    s = open_store(settings.store, settings.agent.state_dir)
    tickets = open_ticket_store(settings.store, settings.agent.state_dir)
    assert isinstance(s, PostgresStore)
    assert isinstance(tickets, PostgresTicketStore)
    s.append_audit("alice", "store.test", "store:postgresql")
    assert s.verify_audit().ok
    tickets.close()
    s.close()
    assert not (tmp_path / "state").exists()  # nothing written locally


def test_cli_on_a_postgresql_store(pg_database: PgDatabase, tmp_path: Path) -> None:
    config = _config(pg_database, tmp_path, pg_database.password)
    checked = _cli(config, "check-config")
    assert checked.returncode == 0, checked.stderr
    assert f"postgresql {pg_database.dsn}" in checked.stdout
    created = _cli(config, "token", "create", "--role", "admin", "--name", "ops")
    assert created.returncode == 0, created.stderr
    verified = _cli(config, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    with _raw(pg_database) as raw:
        assert raw.execute("SELECT name, role FROM tokens").fetchall() == [("ops", "admin")]
        assert raw.execute("SELECT count(*) FROM audit").fetchone() == (1,)
    wrong = _config(pg_database, tmp_path, "wrong-Pa55word")
    refused = _cli(wrong, "audit", "verify")
    assert refused.returncode != 0
    assert "store.dsn: the database refused the login" in refused.stderr
    assert "wrong-Pa55word" not in refused.stderr + refused.stdout


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("newer", "store.dsn: database schema version 999 is newer than this edgeagent"),
        ("password", "store.dsn: the database refused the login"),
        ("unreachable", "store.dsn: cannot reach the database"),
    ],
)
def test_agent_refuses_to_start_naming_the_key(
    fault: str, expected: str, pg_database: PgDatabase, tmp_path: Path
) -> None:
    password = "wrong-Pa55word" if fault == "password" else pg_database.password
    config = _config(pg_database, tmp_path, password)
    if fault == "newer":
        PostgresStore(pg_database.database()).close()
        with _raw(pg_database) as raw:
            raw.execute("UPDATE schema_version SET version = 999")
    if fault == "unreachable":
        dead = f"port={free_tcp_port()}"
        config.write_text(config.read_text().replace(f"port={pg_database.server.port}", dead))
    run = _cli(config, "run")
    assert run.returncode != 0
    assert expected in run.stderr, run.stderr[-2000:]
    assert "wrong-Pa55word" not in run.stderr + run.stdout
    assert pg_database.password not in run.stderr + run.stdout


# --- several agents on one database ---------------------------------------------------


def test_two_agents_keep_one_audit_chain(pg_database: PgDatabase) -> None:
    agents = [PostgresStore(pg_database.database()) for _ in range(2)]
    errors: list[BaseException] = []

    def work(agent: PostgresStore, n: int) -> None:
        try:
            for i in range(150):
                agent.add_decision(
                    new_decision(f"a{n}-{i}.example"), AuditNote("decision.create", {"agent": n})
                )
                agent.append_audit(f"agent{n}", "auth.ok", f"token:{n}")
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(agent, n))
        for n, agent in enumerate(agents * 2)  # two threads per agent
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    for agent in agents:  # every agent gives the same answer
        result = agent.verify_audit()
        assert (result.ok, result.rows) == (True, 4 * 150 * 2)
        assert agent.audit_head()[0] == 4 * 150 * 2
        assert agent.policy_version() == 4 * 150
    ids = [r.id for r in agents[0].audit_since(limit=10_000)]
    assert ids == list(range(1, 4 * 150 * 2 + 1))
    for agent in agents:
        agent.close()


def test_audit_table_refuses_changes(store: PostgresStore, pg_database: PgDatabase) -> None:
    store.append_audit("alice", "x", "feed:a")
    with _raw(pg_database) as raw:
        for statement in (
            "UPDATE audit SET actor = 'mallory'",
            "DELETE FROM audit",
            "TRUNCATE audit",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                raw.execute(statement)
    assert store.verify_audit().ok


def test_server_detail_never_reaches_the_message(
    store: PostgresStore, pg_database: PgDatabase
) -> None:
    store.add_decision(new_decision())
    with _raw(pg_database) as raw, pytest.raises(psycopg.errors.UniqueViolation) as info:
        raw.execute(
            "INSERT INTO decisions (scope, value, action, actor, reason, reference, "
            "notice_source, notice_received_at, created_at, status) VALUES ('host', "
            "'bad.example.com', 'block', 'a', 'r', 'c', 'public', now(), now(), 'active')"
        )
    assert "bad.example.com" in str(info.value)  # the server's DETAIL quotes the row
    message = str(query_error(info.value, "recording a decision"))
    assert "bad.example.com" not in message
    assert "decisions_one_open" in message
    assert "23505" in message


def test_server_going_away_is_unavailable_not_a_statement_error(pg_database: PgDatabase) -> None:
    """A backend terminated under its client (as a dying postmaster does to its backends:
    SQLSTATE class 57) and a server that turned read-only (a demoted primary: 25006) are
    the database's failure, not the request's: 503 and retry, not 500."""
    with _raw(pg_database) as victim, _raw(pg_database) as killer:
        killer.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError) as terminated:
            victim.execute("SELECT 1")
    with _raw(pg_database) as raw:
        raw.execute("SET default_transaction_read_only = on")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as read_only:
            raw.execute("CREATE TABLE t (i int)")
    for exc in (terminated.value, read_only.value):
        error = query_error(exc, "recording a decision")
        assert isinstance(error, StoreUnavailable), (exc.sqlstate, error)
        assert str(error).startswith("store.dsn: lost the database while recording a decision")


# --- large generations ----------------------------------------------------------------


def _domains(n: int) -> Iterator[Entry]:
    seen = datetime.now(UTC)
    for i in range(n):
        yield Entry(
            Indicator(Scope.DOMAIN, f"d{i:07d}.example"),
            Action.BLOCK,
            "big",
            "csam",
            "",
            seen,
            seen,
        )


def _store_and_stream(store: PostgresStore, n: int) -> None:
    gen = store.add_generation("big", _domains(n), status=GenerationStatus.LIVE)
    assert gen.entry_count == n
    count, last = 0, None
    for count, last in enumerate(store.generation_entries(gen.id), 1):  # noqa: B007
        pass
    assert count == n
    assert last is not None
    assert last.indicator.value == f"d{n - 1:07d}.example"


def test_100k_generation_copied(store: PostgresStore) -> None:
    _store_and_stream(store, 100_000)


@pytest.mark.slow
def test_1m_generation_copied(store: PostgresStore) -> None:
    started = time.monotonic()
    _store_and_stream(store, 1_000_000)
    assert store.prune_generations("big", keep=0) == 0  # the live one stays
    assert time.monotonic() - started < 120
