"""The enforcer contract's reload, with the proxy enforcer (its stop page listens, so a
gap would show): unchanged sections change nothing, changed ones hand over to a started
successor, a successor that cannot start leaves the running enforcer in place."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp

from edgeagent import listeners
from edgeagent.enforcement.base import EnforcerContext, ReloadOutcome
from edgeagent.limits import DEFAULT_LIMITS
from edgeagent.metrics import Metrics
from edgeagent.model import DesiredState
from edgeagent.proxy.enforcer import ProxyConfig, ProxyEnforcer, ProxyEnforcerConfig
from tests.support.ports import free_port


def sections(tmp_path: Path, port: int, **changes: object) -> ProxyEnforcerConfig:
    proxy = {
        "enabled": True,
        "index_path": str(tmp_path / "index.bin"),
        "stop_page_listen_port": port,
        **changes,
    }
    return ProxyEnforcerConfig(proxy=ProxyConfig.model_validate(proxy))


async def status_at(port: int) -> int | str:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/blocked") as resp,
        ):
            return resp.status
    except aiohttp.ClientError as exc:
        return type(exc).__name__


async def test_reload_hands_over_to_a_started_successor(tmp_path: Path) -> None:
    context = EnforcerContext(tmp_path, Metrics())
    port = free_port(udp=False)
    state = DesiredState(1, (), ())
    old = ProxyEnforcer.from_config(sections(tmp_path, port), context)
    await old.start()
    await old.publish(state)
    same = await old.reload(sections(tmp_path, port), context, state)
    assert (same.outcome, same.enforcer) == (ReloadOutcome.UNCHANGED, old)

    answers: list[int | str] = []
    done = asyncio.Event()

    async def poll() -> None:
        while not done.is_set():
            answers.append(await status_at(port))

    poller = asyncio.create_task(poll())
    await asyncio.sleep(0.1)
    new = await old.reload(sections(tmp_path, port, status=403), context, state)
    await asyncio.sleep(0.1)
    done.set()
    await poller
    assert new.outcome is ReloadOutcome.APPLIED
    assert new.enforcer is not old
    assert await status_at(port) == 403
    assert set(answers) <= {451, 403}  # the stop page never went away
    assert (tmp_path / "index.bin").exists()
    await new.enforcer.close()
    assert isinstance(await status_at(port), str)  # the last server closed the socket


async def test_a_successor_that_cannot_start_leaves_the_running_one(tmp_path: Path) -> None:
    context = EnforcerContext(tmp_path, Metrics())
    port = free_port(udp=False)
    old = ProxyEnforcer.from_config(sections(tmp_path, port), context)
    await old.start()
    with socket.create_server(("127.0.0.1", 0)) as taken:  # not ours to share
        busy = taken.getsockname()[1]
        kept = await old.reload(sections(tmp_path, busy, status=403), context, None)
    assert (kept.outcome, kept.enforcer) == (ReloadOutcome.NEEDS_RESTART, old)
    assert await status_at(port) == 451
    await old.close()


async def test_servers_on_one_address_share_one_socket() -> None:
    app = aiohttp.web.Application()
    first = await listeners.start(app, "127.0.0.1", 0, DEFAULT_LIMITS)
    second = await listeners.start(
        aiohttp.web.Application(), "127.0.0.1", first.port, DEFAULT_LIMITS
    )
    assert second.address == first.address
    await listeners.stop(first)
    assert await status_at(first.port) == 404  # the second one answers (no routes)
    await listeners.stop(second)
    assert isinstance(await status_at(first.port), str)
