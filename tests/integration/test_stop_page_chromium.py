"""Headless Chromium renders the stop page: DOM carries the text, the screenshot is not blank."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from edgeagent.proxy.stoppage import StopPageSettings, StopPageSource, create_stop_page_app
from tests.support.binaries import require_binary
from tests.support.chromium import QUIET_FLAGS, png_pixel_spread

pytestmark = pytest.mark.integration


async def test_chromium_renders_the_stop_page(tmp_path: Path) -> None:
    chromium = require_binary("chromium")
    settings = StopPageSettings(sources={"iwf": StopPageSource("the Example Hotline")})
    runner = web.AppRunner(create_stop_page_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/blocked?source=iwf"
    base = [chromium, *QUIET_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    try:
        dom = await asyncio.to_thread(
            subprocess.run,
            [*base, "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        shot = tmp_path / "stop.png"
        await asyncio.to_thread(
            subprocess.run,
            [*base, f"--screenshot={shot}", "--window-size=800,600", url],
            capture_output=True,
            timeout=90,
            check=False,
        )
    finally:
        await runner.cleanup()
    assert "the Example Hotline identified it as child sexual abuse material" in dom.stdout
    assert 'id="appeal"' in dom.stdout
    assert shot.exists(), "chromium wrote no screenshot"
    assert png_pixel_spread(shot.read_bytes()) > 3
