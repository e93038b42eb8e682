"""The public report and appeal pages in real headless Chromium (Selenium + chromedriver).

JavaScript is switched off in the browser: the pages must work without it. The report is
filled in with the keyboard only (Tab to each field, type, Space, Enter); the appeal is
reached through the stop page's appeal link, which carries the opaque entry reference.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from edgeagent.decisions import DecisionService
from edgeagent.intake.app import PublicPages, create_public_pages_app
from edgeagent.intake.settings import IntakeSettings
from edgeagent.intake.triage import Triage
from edgeagent.store import SqliteStore
from tests.support.api import make_guard
from tests.support.chromium import chromium_driver

pytestmark = pytest.mark.integration


class PagesServer:
    """The pages on 127.0.0.1 in a thread of their own (Selenium's calls block)."""

    def __init__(self, pages: PublicPages) -> None:
        self.app = create_public_pages_app(pages)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self.app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> str:
        self._thread.start()
        assert self._ready.wait(10)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store.db")
    yield s
    s.close()


@contextmanager
def _driver(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium with JavaScript off, a fresh profile, no background traffic."""
    with chromium_driver(tmp_path / "profile") as driver:
        yield driver


def tab_to(driver: Any, element_id: str, *, limit: int = 40) -> None:
    """Press Tab until the element with ``element_id`` has the focus (keyboard only)."""
    for _ in range(limit):
        if driver.switch_to.active_element.get_attribute("id") == element_id:
            return
        driver.switch_to.active_element.send_keys(Keys.TAB)
    raise AssertionError(f"#{element_id} cannot be reached with the Tab key")


def type_here(driver: Any, text: str) -> None:
    driver.switch_to.active_element.send_keys(text)


def test_report_by_keyboard_without_javascript(store: SqliteStore, tmp_path: Path) -> None:
    triage = Triage(DecisionService(store, make_guard(tmp_path / "g"), public_needs_approval=True))
    settings = IntakeSettings(operator="Example ISP", hotline_name="the Example Hotline")
    with PagesServer(PublicPages(settings, triage.submit)) as base, _driver(tmp_path) as d:
        # JavaScript really is off in this browser: the script below does not run.
        d.get("data:text/html,<p id=js>off</p><script>js.textContent='on'</script>")
        assert d.find_element(By.ID, "js").text == "off"
        d.get(f"{base}/report")
        page = d.find_element(By.TAG_NAME, "body").text
        assert "Never send images, videos or screenshots" in page
        assert "If you report anonymously, we cannot acknowledge your report" in page
        assert d.find_element(By.LINK_TEXT, "the Example Hotline").get_attribute("href") == (
            "https://hotline.example/"
        )
        d.find_element(By.TAG_NAME, "body").click()
        tab_to(d, "urls")
        type_here(d, "http://bad.example/one\nbad.example/two")
        tab_to(d, "category")
        type_here(d, "Images")
        tab_to(d, "came_across")
        type_here(d, "Social")
        # A radio group is one Tab stop (the checked "I do not know"); arrows choose.
        tab_to(d, "live-unknown")
        type_here(d, Keys.ARROW_UP + Keys.ARROW_UP)
        assert d.switch_to.active_element.get_attribute("id") == "live-yes"
        tab_to(d, "description")
        type_here(d, "<b>found via a forum</b>")
        tab_to(d, "submit")
        type_here(d, Keys.ENTER)
        reference = d.find_element(By.ID, "reference").text
        assert "cannot reply" in d.find_element(By.ID, "next").text
    [item] = store.list_intake_items()
    assert item.reference == reference
    assert item.content.urls == ("http://bad.example/one", "http://bad.example/two")
    assert (item.content.category, item.content.came_across) == (
        settings.categories[0],
        "social-media",
    )
    assert item.content.live_video is True
    assert item.content.description == "<b>found via a forum</b>"
    assert item.content.contact == ""


def test_appeal_from_the_stop_page_link(store: SqliteStore, tmp_path: Path) -> None:
    triage = Triage(DecisionService(store, make_guard(tmp_path / "g"), public_needs_approval=True))
    ref = "abcdefghijklmnopqrstuvwx"
    with PagesServer(PublicPages(IntakeSettings(), triage.submit)) as base, _driver(tmp_path) as d:
        d.get(f"{base}/appeal?ref={ref}")
        d.find_element(By.ID, "statement").send_keys("This is my bakery's menu <script>x</script>")
        d.find_element(By.ID, "contact").send_keys("owner@bakery.example")
        d.find_element(By.ID, "submit").click()
        reference = d.find_element(By.ID, "reference").text
        assert reference.startswith("A-")
        assert "tell you the outcome" in d.find_element(By.ID, "next").text
    [item] = store.list_intake_items()
    assert (item.reference, item.content.subject) == (reference, ref)
    assert item.content.contact == "owner@bakery.example"


def test_challenge_with_a_ticket_reference(store: SqliteStore, tmp_path: Path) -> None:
    triage = Triage(DecisionService(store, make_guard(tmp_path / "g"), public_needs_approval=True))
    with PagesServer(PublicPages(IntakeSettings(), triage.submit)) as base, _driver(tmp_path) as d:
        d.get(f"{base}/appeal")
        d.find_element(By.LINK_TEXT, "Use the takedown challenge form").click()
        d.find_element(By.ID, "submit").click()  # empty: the browser's own checks stop it
        d.implicitly_wait(0)
        assert d.find_elements(By.ID, "reference") == []
        d.implicitly_wait(20)
        d.find_element(By.ID, "case_reference").send_keys("CASE-42")
        d.find_element(By.ID, "statement").send_keys("The file is a lawful medical diagram.")
        d.find_element(By.ID, "submit").click()
        assert d.find_element(By.ID, "reference").text.startswith("C-")
    [item] = store.list_intake_items()
    assert (item.channel.value, item.content.subject) == ("challenge", "CASE-42")
