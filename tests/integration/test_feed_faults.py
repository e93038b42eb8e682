"""Feed faults against a real local feed server: the last good generation always stays live.

Each test first makes a good generation live, then makes the server misbehave and checks
that the sync fails (or is held) naming the cause, while the live generation is unchanged.
"""

from __future__ import annotations

import gzip
import hashlib
import resource
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edgeagent.feeds.base import FeedKind, FeedSpec, SyncOutcome, SyncResult
from edgeagent.feeds.sync import StatusBoard, sync_feed
from edgeagent.guard import Guard
from edgeagent.store import SqliteStore
from edgeagent.store.base import Store
from tests.support.feedserver import FeedServer, Route, gzip_bomb

pytestmark = pytest.mark.integration

GOOD_COUNT = 200


def domains(n: int, serial: int = 10, prefix: str = "listed") -> bytes:
    lines = [f"# serial: {serial}"] + [f"{prefix}-{i}.example" for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Env:
    server: FeedServer
    store: Store
    guard: Guard
    spec: FeedSpec
    board: StatusBoard
    live_id: int

    async def sync(self, spec: FeedSpec | None = None) -> SyncResult:
        return await sync_feed(spec or self.spec, self.store, self.guard, board=self.board)

    def assert_live_kept(self) -> None:
        live = self.store.live_generation(self.spec.name)
        assert live is not None
        assert live.id == self.live_id
        assert live.entry_count == GOOD_COUNT


@pytest.fixture
async def env(tmp_path: Path, guard: Guard) -> AsyncIterator[Env]:
    server = FeedServer()
    await server.start()
    store = SqliteStore(tmp_path / "store.db")
    spec = FeedSpec(
        name="police",
        kind=FeedKind.DOMAIN_LIST,
        url=server.url("/list.txt"),
        retries=2,
        backoff_base=0.01,
        backoff_max=0.02,
        deadline=5.0,
        connect_timeout=1.0,
        read_timeout=2.0,
        max_decompressed_bytes=64 * 1024 * 1024,
    )
    server.set("/list.txt", Route(domains(GOOD_COUNT)))
    board = StatusBoard()
    first = await sync_feed(spec, store, guard, board=board)
    assert first.outcome is SyncOutcome.LIVE, first.reason
    assert first.entries == GOOD_COUNT
    assert first.generation_id is not None
    try:
        yield Env(server, store, guard, spec, board, first.generation_id)
    finally:
        store.close()
        await server.stop()


async def test_server_down(env: Env) -> None:
    await env.server.stop()
    res = await env.sync()
    assert res.outcome is SyncOutcome.FAILED
    assert "gave up after 3 attempt(s)" in res.reason
    env.assert_live_kept()
    assert res.status is not None
    assert res.status.consecutive_failures == 1
    assert res.status.entries == GOOD_COUNT


async def test_5xx_is_retried_then_fails(env: Env) -> None:
    env.server.set("/list.txt", Route(status=503))
    env.server.hits.clear()
    res = await env.sync()
    assert res.outcome is SyncOutcome.FAILED
    assert "HTTP 503" in res.reason
    assert env.server.hits["/list.txt"] == 3
    env.assert_live_kept()


async def test_404_fails_without_retry(env: Env) -> None:
    env.server.routes.pop("/list.txt")
    env.server.hits.clear()
    res = await env.sync()
    assert res.outcome is SyncOutcome.FAILED
    assert "HTTP 404" in res.reason
    assert env.server.hits["/list.txt"] == 1
    env.assert_live_kept()


async def test_html_error_page_with_200(env: Env) -> None:
    page = b"<!DOCTYPE html><html><body>Please log in</body></html>"
    env.server.set("/list.txt", Route(page, content_type="text/plain"))
    res = await env.sync()
    assert res.outcome is SyncOutcome.FAILED
    assert "HTML" in res.reason
    env.assert_live_kept()


async def test_slow_drip_stopped_by_min_rate(env: Env) -> None:
    env.server.set("/list.txt", Route(domains(GOOD_COUNT, 11), drip_interval=0.2))
    spec = replace(env.spec, min_rate=50.0, min_rate_grace=0.5, read_timeout=1.0)
    t0 = time.monotonic()
    res = await env.sync(spec)
    assert res.outcome is SyncOutcome.FAILED
    assert "slower than 50 bytes/s" in res.reason
    assert time.monotonic() - t0 < 2.0
    env.assert_live_kept()


async def test_slow_drip_stopped_by_deadline(env: Env) -> None:
    # Every read completes well inside read_timeout: only the total deadline can stop it.
    env.server.set("/list.txt", Route(domains(GOOD_COUNT, 11), drip_interval=0.2))
    spec = replace(env.spec, deadline=1.5, read_timeout=1.0, min_rate=0.0)
    t0 = time.monotonic()
    res = await env.sync(spec)
    assert res.outcome is SyncOutcome.FAILED
    assert "deadline of 1.5 s exceeded" in res.reason
    assert time.monotonic() - t0 < 2.5
    env.assert_live_kept()


async def test_truncated_gzip(env: Env) -> None:
    whole = gzip.compress(domains(GOOD_COUNT, 11))
    # Content-Length says the truncated length: the stream ends cleanly but the gzip
    # trailer is missing.
    env.server.set("/list.txt", Route(whole[: len(whole) // 2], content_type="application/gzip"))
    res = await env.sync()
    assert res.outcome is SyncOutcome.FAILED
    assert "truncated gzip" in res.reason
    env.assert_live_kept()


async def test_connection_dropped_mid_body(env: Env) -> None:
    env.server.set("/list.txt", Route(domains(5000, 11), truncate=1000))
    res = await env.sync()
    assert res.outcome is SyncOutcome.FAILED
    assert "mid-body" in res.reason or "gave up" in res.reason
    env.assert_live_kept()


async def test_gzip_bomb_stopped_at_cap_with_bounded_memory(env: Env) -> None:
    bomb = gzip_bomb()  # ~1 MB that inflates to 1 GiB
    assert len(bomb) < 2 * 1024 * 1024
    env.server.set("/list.txt", Route(bomb, content_type="application/gzip"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    res = await env.sync()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert res.outcome is SyncOutcome.FAILED
    assert "after decompression" in res.reason
    # cap is 64 MiB; the body buffer may double once while growing: well under 1 GiB
    assert (after - before) < 200 * 1024
    env.assert_live_kept()


async def test_gzip_bomb_as_content_encoding(env: Env) -> None:
    bomb = gzip_bomb(total=256 << 20)
    env.server.set(
        "/list.txt", Route(bomb, headers={"Content-Encoding": "gzip"}, content_type="text/plain")
    )
    res = await env.sync()
    assert res.outcome is SyncOutcome.FAILED
    assert "after decompression" in res.reason
    env.assert_live_kept()


async def test_empty_list_is_held(env: Env) -> None:
    env.server.set("/list.txt", Route(b"# serial: 11\n"))
    res = await env.sync()
    assert res.outcome is SyncOutcome.HELD
    assert "empty list" in res.reason
    env.assert_live_kept()
    held = env.store.held_generation(env.spec.name)
    assert held is not None
    assert held.id == res.generation_id
    assert res.status is not None
    assert res.status.held_generation == held.id


async def test_shrink_of_90_percent_is_held(env: Env) -> None:
    env.server.set("/list.txt", Route(domains(GOOD_COUNT // 10, 11)))
    res = await env.sync()
    assert res.outcome is SyncOutcome.HELD
    assert "shrink" in res.reason
    assert res.removed == GOOD_COUNT - GOOD_COUNT // 10
    env.assert_live_kept()


async def test_growth_of_10x_is_held(env: Env) -> None:
    env.server.set("/list.txt", Route(domains(GOOD_COUNT * 10, 11)))
    res = await env.sync()
    assert res.outcome is SyncOutcome.HELD
    assert "growth" in res.reason
    env.assert_live_kept()


async def test_rolled_back_serial_is_refused(env: Env) -> None:
    env.server.set("/list.txt", Route(domains(GOOD_COUNT + 5, serial=9)))
    res = await env.sync()
    assert res.outcome is SyncOutcome.FAILED
    assert "rollback" in res.reason
    env.assert_live_kept()


async def test_wrong_digest_is_refused(env: Env) -> None:
    body = domains(GOOD_COUNT + 5, 11)
    env.server.set("/list.txt", Route(body))
    wrong = hashlib.sha256(body + b"x").hexdigest()
    env.server.set("/list.txt.sha256", Route(f"{wrong}  list.txt\n".encode()))
    spec = replace(env.spec, digest_url=env.server.url("/list.txt.sha256"))
    res = await env.sync(spec)
    assert res.outcome is SyncOutcome.FAILED
    assert "digest mismatch" in res.reason
    env.assert_live_kept()
    # and the right digest is accepted
    right = hashlib.sha256(body).hexdigest()
    env.server.set("/list.txt.sha256", Route(f"{right}  list.txt\n".encode()))
    ok = await env.sync(spec)
    assert ok.outcome is SyncOutcome.LIVE, ok.reason


async def test_wrong_signature_is_refused(env: Env) -> None:
    body = domains(GOOD_COUNT + 5, 11)
    key = Ed25519PrivateKey.generate()
    other = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    env.server.set("/list.txt", Route(body))
    env.server.set("/list.txt.sig", Route(other.sign(body)))
    spec = replace(env.spec, signature_url=env.server.url("/list.txt.sig"), public_key=public)
    res = await env.sync(spec)
    assert res.outcome is SyncOutcome.FAILED
    assert "signature does not verify" in res.reason
    env.assert_live_kept()
    env.server.set("/list.txt.sig", Route(key.sign(body)))
    ok = await env.sync(spec)
    assert ok.outcome is SyncOutcome.LIVE, ok.reason


async def test_injection_lines_rejected_rest_kept(env: Env) -> None:
    good = domains(GOOD_COUNT, 11).decode()
    evil = "$INCLUDE /etc/passwd\nlisted-x.example\rinjected.example\n*.test\n*\nextra.example\n"
    env.server.set("/list.txt", Route((good + evil).encode()))
    res = await env.sync()
    assert res.outcome is SyncOutcome.LIVE, res.reason
    assert dict(res.rejects) == {"directive": 1, "control-character": 1, "wildcard": 2}
    assert len(res.reject_samples) == 4
    assert all(len(s) == 12 for s in res.reject_samples)  # short hashes, never text
    assert res.entries == GOOD_COUNT + 1
    live = env.store.live_generation(env.spec.name)
    assert live is not None
    assert live.id == res.generation_id
    values = {e.indicator.value for e in env.store.generation_entries(live.id)}
    assert "extra.example" in values
    assert not any("injected" in v or "*" in v or "include" in v for v in values)


async def test_not_modified_keeps_generation(env: Env) -> None:
    env.server.set("/list.txt", Route(domains(GOOD_COUNT + 1, 11), etag='"v2"'))
    res = await env.sync()
    assert res.outcome is SyncOutcome.LIVE
    again = await env.sync()
    assert again.outcome is SyncOutcome.UNCHANGED
    assert "304" in again.reason
    assert again.generation_id == res.generation_id
