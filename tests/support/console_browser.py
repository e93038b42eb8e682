"""The NTD console in a real browser: the steps every console page test takes.

- :class:`Shots`: screenshots of pages into the test's directory, each checked not blank
  (and, with ``EDGEAGENT_CONSOLE_SHOTS=DIR``, copied into DIR by :meth:`Shots.publish`:
  that is how ``docs/console/`` is made);
- :func:`sign_in`: the keyboard-only sign-in with a person's API token;
- :func:`submit`: fill a field, send its form, wait for the answer page;
- :func:`absent`: no element matches (asked without the implicit wait);
- :func:`check_log`: every console document came with the Content-Security-Policy and no
  request ever went to a listed host (the browser's network log).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from edgeagent.console.app import HEADERS
from tests.support.chromium import network_events, png_pixel_spread


@dataclass
class Shots:
    out: Path
    taken: list[Path] = field(default_factory=list)

    def shot(self, driver: Any, name: str) -> None:
        path = self.out / f"console-{name}.png"
        data = driver.get_screenshot_as_png()
        assert png_pixel_spread(data) > 3, f"{name}: blank page"
        path.write_bytes(data)
        self.taken.append(path)

    def publish(self) -> None:
        """Copy the screenshots to ``$EDGEAGENT_CONSOLE_SHOTS`` when it is set."""
        target = os.environ.get("EDGEAGENT_CONSOLE_SHOTS")
        if target:
            for shot in self.taken:
                shutil.copy(shot, Path(target) / shot.name)


def replaced(old: Any) -> Callable[[Any], bool]:
    """A wait condition: has the page holding ``old`` been replaced?

    Selenium's ``staleness_of`` knows only the "stale element" answer; Chromium can
    instead answer "node does not belong to the document" while the new page is being
    attached, which means the same thing."""

    def gone(_driver: Any) -> bool:
        try:
            old.is_enabled()
        except WebDriverException:
            return True
        return False

    return gone


def sign_in(driver: Any, base: str, who: str, secret: str) -> None:
    """Sign in with the keyboard only: Tab to the token field, type, Enter."""
    driver.get(f"{base}/signin")
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert driver.switch_to.active_element.get_attribute("id") == "token"
    old = driver.find_element(By.TAG_NAME, "html")
    driver.switch_to.active_element.send_keys(secret + Keys.ENTER)
    WebDriverWait(driver, 60).until(replaced(old))
    assert driver.find_element(By.ID, "who").text == who


def submit(driver: Any, element_id: str, text: str = "") -> None:
    """Type ``text`` into the field and send its form; return once the answer page has
    replaced this one (the old page's elements would otherwise still be found)."""
    old = driver.find_element(By.TAG_NAME, "html")
    field = driver.find_element(By.ID, element_id)
    if text:
        field.send_keys(text)
    field.submit()
    WebDriverWait(driver, 60).until(replaced(old))


def absent(driver: Any, selector: str) -> bool:
    """Does no element match the CSS ``selector``? Asked without the implicit wait,
    which would otherwise spend its whole time waiting for an element never coming."""
    wait = driver.timeouts.implicit_wait
    driver.implicitly_wait(0)
    try:
        return not driver.find_elements(By.CSS_SELECTOR, selector)
    finally:
        driver.implicitly_wait(wait)


def check_log(driver: Any, listed_hosts: Iterable[str]) -> None:
    """Every console document since the last check came with the CSP; no request ever
    left for a listed host."""
    hosts = tuple(listed_hosts)
    documents = 0
    for event in network_events(driver):
        params = event["params"]
        url = params.get("request", params.get("response", {})).get("url", "")
        for host in hosts:
            assert host not in url, "a request for a listed location"
        if event["method"] == "Network.responseReceived" and params.get("type") == "Document":
            headers = {k.lower(): v for k, v in params["response"]["headers"].items()}
            if "/console/" in url and params["response"]["status"] != 303:
                documents += 1
                csp = headers.get("content-security-policy")
                assert csp == HEADERS["Content-Security-Policy"], url
    assert documents > 0
