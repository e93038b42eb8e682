"""Sync engine without a network: local files, hashed lists, approve/discard, schedule."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edgeagent.errors import NotFound
from edgeagent.feeds.base import FeedFormat, FeedKind, FeedSpec, SyncOutcome
from edgeagent.feeds.sync import (
    StatusBoard,
    approve_held,
    discard_held,
    schedule_feeds,
    status_dict,
    sync_feed,
)
from edgeagent.guard import Guard, ProtectedNames, PublicSuffixes
from edgeagent.model import Scope
from edgeagent.periodic import PeriodicJobs
from edgeagent.store import SqliteStore
from edgeagent.store.base import GenerationStatus, Store

SAMPLES = Path(__file__).resolve().parents[2] / "blocklists" / "samples"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = SqliteStore(tmp_path / "store.db")
    yield s  # type: ignore[misc]
    s.close()


def _local(path: Path, **kw: object) -> FeedSpec:
    return FeedSpec(name="court", kind=FeedKind.LOCAL_FILE, path=path, **kw)  # type: ignore[arg-type]


def _write(path: Path, names: list[str], serial: int) -> None:
    path.write_text(f"# serial: {serial}\n" + "".join(f"{n}\n" for n in names))


async def test_local_file_live_then_unchanged(tmp_path: Path, store: Store, guard: Guard) -> None:
    f = tmp_path / "orders.txt"
    _write(f, [f"order-{i}.example" for i in range(10)], 1)
    board = StatusBoard()
    res = await sync_feed(_local(f), store, guard, board=board)
    assert res.outcome is SyncOutcome.LIVE, res.reason
    assert res.entries == 10
    again = await sync_feed(_local(f), store, guard, board=board)
    assert again.outcome is SyncOutcome.UNCHANGED
    st = board.get("court")
    assert st.entries == 10
    assert st.last_success is not None
    d = status_dict(st)
    assert d["last_outcome"] == "unchanged"
    assert d["age"] is not None


async def test_bundled_samples_sync(store: Store, guard: Guard) -> None:
    specs = [
        FeedSpec(name="police", kind=FeedKind.LOCAL_FILE, path=SAMPLES / "police-domains.txt"),
        FeedSpec(
            name="hotline",
            kind=FeedKind.LOCAL_FILE,
            content=FeedKind.URL_LIST,
            format=FeedFormat.CSV,
            path=SAMPLES / "hotline-urls.csv",
        ),
    ]
    police = await sync_feed(specs[0], store, guard, board=StatusBoard())
    assert police.outcome is SyncOutcome.LIVE, police.reason
    assert police.entries == 6
    assert police.rejects["directive"] == 2
    hotline = await sync_feed(specs[1], store, guard, board=StatusBoard())
    assert hotline.outcome is SyncOutcome.LIVE, hotline.reason
    assert hotline.entries == 5
    live = store.live_generation("hotline")
    assert live is not None
    scopes = sorted(e.indicator.scope for e in store.generation_entries(live.id))
    assert scopes.count(Scope.URL_PREFIX) == 2


async def test_held_then_approved_and_audited(tmp_path: Path, store: Store, guard: Guard) -> None:
    f = tmp_path / "orders.txt"
    _write(f, [f"order-{i}.example" for i in range(100)], 1)
    first = await sync_feed(_local(f), store, guard, board=StatusBoard())
    assert first.outcome is SyncOutcome.LIVE
    _write(f, [f"order-{i}.example" for i in range(5)], 2)
    held = await sync_feed(_local(f), store, guard, board=StatusBoard())
    assert held.outcome is SyncOutcome.HELD
    assert "shrink" in held.reason
    with pytest.raises(NotFound):
        approve_held(store, "court", actor="sup", generation_id=(held.generation_id or 0) + 99)
    gen = approve_held(store, "court", actor="sup", reason="list was cut by the hotline")
    assert gen.status is GenerationStatus.LIVE
    assert gen.entry_count == 5
    audit = store.audit_since()
    assert audit[-1].action == "feed.approve"
    assert audit[-1].subject == "feed:court"
    assert store.held_generation("court") is None


async def test_held_then_discarded(tmp_path: Path, store: Store, guard: Guard) -> None:
    f = tmp_path / "orders.txt"
    _write(f, [f"order-{i}.example" for i in range(100)], 1)
    first = await sync_feed(_local(f), store, guard, board=StatusBoard())
    _write(f, ["protected.example", *[f"order-{i}.example" for i in range(100)]], 2)
    held = await sync_feed(_local(f), store, guard, board=StatusBoard())
    assert held.outcome is SyncOutcome.HELD
    assert "second person" in held.reason
    discard_held(store, "court", actor="sup", reason="protected name")
    live = store.live_generation("court")
    assert live is not None
    assert live.id == first.generation_id
    assert store.audit_since()[-1].action == "feed.discard"
    with pytest.raises(NotFound):
        discard_held(store, "court", actor="sup")


async def test_public_suffix_entries_refused_and_held(
    tmp_path: Path, store: Store, guard: Guard
) -> None:
    f = tmp_path / "orders.txt"
    _write(f, ["com", "order-1.example"], 1)
    res = await sync_feed(_local(f), store, guard, board=StatusBoard())
    assert res.outcome is SyncOutcome.HELD
    assert res.refused == {"public suffix": 1}
    assert res.entries == 1


async def test_reserved_names_dropped_and_counted(tmp_path: Path, store: Store) -> None:
    guard = Guard(
        PublicSuffixes.load(),
        ProtectedNames(["protected.example"], reserved=["canary.agent.test", "block.rpz.invalid"]),
    )
    f = tmp_path / "orders.txt"
    _write(f, ["canary.agent.test", "x.block.rpz.invalid", "agent.test", "order-1.example"], 1)
    res = await sync_feed(_local(f), store, guard, board=StatusBoard())
    assert res.refused == {"reserved name": 2, "covers a reserved name": 1}
    assert res.entries == 1
    assert res.outcome is SyncOutcome.HELD  # a person looks at a feed listing our own names
    held = store.held_generation("court")
    assert held is not None
    assert [e.indicator.value for e in store.generation_entries(held.id)] == ["order-1.example"]


async def test_local_signature_and_digest(tmp_path: Path, store: Store, guard: Guard) -> None:
    f = tmp_path / "orders.txt"
    _write(f, ["order-1.example"], 1)
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "orders.txt.sig").write_bytes(key.sign(f.read_bytes()))
    digest = tmp_path / "orders.txt.sha256"
    digest.write_text(hashlib.sha256(f.read_bytes()).hexdigest() + "  orders.txt\n")
    spec = _local(f, public_key=pem, digest_url=str(digest))
    ok = await sync_feed(spec, store, guard, board=StatusBoard())
    assert ok.outcome is SyncOutcome.LIVE, ok.reason
    _write(f, ["order-1.example", "order-2.example"], 2)  # signature now stale
    bad = await sync_feed(spec, store, guard, board=StatusBoard())
    assert bad.outcome is SyncOutcome.FAILED
    assert "digest mismatch" in bad.reason


async def test_hashed_list_refuses_protected_root(
    tmp_path: Path, store: Store, guard: Guard
) -> None:
    spec = FeedSpec(
        name="hashed",
        kind=FeedKind.LOCAL_FILE,
        content=FeedKind.HASHED_URL_LIST,
        path=SAMPLES / "hashed-urls.txt",
    )
    res = await sync_feed(spec, store, guard, board=StatusBoard())
    if getattr(Scope, "URL_HASH", None) is None:
        # Until the model has a hash scope the feed fails cleanly, naming why.
        assert res.outcome is SyncOutcome.FAILED
        assert "URL_HASH" in res.reason
    else:
        assert res.outcome is SyncOutcome.LIVE
        assert res.rejects["protected-host-root"] == 1


async def test_missing_file_fails_cleanly(tmp_path: Path, store: Store, guard: Guard) -> None:
    res = await sync_feed(_local(tmp_path / "absent.txt"), store, guard, board=StatusBoard())
    assert res.outcome is SyncOutcome.FAILED
    assert "cannot read" in res.reason
    assert res.status is not None
    assert res.status.consecutive_failures == 1


async def test_schedule_one_failure_does_not_stop_others(tmp_path: Path) -> None:
    ran: list[str] = []

    async def run_sync(spec: FeedSpec) -> None:
        ran.append(spec.name)
        if spec.name == "bad":
            raise RuntimeError("boom")

    specs = [
        FeedSpec(name="bad", kind=FeedKind.DOMAIN_LIST, interval=0.2, jitter=0),
        FeedSpec(name="good", kind=FeedKind.DOMAIN_LIST, interval=0.2, jitter=0),
        FeedSpec(name="cron", kind=FeedKind.DOMAIN_LIST, cron="*/5 * * * *", jitter=30),
        FeedSpec(name="off", kind=FeedKind.DOMAIN_LIST, enabled=False),
    ]
    jobs = PeriodicJobs()
    ids = schedule_feeds(jobs, specs, run_sync)
    assert ids == ["feed:bad", "feed:good", "feed:cron"]
    assert jobs.job_ids() == sorted(ids)
    try:
        await asyncio.sleep(0.7)
    finally:
        await jobs.close()
    assert ran.count("bad") >= 2
    assert ran.count("good") >= 2
