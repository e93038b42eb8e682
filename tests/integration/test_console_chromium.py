"""The NTD console in real headless Chromium against the real daemon (``edgeagent run``).

Takedown is on (customers from a CSV export, hosts resolved by a real Unbound on
loopback), so an approved notice on a customer's host opens a case. An analyst signs in
with the keyboard, files a notice of three URLs from a public report (pending approval),
a supervisor in a second browser approves them (the four-eyes rule shown), the case view
shows the ticket, a reveal is audited, the privacy screen hides the page. Every page is
screenshotted into the test's directory (and, with ``EDGEAGENT_CONSOLE_SHOTS=DIR``, into
DIR: that is how ``docs/console/`` is made) and checked not blank. The browser's network
log shows each page's Content-Security-Policy and that no request ever went to the listed
host.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from edgeagent.lab.resolvers import unbound_server
from tests.support.agent import create_tokens, http_json, running_agent
from tests.support.binaries import require_binary
from tests.support.chromium import chromium_driver
from tests.support.console_browser import Shots, absent, check_log, replaced, sign_in, submit
from tests.support.polling import wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

OWN = "198.51.100"
LISTED_HOST = "shop.hosted.test"
URLS = [f"http://{LISTED_HOST}/listed/{n}.html?id=secret{n}" for n in (1, 2, 3)]
CUSTOMERS = f"prefix,customer_id,service_id,contact\n{OWN}.0/28,cust-shop,web-1,noc@shop.example\n"


@dataclass
class Console:
    base: str
    api: str
    tokens: dict[str, str]
    shots: Shots

    def shot(self, driver: Any, name: str) -> None:
        self.shots.shot(driver, name)

    def sign_in(self, driver: Any, who: str) -> None:
        sign_in(driver, self.base, who, self.tokens[who])


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    require_binary("unbound")
    tmp = tmp_path_factory.mktemp("console")
    api, metrics = free_port(udp=False), free_port(udp=False)
    records = [(LISTED_HOST, "A", f"{OWN}.10")]
    with unbound_server(records) as (_, dns_port):
        (tmp / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
        config = tmp / "edgeagent.toml"
        config.write_text(
            f"""
[agent]
state_dir = "{tmp / "state"}"
[api]
port = {api}
[metrics]
port = {metrics}
[guard]
change_floor = 0
[takedown]
enabled = true
own_prefixes = ["{OWN}.0/24"]
resolvers = [{{ host = "127.0.0.1", port = {dns_port} }}]
[[takedown.customers]]
kind = "csv"
path = "{tmp / "customers.csv"}"
""",
            encoding="utf-8",
        )
        # The service user may create tokens until an admin token exists: the admin last.
        people = {"ana": "analyst", "sam": "supervisor", "nico": "noc", "ada": "admin"}
        tokens = create_tokens(config, people)
        out = tmp / "shots"
        out.mkdir()
        with running_agent(config, metrics, tmp / "daemon.log"):
            base = f"http://127.0.0.1:{api}"
            yield Console(f"{base}/console", base, tokens, Shots(out))
        log = (tmp / "daemon.log").read_text(encoding="utf-8")
        assert LISTED_HOST not in log
        for secret in tokens.values():
            assert secret not in log


def test_a_notice_from_filing_to_case(console: Console, tmp_path: Path) -> None:
    with (
        chromium_driver(tmp_path / "a", javascript=True, network_log=True) as ana,
        chromium_driver(tmp_path / "s", javascript=True, network_log=True) as sam,
    ):
        console.sign_in(ana, "ana")
        console.shot(ana, "queue")
        ana.get(f"{console.base}/decisions")
        ana.find_element(By.ID, "notice-reference").send_keys("PUB-2026-7")
        ana.find_element(By.ID, "source").send_keys("public")
        ana.find_element(By.ID, "notice-reason").send_keys("public report <b>checked</b>")
        ana.find_element(By.ID, "targets").send_keys("\n".join(URLS))
        submit(ana, "targets")
        assert "Notice PUB-2026-7: 3 target(s) filed" in ana.page_source
        text = ana.find_element(By.TAG_NAME, "main").text
        assert text.count("pending") == 3
        assert "secret" not in ana.page_source
        assert "hxxp://shop[.]hosted[.]test/[path #" in text
        assert absent(ana, f'a[href*="{LISTED_HOST}"]')
        console.shot(ana, "notice")
        ids = [
            a.get_attribute("href").rsplit("/", 1)[1]
            for a in ana.find_elements(By.CSS_SELECTOR, "main table a")
        ]
        assert len(ids) == 3

        # A second person, in a second browser, approves each: the rule is shown.
        console.sign_in(sam, "sam")
        assert sam.find_element(By.CSS_SELECTOR, 'a[href="/console/decisions"] .count').text == "3"
        for n, decision_id in enumerate(ids):
            sam.get(f"{console.base}/decisions/{decision_id}")
            assert "a second person" in sam.find_element(By.ID, "four-eyes").text
            if n == 0:
                console.shot(sam, "decision")
            submit(sam, "approve-reason", "checked")
            assert sam.find_element(By.ID, "status").text == "active"
        sam.get(f"{console.base}/decisions?reference=PUB-2026-7")
        console.shot(sam, "decisions")

        # The case: opened for the customer once the blocks are active.
        def case_id() -> str | None:
            ana.get(f"{console.base}/tickets")
            links = ana.find_elements(By.CSS_SELECTOR, "main table a")
            return links[0].get_attribute("href").rsplit("/", 1)[1] if links else None

        ana.implicitly_wait(0)
        ticket = wait_for("the case", case_id, timeout=60)
        ana.implicitly_wait(20)
        console.shot(ana, "cases")
        ana.get(f"{console.base}/tickets/{ticket}")
        assert "PUB-2026-7" in ana.find_element(By.TAG_NAME, "main").text
        # Only the moves the ticket's state allows are offered.
        for state in ("under-review", "temporarily-removed"):
            offered = ana.find_elements(By.XPATH, "//button[starts-with(., 'Move to ')]")
            assert offered
            assert f"Move to {state}" in [b.text for b in offered]
            assert "Move to evidence-issued" not in [b.text for b in offered]
            submit(ana, f"to-{state}", "checked")
            assert ana.find_element(By.ID, "state").text == state
        ana.find_element(By.ID, "comment").send_keys("customer called <script>x</script>")
        submit(ana, "comment")
        assert "customer called <script>x</script>" in ana.find_element(By.TAG_NAME, "main").text
        console.shot(ana, "case")

        # A reveal, with its reason: shown once, audited, counted.
        submit(ana, "reveal-reason", "compare with the notice")
        assert ana.find_element(By.ID, "revealed").text.count("secret") == 3
        assert ana.find_element(By.ID, "reveal-count").text == "reveals today: 1"
        assert absent(ana, f'a[href*="{LISTED_HOST}"]')
        status, audit = http_json("GET", f"{console.api}/v1/audit", console.tokens["sam"])
        assert status == 200
        reveals = [r for r in audit["items"] if r["action"] == "console.reveal"]
        assert [(r["actor"], r["subject"]) for r in reveals] == [("ana", f"ticket:{ticket}")]
        assert reveals[0]["detail"] == {"reason": "compare with the notice"}

        # The supervisor sees the analyst's count of the day.
        sam.get(f"{console.base}/queue")
        assert "ana" in sam.find_element(By.TAG_NAME, "main").text
        console.shot(sam, "queue-supervisor")

        # One key blanks the page; the same key shows it again.
        ana.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        assert not ana.find_element(By.ID, "main").is_displayed()
        assert ana.find_element(By.ID, "privacy-screen").is_displayed()
        console.shot(ana, "privacy-screen")
        ana.switch_to.active_element.send_keys(Keys.ESCAPE)
        assert ana.find_element(By.ID, "main").is_displayed()

        for page in ("lookup", "fleet", "reports", "audit"):
            sam.get(f"{console.base}/{page}")
            assert sam.find_element(By.TAG_NAME, "h1").text
            console.shot(sam, page)
        sam.get(f"{console.base}/lookup")
        submit(sam, "target", URLS[0])
        assert "proxy stop-page" in sam.find_element(By.ID, "verdict").text
        assert "secret" not in sam.page_source
        console.shot(sam, "lookup-result")
        sam.get(f"{console.base}/audit/verify")
        assert sam.find_element(By.ID, "chain").text == "intact"
        console.sign_in(sam, "ada")
        sam.get(f"{console.base}/tokens")
        console.shot(sam, "tokens")
        check_log(ana, [LISTED_HOST])
        check_log(sam, [LISTED_HOST])
    console.shots.publish()


def test_a_noc_user_cannot_act_as_supervisor(console: Console, tmp_path: Path) -> None:
    """A noc session crafts supervisor POSTs (with its own valid CSRF token): refused,
    audited, nothing changes."""
    status, found = http_json("GET", f"{console.api}/v1/decisions", console.tokens["ana"])
    assert status == 200
    decision_id = found["items"][0]["id"]
    with chromium_driver(tmp_path / "n", javascript=True) as nico:
        console.sign_in(nico, "nico")
        nico.get(f"{console.base}/decisions")
        assert "role noc below required analyst" in nico.find_element(By.TAG_NAME, "main").text
        for action in ("revoke", "approve"):
            # The session's own sign-out form, pointed elsewhere: a crafted POST.
            old = nico.find_element(By.TAG_NAME, "html")
            nico.execute_script(
                "const f = document.querySelector('form[action=\"/console/signout\"]');"
                "const r = document.createElement('input');"
                "r.name = 'reason'; r.value = 'crafted'; f.appendChild(r);"
                f"f.action = '/console/decisions/{decision_id}/{action}'; f.submit();"
            )
            WebDriverWait(nico, 60).until(replaced(old))
            main = nico.find_element(By.TAG_NAME, "main").text
            assert "role noc below required supervisor" in main
    status, after = http_json(
        "GET", f"{console.api}/v1/decisions/{decision_id}", console.tokens["ana"]
    )
    assert after["status"] == "active"
    status, audit = http_json("GET", f"{console.api}/v1/audit", console.tokens["sam"])
    assert status == 200
    denied = [r for r in audit["items"] if r["action"] == "auth.denied" and r["actor"] == "nico"]
    assert {r["subject"] for r in denied} == {
        "console:listDecisions",
        "console:revokeDecision",
        "console:approveDecision",
    }
