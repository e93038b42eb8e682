"""SqliteStore: files, schema/migrations, generations, decisions, policy_version, tokens."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgeagent.errors import Conflict, InvalidTransition, NotFound, StoreError
from edgeagent.model import (
    Action,
    DecisionStatus,
    Entry,
    Indicator,
    NoticeSource,
    Scope,
)
from edgeagent.store import SqliteStore, migrations
from edgeagent.store.base import AuditNote, GenerationStatus, NewDecision, TargetSearch

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(db: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(db)
    yield s
    s.close()


def entries(n: int, *, prefix: str = "d", action: Action = Action.BLOCK) -> Iterator[Entry]:
    for i in range(n):
        yield Entry(
            Indicator(Scope.DOMAIN, f"{prefix}{i}.example"),
            action,
            "feedA",
            category="csam",
            reference=f"ref-{i}",
            first_seen=T0,
            last_seen=T0 + timedelta(hours=1),
        )


def new_decision(
    value: str = "bad.example.com",
    *,
    status: DecisionStatus = DecisionStatus.ACTIVE,
    action: Action = Action.BLOCK,
    reference: str = "case-1",
    source: NoticeSource = NoticeSource.HOTLINE,
) -> NewDecision:
    return NewDecision(
        indicator=Indicator(Scope.HOST, value),
        action=action,
        actor="alice",
        reason="hotline report",
        reference=reference,
        notice_source=source,
        notice_received_at=T0,
        status=status,
        expires_at=T0 + timedelta(days=30),
        category="csam",
    )


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


def test_fresh_db_is_at_current_version(store: SqliteStore) -> None:
    assert store.schema_version() == migrations.CURRENT_VERSION
    assert migrations.CURRENT_VERSION >= 2


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
    assert s.get_decision(1).indicator.value == "old.example"
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


def test_closed_store_refuses_calls(db: Path) -> None:
    s = SqliteStore(db)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.policy_version()


def test_naive_datetime_refused(store: SqliteStore) -> None:
    naive = NewDecision(
        indicator=Indicator(Scope.HOST, "x.example"),
        action=Action.BLOCK,
        actor="a",
        reason="r",
        reference="c",
        notice_source=NoticeSource.PUBLIC,
        notice_received_at=datetime(2024, 1, 1),
        status=DecisionStatus.ACTIVE,
    )
    with pytest.raises(StoreError, match="naive"):
        store.add_decision(naive)


# --- generations ------------------------------------------------------------------------


def test_generation_roundtrip_streams_entries(store: SqliteStore) -> None:
    gen = store.add_generation(
        "feedA", entries(1000), status=GenerationStatus.LIVE, serial="42", meta={"etag": "x"}
    )
    assert gen.status is GenerationStatus.LIVE
    assert gen.entry_count == 1000
    assert gen.serial == "42"
    assert gen.meta == {"etag": "x"}
    assert gen.created_at.tzinfo is not None
    it = store.generation_entries(gen.id)
    assert not isinstance(it, list)
    got = list(it)
    assert got == list(entries(1000))
    assert got[5].first_seen == T0
    assert store.live_generation("feedA") == gen
    assert store.feeds() == ["feedA"]


def test_ingest_spans_several_batches(db: Path) -> None:
    s = SqliteStore(db, batch_size=7)
    for n in (0, 7, 20):
        gen = s.add_generation(f"f{n}", entries(n), status=GenerationStatus.LIVE)
        assert gen.entry_count == n
        assert sum(1 for _ in s.generation_entries(gen.id)) == n
    s.close()


def test_live_supersedes_and_bumps_policy(store: SqliteStore) -> None:
    v0 = store.policy_version()
    g1 = store.add_generation("feedA", entries(3), status=GenerationStatus.LIVE)
    assert store.policy_version() == v0 + 1
    g2 = store.add_generation("feedA", entries(2), status=GenerationStatus.LIVE)
    assert store.policy_version() == v0 + 2
    assert store.live_generation("feedA") == g2
    assert store.get_generation(g1.id).status is GenerationStatus.SUPERSEDED
    # Other feeds are independent.
    store.add_generation("feedB", entries(1), status=GenerationStatus.LIVE)
    assert store.live_generation("feedA") == g2


def test_held_generation_promote_and_discard(store: SqliteStore) -> None:
    live = store.add_generation("feedA", entries(10), status=GenerationStatus.LIVE)
    v = store.policy_version()
    h1 = store.add_generation(
        "feedA", entries(1), status=GenerationStatus.HELD, hold_reason="90% removed"
    )
    assert store.policy_version() == v  # held changes nothing enforced
    assert store.held_generation("feedA") == h1
    assert h1.hold_reason == "90% removed"
    h2 = store.add_generation("feedA", entries(2), status=GenerationStatus.HELD)
    assert store.get_generation(h1.id).status is GenerationStatus.DISCARDED
    assert store.live_generation("feedA") == live

    promoted = store.promote_generation(h2.id)
    assert promoted.status is GenerationStatus.LIVE
    assert store.policy_version() == v + 1
    assert store.get_generation(live.id).status is GenerationStatus.SUPERSEDED
    assert store.held_generation("feedA") is None

    with pytest.raises(InvalidTransition):
        store.promote_generation(live.id)  # superseded, not held
    with pytest.raises(InvalidTransition):
        store.discard_generation(h2.id)  # live: the last good snapshot stays
    h3 = store.add_generation("feedA", entries(1), status=GenerationStatus.HELD)
    assert store.discard_generation(h3.id).status is GenerationStatus.DISCARDED
    assert store.discard_generation(h3.id).status is GenerationStatus.DISCARDED


def test_new_live_discards_stale_held(store: SqliteStore) -> None:
    store.add_generation("feedA", entries(10), status=GenerationStatus.LIVE)
    held = store.add_generation("feedA", entries(1), status=GenerationStatus.HELD)
    store.add_generation("feedA", entries(11), status=GenerationStatus.LIVE)
    assert store.held_generation("feedA") is None
    assert store.get_generation(held.id).status is GenerationStatus.DISCARDED


def test_add_generation_refuses_other_statuses(store: SqliteStore) -> None:
    with pytest.raises(StoreError):
        store.add_generation("feedA", entries(1), status=GenerationStatus.SUPERSEDED)


def test_failed_ingest_leaves_nothing_visible(store: SqliteStore, db: Path) -> None:
    live = store.add_generation("feedA", entries(5), status=GenerationStatus.LIVE)
    v = store.policy_version()

    def broken() -> Iterator[Entry]:
        yield from entries(3)
        raise ValueError("parse error at line 4")

    with pytest.raises(ValueError, match="line 4"):
        store.add_generation("feedA", broken(), status=GenerationStatus.LIVE)
    assert store.live_generation("feedA") == live
    assert store.policy_version() == v
    assert [g.id for g in store.generations("feedA")] == [live.id]
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT count(*) FROM generation_entries").fetchone()[0] == 5
    assert raw.execute("SELECT count(*) FROM generations").fetchone()[0] == 1
    raw.close()


def test_unknown_generation(store: SqliteStore) -> None:
    with pytest.raises(NotFound):
        store.generation_entries(999)
    with pytest.raises(NotFound):
        store.promote_generation(999)
    assert store.live_generation("nope") is None


def test_prune_keeps_live_held_and_newest(store: SqliteStore, db: Path) -> None:
    gens = [
        store.add_generation("feedA", entries(4, prefix=f"g{i}-"), status=GenerationStatus.LIVE)
        for i in range(5)
    ]
    held = store.add_generation("feedA", entries(1), status=GenerationStatus.HELD)
    other = store.add_generation("feedB", entries(2), status=GenerationStatus.LIVE)
    assert store.prune_generations("feedA", keep=1) == 3  # gens 0..2 go, 3 is kept
    remaining = {g.id for g in store.generations("feedA")}
    assert remaining == {gens[3].id, gens[4].id, held.id}
    assert store.prune_generations("feedA", keep=0) == 1
    assert store.live_generation("feedA") == gens[4]
    assert len(list(store.generation_entries(gens[4].id))) == 4
    assert len(list(store.generation_entries(other.id))) == 2
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT count(*) FROM generation_entries").fetchone()[0] == 4 + 1 + 2
    raw.close()


def test_prune_removes_stale_loading(db: Path) -> None:
    clock = [T0]
    s = SqliteStore(db, clock=lambda: clock[0])
    raw = sqlite3.connect(db)
    raw.execute(
        "INSERT INTO generations (feed, status, created_at, status_changed_at) "
        "VALUES ('feedA', '_loading', 0, 0)"
    )
    raw.commit()
    raw.close()
    assert s.generations("feedA") == []
    assert s.prune_generations("feedA", keep=5) == 1
    s.close()


# --- decisions and policy_version -------------------------------------------------------


def test_add_and_get_decision(store: SqliteStore) -> None:
    v = store.policy_version()
    d = store.add_decision(new_decision())
    assert isinstance(d.id, int)
    assert d.status is DecisionStatus.ACTIVE
    assert d.indicator == Indicator(Scope.HOST, "bad.example.com")
    assert d.notice_received_at == T0
    assert d.expires_at == T0 + timedelta(days=30)
    assert [e.status for e in d.history] == [DecisionStatus.ACTIVE]
    assert store.get_decision(d.id) == d
    assert store.policy_version() == v + 1


def test_duplicate_open_decision_conflicts(store: SqliteStore) -> None:
    d = store.add_decision(new_decision())
    with pytest.raises(Conflict) as info:
        store.add_decision(new_decision())
    msg = str(info.value)
    assert "bad.example.com" not in msg  # never the entry in plain text
    assert d.indicator.ref in msg
    # Pending counts as open too.
    store.add_decision(new_decision("p.example.com", status=DecisionStatus.PENDING_APPROVAL))
    with pytest.raises(Conflict):
        store.add_decision(new_decision("p.example.com"))
    # A different action on the same indicator is a different decision.
    store.add_decision(new_decision(action=Action.ALLOW))
    # Once revoked, the indicator can be decided again.
    store.set_decision_status(d.id, DecisionStatus.REVOKED, actor="bob", reason="legal")
    again = store.add_decision(new_decision())
    assert again.id != d.id


def test_add_decision_refuses_closed_status(store: SqliteStore) -> None:
    with pytest.raises(InvalidTransition):
        store.add_decision(new_decision(status=DecisionStatus.REVOKED))


def test_status_history_and_policy_bumps(store: SqliteStore) -> None:
    v = store.policy_version()
    d = store.add_decision(new_decision(status=DecisionStatus.PENDING_APPROVAL))
    assert store.policy_version() == v  # pending changes nothing enforced
    d = store.set_decision_status(
        d.id, DecisionStatus.ACTIVE, actor="bob", reason="approved", approved_by="bob"
    )
    assert d.approved_by == "bob"
    assert store.policy_version() == v + 1
    d = store.set_decision_status(d.id, DecisionStatus.REVOKED, actor="carol", reason="legal")
    assert store.policy_version() == v + 2
    assert [(e.actor, e.status) for e in d.history] == [
        ("alice", DecisionStatus.PENDING_APPROVAL),
        ("bob", DecisionStatus.ACTIVE),
        ("carol", DecisionStatus.REVOKED),
    ]
    with pytest.raises(InvalidTransition) as info:
        store.set_decision_status(d.id, DecisionStatus.ACTIVE, actor="x", reason="y")
    assert info.value.allowed == ()
    with pytest.raises(NotFound):
        store.set_decision_status(999, DecisionStatus.REVOKED, actor="x", reason="y")
    # A refused transition changes nothing.
    assert store.get_decision(d.id).history == d.history
    rejected = store.add_decision(new_decision("r.example", status=DecisionStatus.PENDING_APPROVAL))
    store.set_decision_status(rejected.id, DecisionStatus.REJECTED, actor="bob", reason="no")
    assert store.policy_version() == v + 2


def test_list_decisions_filters(store: SqliteStore) -> None:
    a = store.add_decision(new_decision("a.example", reference="case-1"))
    b = store.add_decision(
        new_decision("b.example", reference="case-2", source=NoticeSource.LAW_ENFORCEMENT)
    )
    c = store.add_decision(new_decision("c.example", status=DecisionStatus.PENDING_APPROVAL))
    assert [d.id for d in store.list_decisions()] == [a.id, b.id, c.id]
    assert [d.id for d in store.list_decisions(status=DecisionStatus.ACTIVE)] == [a.id, b.id]
    assert [d.id for d in store.list_decisions(source=NoticeSource.LAW_ENFORCEMENT)] == [b.id]
    assert [d.id for d in store.list_decisions(reference="case-1")] == [a.id, c.id]
    assert [d.id for d in store.list_decisions(scope="host", limit=1, offset=1)] == [b.id]
    assert store.list_decisions(scope="domain") == []
    assert [d.id for d in store.active_decisions()] == [a.id, b.id]
    assert all(d.history for d in store.active_decisions())


def test_count_decisions(store: SqliteStore) -> None:
    store.add_decision(new_decision("a.example"))
    store.add_decision(new_decision("b.example", status=DecisionStatus.PENDING_APPROVAL))
    store.add_decision(new_decision("c.example", status=DecisionStatus.PENDING_APPROVAL))
    assert store.count_decisions() == 3
    assert store.count_decisions(status=DecisionStatus.PENDING_APPROVAL) == 2
    assert store.count_decisions(status=DecisionStatus.REVOKED) == 0


def test_search_decisions_by_target(store: SqliteStore) -> None:
    def url(value: str) -> NewDecision:
        return replace(new_decision(), indicator=Indicator(Scope.URL, value))

    on_host = store.add_decision(url("http://shop_1.example/a.html"))
    with_port = store.add_decision(url("https://shop_1.example:8443/b.html"))
    store.add_decision(url("http://shop_1.example.other/c.html"))  # another host
    store.add_decision(url("http://shopx1.example/d.html"))  # "_" is no wildcard
    name = store.add_decision(new_decision("shop_1.example"))
    found = store.list_decisions(target=TargetSearch(("shop_1.example",), "shop_1.example"))
    assert [d.id for d in found] == [on_host.id, with_port.id, name.id]
    exact = store.list_decisions(target=TargetSearch(("http://shop_1.example/a.html",)))
    assert [d.id for d in exact] == [on_host.id]
    assert store.list_decisions(target=TargetSearch(())) == []


def test_add_decisions_is_one_transaction_with_conflicts_in_place(store: SqliteStore) -> None:
    existing = store.add_decision(new_decision("old.example"))
    before = store.policy_version()
    batch = [
        (new_decision("n1.example"), AuditNote("decision.create", {"n": 1})),
        (new_decision("old.example"), AuditNote("decision.create", {"n": 2})),
        (new_decision("n1.example"), None),  # twice in one batch
        (new_decision("n2.example", status=DecisionStatus.PENDING_APPROVAL), None),
    ]
    out = store.add_decisions(batch)
    assert [type(o).__name__ for o in out] == ["Decision", "Conflict", "Conflict", "Decision"]
    assert f"decision {existing.id}" in str(out[1])
    assert store.count_decisions() == 3
    assert store.policy_version() == before + 1  # the one active decision
    assert [r.detail for r in store.audit_since()] == [{"n": 1}]  # only what was stored
    assert store.verify_audit().ok


def test_failed_batch_stores_nothing(store: SqliteStore) -> None:
    bad = replace(new_decision("n3.example"), notice_received_at=datetime(2026, 1, 1))  # naive
    with pytest.raises(StoreError):
        store.add_decisions([(new_decision("n1.example"), None), (bad, None)])
    assert store.count_decisions() == 0
    store.add_decision(new_decision("n1.example"))  # the store still works
    assert store.count_decisions() == 1


def test_expire_due_decisions(db: Path) -> None:
    clock = [T0]
    s = SqliteStore(db, clock=lambda: clock[0])
    d = s.add_decision(new_decision())  # expires T0 + 30 days
    v = s.policy_version()
    assert s.expire_due_decisions() == []
    clock[0] = T0 + timedelta(days=31)
    expired = s.expire_due_decisions()
    assert [x.id for x in expired] == [d.id]
    assert expired[0].status is DecisionStatus.EXPIRED
    assert expired[0].history[-1].actor == "system"
    assert s.policy_version() == v + 1
    s.close()


def test_decisions_survive_reopen(db: Path) -> None:
    s = SqliteStore(db)
    d = s.add_decision(new_decision())
    v = s.policy_version()
    s.close()
    s2 = SqliteStore(db)
    assert s2.get_decision(d.id) == d
    assert s2.policy_version() == v
    s2.close()


def test_concurrent_writers(store: SqliteStore) -> None:
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(250):
                d = store.add_decision(new_decision(f"t{t}-{i}.example", reference=f"c{t}"))
                store.append_audit("alice", "decision.create", f"decision:{d.id}", {"t": t})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    all_decisions = store.list_decisions(limit=10_000)
    assert len(all_decisions) == 2000
    assert len({d.id for d in all_decisions}) == 2000
    assert len({d.indicator for d in all_decisions}) == 2000
    assert store.policy_version() == 2000
    result = store.verify_audit()
    assert result.ok
    assert result.rows == 2000


def test_concurrent_duplicates_only_one_wins(store: SqliteStore) -> None:
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        try:
            store.add_decision(new_decision("race.example"))
            result = "ok"
        except Conflict:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]


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


def test_tokens_store_hash_only(store: SqliteStore, db: Path) -> None:
    secret = b"s3cret-token-value"
    digest = hashlib.sha256(secret).digest()
    t = store.add_token("noc", "reader", digest)
    assert t.name == "noc"
    assert not t.revoked
    assert store.token_by_hash(digest) == t
    assert store.token_by_hash(hashlib.sha256(b"other").digest()) is None
    with pytest.raises(Conflict):
        store.add_token("noc", "reader", hashlib.sha256(b"x").digest())
    with pytest.raises(StoreError):
        store.add_token("bad", "reader", b"short")
    revoked = store.revoke_token(t.id)
    assert revoked.revoked
    token = store.token_by_hash(digest)
    assert token is not None
    assert token.revoked
    assert [x.id for x in store.list_tokens()] == [t.id]
    # The name is free again once revoked.
    store.add_token("noc", "reader", hashlib.sha256(b"new").digest())
    with pytest.raises(NotFound):
        store.revoke_token(999)
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


def test_open_stream_does_not_block_writers(store: SqliteStore) -> None:
    gen = store.add_generation("feedA", entries(100), status=GenerationStatus.LIVE)
    stream = store.generation_entries(gen.id)
    first = next(stream)
    # While the stream is open on its snapshot, writes go ahead, and the stream is unaffected.
    store.add_decision(new_decision())
    newer = store.add_generation("feedA", entries(3), status=GenerationStatus.LIVE)
    assert store.prune_generations("feedA", keep=5) == 0
    assert [first, *stream] == list(entries(100))
    assert store.live_generation("feedA") == newer
