"""Load and crash: 50 clients post 2,000 decisions, the API is killed with SIGKILL half-way,
restarted, and the rest are posted. Every 201 must be in the store, no target twice, and
the audit chain must verify.

The server is a real process (:mod:`edgeagent.lab.api_server`) on loopback over a SQLite
store file, so SIGKILL hits it exactly as it would hit the daemon.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from edgeagent.lab.api_server import start_api_server
from edgeagent.model import DecisionStatus
from edgeagent.store import SqliteStore
from edgeagent.tokens import new_token

TOTAL = 2_000
CLIENTS = 50
KILL_AFTER = 900  # 201s seen before the SIGKILL

pytestmark = pytest.mark.integration


def _start(store_path: Path, guard_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    server = start_api_server(store_path, guard_dir, rebuild_every=-1)
    return server.proc, server.port


def _body(i: int) -> dict[str, str]:
    return {
        "target": f"h{i}.load.example",
        "scope": "host",
        "action": "block",
        "reason": "load test",
        "reference": f"LOAD-{i}",
        "source": "hotline",
    }


async def _post_all(
    port: int,
    secret: str,
    indices: list[int],
    created: dict[int, int],
    outcomes: Counter[int | str],
    kill: subprocess.Popen[bytes] | None = None,
) -> None:
    """Post ``indices`` from CLIENTS clients; record 201 ids in ``created`` (index -> id).

    With ``kill``, that process gets SIGKILL once KILL_AFTER decisions were created.
    """
    pending = iter(indices)
    headers = {"Authorization": f"Bearer {secret}"}
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(
        base, headers=headers, timeout=timeout, connector=connector
    ) as session:

        async def client() -> None:
            for i in pending:
                try:
                    async with session.post("/v1/decisions", json=_body(i)) as resp:
                        body = await resp.json()
                        outcomes[resp.status] += 1
                        if resp.status == 201:
                            assert body["target"] == f"h{i}.load.example"
                            created[i] = body["id"]
                except (aiohttp.ClientError, TimeoutError):
                    outcomes["lost"] += 1  # outcome unknown: the server died mid-request
                if kill is not None and len(created) >= KILL_AFTER and kill.poll() is None:
                    kill.send_signal(signal.SIGKILL)

        await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def test_every_201_survives_kill_9_without_duplicates(tmp_path: Path) -> None:
    store_path = tmp_path / "store.db"
    guard_dir = tmp_path / "protected"
    store = SqliteStore(store_path)
    secret, digest = new_token()
    store.add_token("loader", "analyst", digest)
    store.close()

    created: dict[int, int] = {}
    first: Counter[int | str] = Counter()
    proc, port = _start(store_path, guard_dir)
    try:
        await _post_all(port, secret, list(range(TOTAL)), created, first, kill=proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, "the server was not killed mid-run"
    assert KILL_AFTER <= len(created) < TOTAL
    assert first["lost"] > 0

    # Restart over the same file and post everything not confirmed yet. Requests whose
    # answer was lost may have been stored: they now get 409, never a second decision.
    second: Counter[int | str] = Counter()
    rest = [i for i in range(TOTAL) if i not in created]
    proc, port = _start(store_path, guard_dir)
    try:
        await _post_all(port, secret, rest, created, second)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert set(second) <= {201, 409}, second
    assert second[201] + second[409] == len(rest)

    store = SqliteStore(store_path)
    try:
        decisions = store.list_decisions(limit=10 * TOTAL)
        by_target = Counter(d.indicator.value for d in decisions)
        assert len(by_target) == TOTAL
        assert max(by_target.values()) == 1, "a target was stored twice"
        stored = {d.id: d for d in decisions}
        for i, decision_id in created.items():
            d = stored[decision_id]
            assert d.indicator.value == f"h{i}.load.example"
            assert d.status is DecisionStatus.ACTIVE
        records = store.audit_since(limit=100 * TOTAL)
        audited = {r.subject for r in records if r.action == "decision.create"}
        for decision_id in created.values():
            assert f"decision:{decision_id}" in audited
        verification = store.verify_audit()
        assert verification.ok, verification
        assert verification.rows >= len(created)
    finally:
        store.close()
