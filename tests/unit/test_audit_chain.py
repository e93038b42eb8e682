"""The audit hash chain: append, read back, and detect edits, deletions, reordering.

Tampering is simulated the way an attacker with file access would do it: a separate
sqlite3 connection that drops the append-only triggers and rewrites rows directly.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from edgeagent.store import SqliteStore
from edgeagent.store.chain import ZERO_HASH, audit_row_hash, canonical_json

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(db: Path) -> Iterator[SqliteStore]:
    clock = [T0]

    def tick() -> datetime:
        clock[0] += timedelta(seconds=1)
        return clock[0]

    s = SqliteStore(db, clock=tick)
    for i in range(1, 6):
        s.append_audit("alice", "decision.create", f"decision:{i}", {"n": i, "why": "report"})
    yield s
    s.close()


def tamper(db: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Drop the triggers (as an attacker could) and run raw statements."""
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("DROP TRIGGER audit_no_update")
    raw.execute("DROP TRIGGER audit_no_delete")
    for sql, params in statements:
        raw.execute(sql, params)
    raw.close()


def test_chain_links_and_hashes(store: SqliteStore) -> None:
    rows = store.audit_since()
    assert [r.id for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == ZERO_HASH
    for prev, row in pairwise(rows):
        assert row.prev_hash == prev.row_hash
    r = rows[2]
    assert r.detail == {"n": 3, "why": "report"}
    assert r.at.tzinfo is not None
    expected = audit_row_hash(
        (
            r.id,
            r.at.isoformat(timespec="microseconds"),
            r.actor,
            r.action,
            r.subject,
            canonical_json(r.detail),
            r.prev_hash,
        )
    )
    assert r.row_hash == expected
    assert store.audit_head() == (5, rows[-1].row_hash)
    result = store.verify_audit()
    assert result.ok
    assert result.rows == 5
    assert result.first_bad_row is None


def test_detail_is_canonical_json(store: SqliteStore, db: Path) -> None:
    store.append_audit("bob", "feed.approve", "feed:iwf", {"b": [1, 2], "a": {"z": 1, "y": T0}})
    raw = sqlite3.connect(db)
    detail = raw.execute("SELECT detail FROM audit WHERE id = 6").fetchone()[0]
    raw.close()
    assert detail == '{"a":{"y":"2024-05-01T12:00:00.000000+00:00","z":1},"b":[1,2]}'
    assert json.loads(detail)["b"] == [1, 2]


def test_audit_since_filters_by_time(store: SqliteStore) -> None:
    rows = store.audit_since(T0 + timedelta(seconds=3))
    assert [r.id for r in rows] == [3, 4, 5]
    assert [r.id for r in store.audit_since(limit=2)] == [1, 2]


def test_empty_log_verifies(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "empty.db")
    result = s.verify_audit()
    assert result.ok
    assert result.rows == 0
    s.close()


def test_triggers_refuse_update_and_delete(store: SqliteStore, db: Path) -> None:
    raw = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE audit SET actor = 'mallory' WHERE id = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("DELETE FROM audit WHERE id = 2")
    raw.close()
    assert store.verify_audit().ok


def test_edited_row_is_named(store: SqliteStore, db: Path) -> None:
    tamper(db, ("UPDATE audit SET actor = 'mallory' WHERE id = 3", ()))
    result = store.verify_audit()
    assert not result.ok
    assert result.first_bad_row == 3
    assert "edited" in result.reason


def test_edited_detail_is_named(store: SqliteStore, db: Path) -> None:
    tamper(db, ('UPDATE audit SET detail = \'{"n":99,"why":"report"}\' WHERE id = 4', ()))
    result = store.verify_audit()
    assert (result.ok, result.first_bad_row) == (False, 4)


def test_edited_row_with_recomputed_hash_breaks_next_link(store: SqliteStore, db: Path) -> None:
    raw = sqlite3.connect(db)
    row = raw.execute(
        "SELECT id, at, actor, action, subject, detail, prev_hash FROM audit WHERE id = 2"
    ).fetchone()
    raw.close()
    forged = audit_row_hash((row[0], row[1], "mallory", row[3], row[4], row[5], row[6]))
    tamper(db, ("UPDATE audit SET actor = 'mallory', row_hash = ? WHERE id = 2", (forged,)))
    result = store.verify_audit()
    assert (result.ok, result.first_bad_row) == (False, 3)
    assert "prev_hash" in result.reason


def test_deleted_row_is_named(store: SqliteStore, db: Path) -> None:
    tamper(db, ("DELETE FROM audit WHERE id = 3", ()))
    result = store.verify_audit()
    assert not result.ok
    assert result.first_bad_row == 4
    assert "deleted" in result.reason


def test_deleted_first_row_is_named(store: SqliteStore, db: Path) -> None:
    tamper(db, ("DELETE FROM audit WHERE id = 1", ()))
    result = store.verify_audit()
    assert (result.ok, result.first_bad_row) == (False, 2)


def test_deleted_and_renumbered_rows_are_caught(store: SqliteStore, db: Path) -> None:
    # A careful tamperer closes the id gap; the prev_hash link still breaks.
    tamper(
        db,
        ("DELETE FROM audit WHERE id = 3", ()),
        ("UPDATE audit SET id = id - 1 WHERE id > 3", ()),
    )
    result = store.verify_audit()
    assert (result.ok, result.first_bad_row) == (False, 3)


def test_truncated_tail_is_caught(store: SqliteStore, db: Path) -> None:
    tamper(db, ("DELETE FROM audit WHERE id >= 4", ()))
    result = store.verify_audit()
    assert not result.ok
    assert result.first_bad_row == 4
    assert "end" in result.reason


def test_reordered_rows_are_named(store: SqliteStore, db: Path) -> None:
    cols = "at, actor, action, subject, detail, prev_hash, row_hash"
    raw = sqlite3.connect(db)
    r2 = raw.execute(f"SELECT {cols} FROM audit WHERE id = 2").fetchone()
    r4 = raw.execute(f"SELECT {cols} FROM audit WHERE id = 4").fetchone()
    raw.close()
    assign = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
    tamper(
        db,
        (f"UPDATE audit SET {assign} WHERE id = 2", tuple(r4)),
        (f"UPDATE audit SET {assign} WHERE id = 4", tuple(r2)),
    )
    result = store.verify_audit()
    assert not result.ok
    assert result.first_bad_row == 2
    assert "reordered" in result.reason


def test_chain_continues_across_reopen(store: SqliteStore, db: Path) -> None:
    store.close()
    s = SqliteStore(db)
    rec = s.append_audit("bob", "auth.denied", "token:3")
    assert rec.id == 6
    assert rec.prev_hash == s.audit_since()[4].row_hash
    assert s.verify_audit().ok
    s.close()


def test_audit_row_is_durable_on_return(store: SqliteStore, db: Path) -> None:
    # synchronous=FULL on the writer; a second reader sees the row as soon as append returns.
    rec = store.append_audit("bob", "token.create", "token:1", {"role": "reader"})
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT row_hash FROM audit WHERE id = ?", (rec.id,)).fetchone()[0] == (
        rec.row_hash
    )
    raw.close()
    assert hashlib.sha256(b"").hexdigest() != rec.row_hash
