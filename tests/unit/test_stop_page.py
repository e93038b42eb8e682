"""Stop page: status, headers, language choice, no client data, counters only."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from edgeagent import listeners
from edgeagent.limits import DEFAULT_LIMITS
from edgeagent.proxy.stoppage import (
    StopPageSettings,
    StopPageSource,
    choose_language,
    create_stop_page_app,
    start_stop_page,
)
from tests.support.ports import free_port

SETTINGS = StopPageSettings(sources={"iwf": StopPageSource("the Example Hotline")})


async def _client(settings: StopPageSettings, hits: list[str]) -> TestClient:
    client = TestClient(TestServer(create_stop_page_app(settings, on_hit=hits.append)))
    await client.start_server()
    return client


async def test_451_with_blocked_by_link_and_text(caplog: pytest.LogCaptureFixture) -> None:
    """Through start_stop_page (the daemon's runner): nothing about the client is logged."""
    hits: list[str] = []
    caplog.set_level(logging.DEBUG)
    port = free_port(udp=False)
    listener = await start_stop_page(
        create_stop_page_app(SETTINGS, on_hit=hits.append), "127.0.0.1", port, DEFAULT_LIMITS
    )
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{port}/blocked?source=iwf",
                headers={"X-Forwarded-For": "192.0.2.9"},
            ) as resp,
        ):
            body = await resp.text()
    finally:
        await listeners.stop(listener)
    assert resp.status == 451
    assert resp.headers["Link"] == '<https://isp.example/blocking-policy>; rel="blocked-by"'
    assert resp.headers["Cache-Control"] == "no-store"
    assert "the Example Hotline identified it as child sexual abuse material" in body
    assert "https://isp.example/appeal" in body
    assert "https://help.example/" in body
    assert hits == ["iwf"]
    assert "192.0.2.9" not in body
    assert "192.0.2.9" not in caplog.text
    assert "127.0.0.1" not in caplog.text


async def test_403_configurable_and_unknown_source_counted_as_unknown() -> None:
    hits: list[str] = []
    client = await _client(StopPageSettings(status=403), hits)
    try:
        resp = await client.get("/blocked?source=<script>")
        body = await resp.text()
    finally:
        await client.close()
    assert resp.status == 403
    assert "<script>" not in body
    assert "a child protection hotline or authority" in body
    assert hits == ["unknown"]


async def test_language_from_accept_language() -> None:
    client = await _client(SETTINGS, [])
    try:
        resp = await client.get(
            "/blocked?source=iwf", headers={"Accept-Language": "fr-CH, en;q=0.5"}
        )
        body = await resp.text()
    finally:
        await client.close()
    assert resp.headers["Content-Language"] == "fr"
    assert "Accès refusé" in body
    assert "the Example Hotline" in body


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        ("", "en"),
        ("de, fr;q=0.8", "fr"),
        ("en;q=0.1, fr;q=0.9", "fr"),
        ("fr;q=x, en", "en"),
        ("EN-gb", "en"),
    ],
)
def test_choose_language(header: str, lang: str) -> None:
    assert choose_language(header) == lang


def test_status_must_be_451_or_403() -> None:
    with pytest.raises(ValueError, match="451 or 403"):
        StopPageSettings(status=200)
