"""Headless Chromium through Selenium and Debian's chromedriver, for the page tests.

- :func:`chromium_driver`: a fresh profile, no background traffic, no name resolved;
  JavaScript off unless asked for; with ``network_log`` the browser's performance log
  (every request and response, headers included) is kept for :func:`network_events`;
  with ``downloads`` a file the server sends as an attachment is saved there.
- :func:`png_pixel_spread`: how many distinct byte values a screenshot's pixels hold (a
  blank page has one or two).
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver

from tests.support.binaries import require_binary

QUIET_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # It resolves no name: its own services' (update, sign-in, autofill, the search
    # engine) would otherwise be looked up through the system's resolver, off the machine,
    # whatever the flags above say. The pages under test are on loopback addresses.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.*, EXCLUDE localhost",
)
"""Headless Chromium with no traffic of its own."""


@contextmanager
def chromium_driver(
    profile: Path,
    *,
    javascript: bool = False,
    network_log: bool = False,
    downloads: Path | None = None,
) -> Iterator[Any]:
    chromium = require_binary("chromium")
    driver_bin = shutil.which("chromedriver")
    if driver_bin is None:
        pytest.fail("chromedriver not installed (Debian chromium-driver; ./dev installs it)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    flags = [*QUIET_FLAGS, "--window-size=1200,900", f"--user-data-dir={profile}"]
    prefs: dict[str, Any] = {}
    if not javascript:
        flags.append("--blink-settings=scriptEnabled=false")
        prefs["profile.managed_default_content_settings.javascript"] = 2
    if downloads is not None:
        prefs["download.default_directory"] = str(downloads)
        prefs["download.prompt_for_download"] = False
    if prefs:
        opts.add_experimental_option("prefs", prefs)
    for flag in flags:
        opts.add_argument(flag)
    if network_log:
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = webdriver.ChromeService(executable_path=driver_bin)
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(60)
    driver.implicitly_wait(20)  # a submitted form's answer page may take a moment to load
    try:
        yield driver
    finally:
        driver.quit()


def network_events(driver: Any) -> list[dict[str, Any]]:
    """The ``Network.*`` events logged since the last call (each a CDP message)."""
    out = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if str(message.get("method", "")).startswith("Network."):
            out.append(message)
    return out


def png_pixel_spread(data: bytes) -> int:
    """Number of distinct byte values in the decoded PNG rows (tiny zlib-based decoder)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    return len(set(raw[::7]))
