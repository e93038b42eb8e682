"""RPZ feed against a real ``named`` on loopback: AXFR, IXFR after an update, TSIG.

named serves ``blocklists/samples/upstream.rpz`` as a dynamic primary zone; the test
changes it with a TSIG-signed RFC 2136 UPDATE so that named keeps a journal and answers
the next sync with an incremental transfer.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest

from edgeagent.feeds.base import FeedKind, FeedSpec, SyncOutcome, TsigKey
from edgeagent.feeds.sync import StatusBoard, sync_feed
from edgeagent.guard import Guard
from edgeagent.model import Action, Scope
from edgeagent.store import SqliteStore
from edgeagent.store.base import Store
from tests.support.binaries import require_binary
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "blocklists" / "samples" / "upstream.rpz"
ZONE = "rpz.example."
KEY = "feed-key."


@dataclass
class Named:
    port: int
    secret: str
    proc: subprocess.Popen[bytes]
    log: Path

    def update(self, add: list[tuple[str, str, str]], delete: list[str]) -> None:
        keyring = {dns.name.from_text(KEY): dns.tsig.Key(KEY, self.secret, "hmac-sha256")}
        upd = dns.update.UpdateMessage(ZONE, keyring=keyring, keyalgorithm="hmac-sha256")
        for owner, rdtype, rdata in add:
            upd.add(owner, 300, rdtype, rdata)
        for owner in delete:
            upd.delete(owner)
        resp = dns.query.tcp(upd, "127.0.0.1", port=self.port, timeout=5)
        assert resp.rcode() == dns.rcode.NOERROR


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    q = dns.message.make_query(ZONE, "SOA")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"named exited: {log.read_text()[-2000:]}")
        try:
            r = dns.query.tcp(q, "127.0.0.1", port=port, timeout=0.5)
            if r.rcode() == dns.rcode.NOERROR and r.answer:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"named did not start: {log.read_text()[-2000:]}")


@pytest.fixture
def named(tmp_path: Path) -> Iterator[Named]:
    binary = require_binary("named")
    port = free_port()
    secret = base64.b64encode(os.urandom(32)).decode()
    work = tmp_path / "named"
    work.mkdir()
    shutil.copy(SAMPLE, work / "upstream.rpz")
    conf = work / "named.conf"
    conf.write_text(
        f"""
key "{KEY}" {{ algorithm hmac-sha256; secret "{secret}"; }};
options {{
    directory "{work}";
    pid-file "{work}/named.pid";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    // Else it fetches the root's trust anchor from the internet's root servers at start.
    dnssec-validation no;
    notify no;
    allow-query {{ 127.0.0.1; }};
    allow-transfer {{ none; }};
    session-keyfile "{work}/session.key";
}};
controls {{ }};
zone "{ZONE}" {{
    type primary;
    file "{work}/upstream.rpz";
    allow-update {{ key "{KEY}"; }};
    allow-transfer {{ key "{KEY}"; }};
    ixfr-from-differences yes;
}};
"""
    )
    log = work / "named.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [binary, "-g", "-c", str(conf), "-n", "1"], stdout=fh, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(port, proc, log)
        yield Named(port, secret, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = SqliteStore(tmp_path / "store.db")
    try:
        yield s
    finally:
        s.close()


def _expected() -> tuple[set[tuple[Scope, str, Action]], dict[str, int]]:
    entries: set[tuple[Scope, str, Action]] = set()
    rejects: dict[str, int] = {}
    for line in SAMPLE.read_text().splitlines():
        m = re.search(r";\s*=>\s*(.+?)\s*$", line)
        if not m or line.startswith(";"):
            continue
        owner, result = line.split()[0], m.group(1)
        if result.startswith("rejected: "):
            reason = result.removeprefix("rejected: ")
            rejects[reason] = rejects.get(reason, 0) + 1
        elif result.startswith("allow: "):
            entries.add((Scope(result.removeprefix("allow: ")), owner, Action.ALLOW))
        elif not result.startswith("("):
            entries.add((Scope(result), owner, Action.BLOCK))
    return entries, rejects


def _spec(named: Named, secret: str | None = None) -> FeedSpec:
    return FeedSpec(
        name="upstream-rpz",
        kind=FeedKind.RPZ_AXFR,
        server="127.0.0.1",
        port=named.port,
        zone=ZONE,
        tsig=TsigKey(KEY, secret or named.secret, "hmac-sha256"),
        read_timeout=5.0,
        deadline=10.0,
    )


def _live(store: Store, feed: str) -> set[tuple[Scope, str, Action]]:
    live = store.live_generation(feed)
    assert live is not None
    return {
        (e.indicator.scope, e.indicator.value, e.action) for e in store.generation_entries(live.id)
    }


async def test_axfr_then_ixfr_with_tsig(named: Named, store: Store, guard: Guard) -> None:
    spec = _spec(named)
    board = StatusBoard()
    first = await sync_feed(spec, store, guard, board=board)
    assert first.outcome is SyncOutcome.LIVE, first.reason
    expected, rejects = _expected()
    assert _live(store, spec.name) == expected
    assert dict(first.rejects) == rejects
    assert first.serial == "1"
    gen = store.live_generation(spec.name)
    assert gen is not None
    assert gen.meta["incremental"] is False

    unchanged = await sync_feed(spec, store, guard, board=board)
    assert unchanged.outcome is SyncOutcome.UNCHANGED, unchanged.reason

    await asyncio.to_thread(
        named.update,
        [("added-later.example", "CNAME", "."), ("*.added-later.example", "CNAME", ".")],
        ["one-host.example"],
    )
    second = await sync_feed(spec, store, guard, board=board)
    assert second.outcome is SyncOutcome.LIVE, second.reason
    gen2 = store.live_generation(spec.name)
    assert gen2 is not None
    assert gen2.meta["incremental"] is True  # IXFR applied to the store-backed base
    assert int(second.serial) > 1
    after = _live(store, spec.name)
    assert (Scope.DOMAIN, "added-later.example", Action.BLOCK) in after
    assert (Scope.HOST, "one-host.example", Action.BLOCK) not in after
    assert after == (expected - {(Scope.HOST, "one-host.example", Action.BLOCK)}) | {
        (Scope.DOMAIN, "added-later.example", Action.BLOCK)
    }
    assert second.added == 1
    assert second.removed == 1


async def test_wrong_tsig_keeps_live(named: Named, store: Store, guard: Guard) -> None:
    spec = _spec(named)
    first = await sync_feed(spec, store, guard, board=StatusBoard())
    assert first.outcome is SyncOutcome.LIVE, first.reason
    await asyncio.to_thread(named.update, [("another.example", "CNAME", ".")], [])
    bad = replace(spec, tsig=TsigKey(KEY, base64.b64encode(b"x" * 32).decode(), "hmac-sha256"))
    res = await sync_feed(bad, store, guard, board=StatusBoard())
    assert res.outcome is SyncOutcome.FAILED
    assert "transfer" in res.reason
    live = store.live_generation(spec.name)
    assert live is not None
    assert live.id == first.generation_id


async def test_server_down_keeps_live(named: Named, store: Store, guard: Guard) -> None:
    spec = _spec(named)
    first = await sync_feed(spec, store, guard, board=StatusBoard())
    assert first.outcome is SyncOutcome.LIVE, first.reason
    named.proc.terminate()
    named.proc.wait(timeout=10)
    res = await sync_feed(replace(spec, deadline=3.0), store, guard, board=StatusBoard())
    assert res.outcome is SyncOutcome.FAILED
    live = store.live_generation(spec.name)
    assert live is not None
    assert live.id == first.generation_id
