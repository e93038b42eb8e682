"""SqliteStore: the store contract (:mod:`tests.support.store_contract`), then what is SQLite's own:
files and their modes, pragmas, schema migrations, ingest batches, durability."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeagent.errors import StoreError
from edgeagent.model import DecisionStatus, Entry
from edgeagent.store import SqliteStore, migrations, open_store
from edgeagent.store.base import GenerationStatus
from edgeagent.store.sqlite import SqliteStoreConfig
from tests.support.store_contract import Clock, StoreContract, entries, new_decision


@dataclass
class SqliteHarness:
    """A fresh SQLite file (see :class:`tests.support.store_contract.StoreHarness`)."""

    path: Path
    schema_version: int = migrations.CURRENT_VERSION

    def open(self, clock: Clock | None = None) -> SqliteStore:
        return SqliteStore(self.path) if clock is None else SqliteStore(self.path, clock=clock)

    def _raw(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None)

    def count_rows(self, table: str) -> int:
        raw = self._raw()
        try:
            return int(raw.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        finally:
            raw.close()

    def insert_stale_loading(self, feed: str) -> None:
        raw = self._raw()
        raw.execute(
            "INSERT INTO generations (feed, status, created_at, status_changed_at) "
            "VALUES (?, '_loading', 0, 0)",
            (feed,),
        )
        raw.close()


class TestSqliteStoreContract(StoreContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> SqliteHarness:
        return SqliteHarness(tmp_path / "store.db")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(db: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(db)
    yield s
    s.close()


def test_open_store_from_config_makes_private_dir(tmp_path: Path) -> None:
    s = open_store(SqliteStoreConfig(), tmp_path / "state")
    s.close()
    assert (tmp_path / "state" / "edgeagent.sqlite3").is_file()
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


# --- files and schema -------------------------------------------------------------------


def test_files_are_mode_0600(db: Path) -> None:
    s = SqliteStore(db)
    s.add_decision(new_decision())
    s.append_audit("alice", "decision.create", "decision:1")
    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    for f in files:
        assert f.exists(), f
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    s.close()


def test_existing_world_readable_db_is_tightened(db: Path) -> None:
    SqliteStore(db).close()
    db.chmod(0o644)
    SqliteStore(db).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_pragmas(store: SqliteStore, db: Path) -> None:
    c = store._conn
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert c.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_v1_db_migrates_to_current(db: Path) -> None:
    raw = sqlite3.connect(db, isolation_level=None)
    assert migrations.migrate(raw, target=1) == 1
    # Data written by a v1 agent: an audit row and a decision.
    raw.execute(
        "INSERT INTO audit (id, at, actor, action, subject, detail, prev_hash, row_hash) "
        "VALUES (1, '2024-05-01T12:00:00.000000+00:00', 'a', 'x', 's', '{}', ?, ?)",
        ("0" * 64, "f" * 64),
    )
    raw.execute(
        "INSERT INTO decisions (scope, value, action, actor, reason, reference, notice_source, "
        "notice_received_at, created_at, status) VALUES "
        "('host', 'old.example', 'block', 'a', 'r', 'c', 'public', 0, 0, 'active')"
    )
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'tokens'").fetchone() is None
    raw.close()

    s = SqliteStore(db)
    assert s.schema_version() == migrations.CURRENT_VERSION
    old = s.get_decision(1)
    assert old.indicator.value == "old.example"
    # Decisions from before the law-enforcement hold have no hold and no jurisdiction.
    assert (old.hold, old.jurisdiction) == (False, "")
    # The v2 data migration seeded the audit head from the existing row.
    assert s.audit_head() == (1, "f" * 64)
    token = s.add_token("ops", "operator", hashlib.sha256(b"secret").digest())
    assert token.id == 1
    s.close()


def test_newer_schema_is_refused(db: Path) -> None:
    SqliteStore(db).close()
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {migrations.CURRENT_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="newer than this edgeagent supports"):
        SqliteStore(db)


def test_failed_migration_leaves_db_untouched(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = sqlite3.connect(db, isolation_level=None)
    migrations.migrate(raw, target=1)
    broken = (*migrations.MIGRATIONS[:1], ("CREATE TABLE tokens (x)", "THIS IS NOT SQL"))
    monkeypatch.setattr(migrations, "MIGRATIONS", broken)
    with pytest.raises(sqlite3.OperationalError):
        migrations.migrate(raw, target=2)
    assert migrations.user_version(raw) == 1
    assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'tokens'").fetchone() is None
    raw.close()


# --- generations ------------------------------------------------------------------------


def test_ingest_spans_several_batches(db: Path) -> None:
    s = SqliteStore(db, batch_size=7)
    for n in (0, 7, 20):
        gen = s.add_generation(f"f{n}", entries(n), status=GenerationStatus.LIVE)
        assert gen.entry_count == n
        assert sum(1 for _ in s.generation_entries(gen.id)) == n
    s.close()


def test_a_write_during_an_ingest_goes_in_between_its_batches(db: Path) -> None:
    """A decision or audit row never waits for a whole generation: the loader lets a
    writer that waits for the lock go first at its next batch boundary."""
    s = SqliteStore(db, batch_size=5)
    written = threading.Event()
    seen_at: list[int] = []  # entries handed to the loader when the write was done

    def write() -> None:
        s.append_audit("ana", "test.write", "x")
        written.set()

    writer = threading.Thread(target=write)

    def watched_entries() -> Iterator[Entry]:
        for i, entry in enumerate(entries(2_000)):
            if i == 12:
                writer.start()  # the loader holds the lock now, inside its third batch
                time.sleep(0.05)  # until the writer waits for the lock
            if written.is_set() and not seen_at:
                seen_at.append(i)
            yield entry

    gen = s.add_generation("f", watched_entries(), status=GenerationStatus.LIVE)
    writer.join()
    assert seen_at, "the write waited for the whole generation"
    assert seen_at[0] <= 15 + 5  # the batch under way, then the write
    assert gen.entry_count == 2_000
    assert [r.action for r in s.audit_since()][-1:] == ["test.write"]
    s.close()


# --- decisions and policy_version -------------------------------------------------------


def test_second_connection_cannot_bypass_unique_rule(store: SqliteStore, db: Path) -> None:
    store.add_decision(new_decision())
    raw = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute(
            "INSERT INTO decisions (scope, value, action, actor, reason, reference, "
            "notice_source, notice_received_at, created_at, status) VALUES "
            "('host', 'bad.example.com', 'block', 'a', 'r', 'c', 'public', 0, 0, "
            "'pending-approval')"
        )
    raw.close()


# --- tokens -----------------------------------------------------------------------------


def test_token_secret_never_on_disk(store: SqliteStore, db: Path) -> None:
    secret = b"s3cret-token-value"
    digest = hashlib.sha256(secret).digest()
    store.add_token("noc", "reader", digest)
    store.close()
    data = b"".join(f.read_bytes() for f in db.parent.glob(f"{db.name}*"))
    assert digest in data
    assert secret not in data


_KILL_CHILD = """
import sys
from datetime import UTC, datetime
from edgeagent.model import Action, DecisionStatus, Indicator, NoticeSource, Scope
from edgeagent.store.base import NewDecision
from edgeagent.store.sqlite import SqliteStore

s = SqliteStore(sys.argv[1])
d = s.add_decision(NewDecision(
    indicator=Indicator(Scope.HOST, "killed.example"), action=Action.BLOCK, actor="a",
    reason="r", reference="c", notice_source=NoticeSource.PUBLIC,
    notice_received_at=datetime.now(UTC), status=DecisionStatus.ACTIVE,
))
s.append_audit("a", "decision.create", f"decision:{d.id}")
print(d.id, flush=True)
sys.stdin.read()  # wait to be killed, connection still open
"""


def test_writes_survive_kill_9(db: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _KILL_CHILD, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    decision_id = int(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    s = SqliteStore(db)
    assert s.get_decision(decision_id).status is DecisionStatus.ACTIVE
    assert s.policy_version() == 1
    result = s.verify_audit()
    assert (result.ok, result.rows) == (True, 1)
    s.close()
