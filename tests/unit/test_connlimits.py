"""The connection limits of a listener (edgeagent.connlimits), on a real loopback socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from edgeagent.api.app import bound_port, start_site
from edgeagent.limits import ConnectionLimits

LIMITS = ConnectionLimits(header_timeout=0.5, idle_timeout=1.0, max_connections=16)
REQUEST = b"GET / HTTP/1.1\r\nHost: limits.example\r\n\r\n"


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = await start_site(app, "127.0.0.1", 0, LIMITS)
    try:
        yield bound_port(runner)
    finally:
        await runner.cleanup()


async def _closed_after(reader: asyncio.StreamReader) -> float:
    began = time.monotonic()
    while await reader.read(4096):
        pass
    return time.monotonic() - began


async def _get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    body = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return body


async def test_a_header_that_never_ends_is_cut_at_the_header_timeout(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: limits.example\r\n")
    waited = await asyncio.wait_for(_closed_after(reader), 5)
    assert 0.4 < waited < 1.0
    writer.close()


async def test_a_header_split_across_reads_completes(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for part in (REQUEST[:-3], REQUEST[-3:-1], REQUEST[-1:]):
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.1)
    assert b"hello" in await asyncio.wait_for(reader.read(4096), 5)
    # Served, now idle: kept alive until the idle timeout, past the header timeout.
    waited = await asyncio.wait_for(_closed_after(reader), 5)
    assert 0.7 < waited < 2.0
    writer.close()


async def test_at_the_cap_a_new_client_takes_the_place_of_a_silent_one(port: int) -> None:
    silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
    assert b"hello" in await _get(port)
    await asyncio.sleep(0.1)
    dropped = [r for r, _ in silent if r.at_eof()]
    assert len(dropped) >= 40 - LIMITS.max_connections + 1  # the oldest ones went first
    assert not silent[-1][0].at_eof()
    for _, writer in silent:
        writer.close()
