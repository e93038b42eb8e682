"""A day at the NTD desk in the console, in real headless Chromium: the four kinds of
case and the monthly report, each from start to finish in the browser.

A hotline notice (a second person approves an address block; the customer is told), a
police notice (law-enforcement hold: the customer hears nothing; authorisation, referral,
preservation, measure, legal hold, evidence export), a public report sent through the
real report page and triaged in the console into a case found legal by two people, an
appeal sent from the stop page's link and decided in the console (and an allow that
waits for a second person), then the monthly report and its CSV export.

The daemon runs for real (``edgeagent run``), as in the CLI flow test: a police "worst
of" list, the proxy index (the stop page's appeal reference comes from the Squid helper),
the public report and appeal pages, takedown on with customers from a CSV export, hosts
resolved by a real Unbound, notices to a real SMTP sink and a webhook sink checking the
HMAC (:mod:`tests.support.segment_peers`). One daemon and one browser serve the module;
people take turns at it by signing in. What the test reads besides the browser (mails,
webhooks, the API to wait on) is only looked at, never changed.

Every console page is checked to show no listed location unmasked (only an audited
reveal would), its Content-Security-Policy, and the network log to hold no request for
a listed host. New pages are screenshotted (``EDGEAGENT_CONSOLE_SHOTS=DIR`` copies them).
"""

from __future__ import annotations

import csv
import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select

from edgeagent.takedown.evidence import verify_bundle
from edgeagent.takedown.report import CSV_COLUMNS
from tests.support.agent import create_tokens, http_json, running_agent
from tests.support.chromium import chromium_driver
from tests.support.console_browser import Shots, absent, check_log, sign_in, submit
from tests.support.desk_config import HOSTING, OWN, desk_config
from tests.support.polling import wait_for
from tests.support.ports import free_port
from tests.support.segment_peers import (
    assert_hosting_only,
    received_mails,
    running,
)

pytestmark = pytest.mark.integration

SHOP_CONTACT = "noc@cust-shop.example"
BLOG_CONTACT = "noc@cust-blog.example"
APPELLANT = "owner@away.example"
ZONE = ZoneInfo("Europe/Berlin")
CUSTOMERS = f"""prefix,customer_id,service_id,contact
{OWN}.0/28,cust-shop,web-1,{SHOP_CONTACT}
{OWN}.16/28,cust-blog,web-3,{BLOG_CONTACT}
"""
RECORDS = [
    ("shop.hosted.test", "A", f"{OWN}.10"),
    ("blog.hosted.test", "A", f"{OWN}.20"),
    ("report.hosted.test", "A", f"{OWN}.11"),
    ("away.hosted.test", "A", "203.0.113.50"),  # not own space: no case
]
LISTED_HOSTS = [name for name, _, _ in RECORDS] + ["worst.example"]
# The paths of listed locations: never on a console page (only a reveal shows them).
LISTED_PATHS = ("/listed/", "/gallery/", "photo.html")
PEOPLE = {"ana": "analyst", "abe": "analyst", "sam": "supervisor"}


@dataclass
class Desk:
    """The daemon, the one browser (whoever signed in last), the sinks."""

    base: str
    api: str
    pages: str
    stop: str
    index: Path
    state: Path
    peers: Path
    downloads: Path
    tokens: dict[str, str]
    driver: Any
    shots: Shots
    who: str = ""

    def as_(self, who: str) -> Any:
        """The browser, signed in as ``who``."""
        if self.who != who:
            sign_in(self.driver, self.base, who, self.tokens[who])
            self.who = who
        return self.driver

    def get(self, who: str, path: str) -> Any:
        driver = self.as_(who)
        driver.get(self.base + path)
        self.check_masked()
        return driver

    def submit(self, element_id: str, text: str = "") -> None:
        submit(self.driver, element_id, text)
        self.check_masked()

    def check_masked(self) -> None:
        page = self.driver.page_source
        for path in LISTED_PATHS:
            assert path not in page, f"{self.driver.current_url}: {path} unmasked"

    def main(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "main").text)

    def fill(self, values: dict[str, str]) -> None:
        for element_id, text in values.items():
            element = self.driver.find_element(By.ID, element_id)
            if element.tag_name == "select":
                Select(element).select_by_value(text)
            else:
                element.clear()
                element.send_keys(text)

    def observe(self, path: str) -> Any:
        """A read of the API, for the test to wait on."""
        status, body = http_json("GET", self.api + path, self.tokens["sam"])
        assert status == 200, body
        return body

    def ticket(self, reference: str) -> dict[str, Any]:
        """The case of ``reference``, once its first notice went out."""

        def found() -> dict[str, Any] | None:
            items = self.observe("/v1/tickets?limit=1000")["items"]
            mine = [t for t in items if t["reference"] == reference and t["last_notified_at"]]
            return dict(mine[0]) if mine else None

        return dict(wait_for(f"the case of {reference}", found, timeout=60))

    def file_notice(self, who: str, reference: str, source: str, targets: str, **extra: str) -> str:
        """File a notice on the decisions page; the main text of the answer."""
        self.get(who, "/decisions")
        self.fill(
            {
                "notice-reference": reference,
                "source": source,
                "notice-reason": f"{source} notice",
                **extra,
            }
        )
        self.submit("targets", targets)
        assert f"Notice {reference}:" in self.main()
        return self.main()

    def outcomes(self) -> list[str]:
        """The outcome of each target of the notice just filed."""
        rows = self.driver.find_elements(By.CSS_SELECTOR, "main table tbody tr")
        return [str(row.find_elements(By.TAG_NAME, "td")[1].text) for row in rows]

    def decision_ids(self) -> list[str]:
        links = self.driver.find_elements(By.CSS_SELECTOR, "main table a")
        return [str(a.get_attribute("href")).rsplit("/", 1)[1] for a in links]

    def move(self, tid: int, state: str, **fields: str) -> None:
        """Move the case to ``state`` from its page, with the move's record fields."""
        self.get(self.who, f"/tickets/{tid}")
        self.fill({f"to-{state}-{name}": text for name, text in fields.items()})
        self.submit(f"to-{state}", "desk")

    def mails(self, tid: int | None = None) -> list[Any]:
        found = received_mails(self.peers)
        return [m for m in found if tid is None or m.ticket == str(tid)]

    def lookup(self, who: str, target: str) -> str:
        self.get(who, "/lookup")
        self.submit("target", target)
        return str(self.driver.find_element(By.ID, "verdict").text)

    def downloaded(self, name: str) -> Path:
        path = self.downloads / name
        wait_for(name, lambda: path.exists() and path.stat().st_size > 0, timeout=30)
        return path


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    tmp = tmp_path_factory.mktemp("console-desk")
    secret = secrets.token_hex(32)
    secret_file = tmp / "webhook-hmac"
    secret_file.write_text(secret, encoding="utf-8")
    shots, downloads = tmp / "shots", tmp / "downloads"
    shots.mkdir()
    downloads.mkdir()
    with running(tmp / "peers", RECORDS, secret.encode()) as peers:
        ports = {name: free_port(udp=False) for name in ("api", "metrics", "stop", "pages")}
        config = desk_config(
            tmp,
            peers,
            ports,
            secret_file,
            CUSTOMERS,
            appeal_url=f"http://127.0.0.1:{ports['pages']}/appeal",
        )
        tokens = create_tokens(config, PEOPLE)
        with (
            running_agent(config, ports["metrics"], tmp / "daemon.log"),
            chromium_driver(
                tmp / "profile", javascript=True, network_log=True, downloads=downloads
            ) as driver,
        ):
            api = f"http://127.0.0.1:{ports['api']}"
            desk = Desk(
                f"{api}/console",
                api,
                f"http://127.0.0.1:{ports['pages']}",
                f"http://127.0.0.1:{ports['stop']}",
                tmp / "proxy" / "proxy-index.bin",
                tmp / "state",
                tmp / "peers",
                downloads,
                tokens,
                driver,
                Shots(shots),
            )
            wait_for(
                "the police list",
                lambda: desk.observe("/v1/lookup?target=worst.example")["dns"] == "block",
                timeout=30,
            )
            yield desk
            desk.shots.publish()
        log = (tmp / "daemon.log").read_text(encoding="utf-8")
        for host in LISTED_HOSTS[:4]:
            assert host not in log  # entries never in logs
        for token in tokens.values():
            assert token not in log


def _local(delta: timedelta) -> str:
    """A time ``delta`` from now, as the team types it (their zone, to the minute)."""
    return (datetime.now(ZONE) + delta).strftime("%Y-%m-%d %H:%M")


def test_a_hotline_notice_with_a_second_person(desk: Desk) -> None:
    text = desk.file_notice(
        "ana", "HOT-77", "hotline", "ip 192.0.2.66\nhttp://blog.hosted.test/gallery/3.html"
    )
    assert "2 target(s) filed" in text
    assert desk.outcomes() == ["pending", "accepted"]
    ids = desk.decision_ids()
    # The address block waits for a second person: the rule is shown, no form offered.
    desk.get("ana", f"/decisions/{ids[0]}")
    assert "a second person" in desk.driver.find_element(By.ID, "four-eyes").text
    assert absent(desk.driver, "#approve-reason")
    desk.get("sam", f"/decisions/{ids[0]}")
    desk.submit("approve-reason", "checked")
    assert desk.driver.find_element(By.ID, "status").text == "active"
    assert "sam" in desk.main()

    # The URL on a customer's server: not held, so the customer is told.
    tid = desk.ticket("HOT-77")["id"]
    desk.get("ana", f"/tickets/{tid}")
    assert "cust-blog" in desk.main()
    assert absent(desk.driver, "#hold")
    assert BLOG_CONTACT in desk.mails(tid)[0].recipients
    desk.move(tid, "under-review")
    desk.move(tid, "temporarily-removed")
    assert desk.driver.find_element(By.ID, "state").text == "temporarily-removed"
    # An agency asks for silence: only a supervisor may hold the case.
    assert absent(desk.driver, "#hold-reason")
    desk.get("sam", f"/tickets/{tid}")
    desk.submit("hold-reason", "agency request AG-5")
    assert "never to the customer" in desk.driver.find_element(By.ID, "hold").text
    check_log(desk.driver, LISTED_HOSTS)


def test_a_police_notice_held_from_notice_to_evidence(desk: Desk) -> None:
    received = _local(-timedelta(hours=2))
    text = desk.file_notice(
        "ana",
        "POL-2026-0042",
        "law-enforcement",
        "http://shop.hosted.test/listed/1.html\nhttp://shop.hosted.test/listed/2.html\n"
        "http://away.hosted.test/listed.html\nnot a url",
        **{"notice-received": received, "jurisdiction": "DE"},
    )
    assert "4 target(s) filed" in text
    assert desk.outcomes() == ["accepted"] * 3 + ["refused"]
    desk.shots.shot(desk.driver, "notice-police")
    decisions = desk.observe("/v1/decisions?reference=POL-2026-0042")["items"]
    assert {(d["hold"], d["jurisdiction"], d["status"]) for d in decisions} == {
        (True, "DE", "active")
    }
    at = datetime.fromisoformat(decisions[0]["notice_received_at"])
    assert at.astimezone(ZONE).strftime("%Y-%m-%d %H:%M") == received

    tid = desk.ticket("POL-2026-0042")["id"]
    desk.get("ana", f"/tickets/{tid}")
    assert "never to the customer" in desk.driver.find_element(By.ID, "hold").text
    assert "POL-2026-0042" in desk.main()
    desk.fill({"assignee": "abe"})
    desk.submit("assignee")
    assert "Assigned." in desk.main()

    desk.get("abe", f"/tickets/{tid}")
    desk.submit("comment", "police asked for a call before isolation")
    desk.move(tid, "under-review")
    desk.move(tid, "temporarily-removed")
    assert "authorisation" in desk.main()  # refused: no authorisation yet
    desk.get("abe", f"/tickets/{tid}")
    desk.fill({"auth-by": "LKA Example, Officer D", "auth-reference": "LKA-2026-9"})
    desk.submit("auth-at", _local(-timedelta(hours=1)))
    wait_for(
        "the instruction to isolate",
        lambda: [
            m for m in desk.mails(tid) if "Instruction to isolate" in str(m.message["Subject"])
        ],
        timeout=30,
    )
    desk.move(tid, "temporarily-removed")
    referral = {
        "recipient": "example-hotline",
        "reference": "HL-REF-77",
        "at": _local(-timedelta(minutes=30)),
    }
    desk.move(tid, "referred", **referral)
    desk.move(tid, "confirmed-illegal")
    desk.move(
        tid,
        "removed-and-preserved",
        location="hosting evidence store, shelf 4",
        preserved_by="host admin K",
        content_sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        at=_local(-timedelta(minutes=10)),
    )
    desk.fill({"outcome-kind": "account-suspended"})
    desk.submit("outcome-reason", "terms of service")
    # The legal hold and the evidence are a supervisor's: not offered to an analyst.
    assert absent(desk.driver, "#legal-hold-reason")
    desk.get("sam", f"/tickets/{tid}")
    desk.submit("legal-hold-reason", "court order 2026/17")
    desk.move(tid, "evidence-issued")
    main = desk.main()
    for line in (
        "evidence-issued",
        "LKA Example, Officer D, ref LKA-2026-9",
        "example-hotline, ref HL-REF-77",
        "at hosting evidence store, shelf 4 by host admin K",
        "account-suspended: terms of service",
        "DE",
    ):
        assert line in main, line
    desk.shots.shot(desk.driver, "case-police")
    old = desk.driver.find_element(By.TAG_NAME, "html")
    desk.driver.find_element(By.XPATH, "//button[.='Export evidence bundle']").click()
    bundle = json.loads(desk.downloaded(f"evidence-ticket-{tid}.json").read_text())
    assert verify_bundle(bundle) == []
    assert desk.driver.find_element(By.TAG_NAME, "html") == old  # a download, not a page
    audit = desk.observe("/v1/audit?limit=1000")["items"]
    assert ("evidence.export", "sam", f"ticket:{tid}") in {
        (a["action"], a["actor"], a["subject"]) for a in audit
    }
    assert_hosting_only(desk.peers, tid, "POL-2026-0042", HOSTING, SHOP_CONTACT)
    check_log(desk.driver, LISTED_HOSTS)


def _public_report(desk: Desk, url: str) -> str:
    """The public's part: the real report page in the browser; the reference given."""
    driver = desk.driver
    driver.get(f"{desk.pages}/report")
    driver.find_element(By.ID, "urls").send_keys(url)
    Select(driver.find_element(By.ID, "category")).select_by_index(1)
    Select(driver.find_element(By.ID, "came_across")).select_by_value("web")
    driver.find_element(By.ID, "live-no").click()
    submit(driver, "submit")
    return str(driver.find_element(By.ID, "reference").text)


def test_a_public_report_triaged_and_found_legal(desk: Desk) -> None:
    page = "http://report.hosted.test/photo.html"
    reference = _public_report(desk, page)
    assert re.fullmatch(r"R-[0-9A-Z]{5}-[0-9A-Z]{5}", reference)

    desk.get("ana", "/queue")
    desk.driver.find_element(By.LINK_TEXT, reference).click()
    desk.check_masked()
    assert "hxxp://report[.]hosted[.]test/[path #" in desk.main()
    assert desk.driver.find_element(By.ID, "intake-state").text == "pending"
    desk.shots.shot(desk.driver, "intake-report")
    desk.submit("intake-accept", "looks real")
    assert desk.driver.find_element(By.ID, "intake-state").text == "accepted"
    (decision,) = desk.decision_ids()
    desk.get("ana", f"/decisions/{decision}")
    assert desk.driver.find_element(By.ID, "status").text == "pending-approval"
    desk.get("sam", f"/decisions/{decision}")
    desk.submit("approve-reason", "confirmed")

    tid = desk.ticket(reference)["id"]
    desk.get("ana", f"/tickets/{tid}")
    assert "cust-shop" in desk.main()
    desk.move(tid, "under-review")
    desk.move(tid, "found-legal")
    assert "a second person confirms" in desk.main()
    rule = desk.driver.find_element(By.ID, "found-legal").text
    assert "proposed by ana" in rule
    assert "cannot confirm" in rule
    assert absent(desk.driver, "#to-found-legal")
    desk.shots.shot(desk.driver, "case-found-legal")
    assert "proxy stop-page" in desk.lookup("ana", page)

    desk.get("abe", f"/tickets/{tid}")
    assert "cannot confirm" not in desk.driver.find_element(By.ID, "found-legal").text
    desk.move(tid, "found-legal")
    assert desk.driver.find_element(By.ID, "state").text == "found-legal"
    desk.get("abe", f"/decisions/{decision}")
    assert desk.driver.find_element(By.ID, "status").text == "revoked"
    assert "proxy pass" in desk.lookup("abe", page)
    restore = wait_for(
        "the found-legal notice",
        lambda: [m for m in desk.mails(tid) if "Found legal" in str(m.message["Subject"])],
        timeout=30,
    )
    assert SHOP_CONTACT in restore[0].recipients
    desk.move(tid, "restored")
    assert desk.driver.find_element(By.ID, "state").text == "restored"
    check_log(desk.driver, LISTED_HOSTS)


def _appeal_message(desk: Desk, url: str) -> str:
    """What the Squid helper answers for ``url`` once the proxy index has it: the stop
    page's ``source`` (label and the opaque appeal reference)."""
    helper = [sys.executable, "-m", "edgeagent.proxy.squid_helper", "--index", str(desk.index)]
    helper += ["--appeal-key", str(desk.index.parent / "appeal-ref.key")]  # beside the index

    def answer() -> str | None:
        done = subprocess.run(
            helper, input=f"7 {url} GET\n", capture_output=True, text=True, timeout=30, check=True
        )
        listed = re.fullmatch(r"7 OK message=(\S+\.[a-z2-7]{24})\n", done.stdout)
        return listed.group(1) if listed else None

    return str(wait_for("the URL in the proxy index", answer, timeout=30))


def test_an_appeal_from_the_stop_page(desk: Desk) -> None:
    page = "http://away.hosted.test/gallery/9.html"
    desk.file_notice("ana", "POL-2026-0051", "law-enforcement", page)
    message = _appeal_message(desk, page)

    # The owner of the page follows the stop page's link and appeals.
    driver = desk.driver
    driver.get(f"{desk.stop}/blocked?source={message}")
    driver.find_element(By.ID, "appeal").click()
    driver.find_element(By.ID, "statement").send_keys("my own photos")
    assert "ref=" in driver.current_url
    driver.find_element(By.ID, "contact").send_keys(APPELLANT)
    submit(driver, "submit")
    appeal = driver.find_element(By.ID, "reference").text
    assert re.fullmatch(r"A-[0-9A-Z]{5}-[0-9A-Z]{5}", appeal)

    desk.get("ana", "/queue")
    desk.driver.find_element(By.LINK_TEXT, appeal).click()
    assert "my own photos" in desk.main()
    # The block appealed, masked, with its case: what the supervisor decides on.
    appealed = desk.driver.find_element(By.XPATH, "//caption[starts-with(., 'The block')]/..")
    assert "hxxp://away[.]hosted[.]test/[path #" in appealed.text
    assert "POL-2026-0051" in appealed.text
    assert absent(desk.driver, "#intake-revoke")  # a supervisor's
    item = desk.driver.current_url
    desk.as_("sam")
    desk.driver.get(item)
    desk.check_masked()
    desk.shots.shot(desk.driver, "intake-appeal")
    desk.submit("intake-revoke", "appeal upheld on review")
    assert desk.driver.find_element(By.ID, "intake-state").text == "revoked"
    assert "proxy pass" in desk.lookup("ana", page)
    told = wait_for(
        "the appellant's answer",
        lambda: [m for m in desk.mails() if m.recipients == [APPELLANT]],
        timeout=30,
    )
    assert appeal in str(told[0].message["Subject"])
    assert "POL-2026-0051" not in told[0].raw

    # An appeal against the police list's domain needs an allow: a second person's.
    desk.file_notice("ana", "APPEAL-3", "internal", "host www.worst.example", **{"action": "allow"})
    (decision,) = desk.decision_ids()
    assert "DNS block" in desk.lookup("ana", "www.worst.example")
    desk.get("sam", f"/decisions/{decision}")
    desk.submit("approve-reason", "appeal upheld")
    assert "DNS passthru" in desk.lookup("ana", "www.worst.example")
    assert "DNS block" in desk.lookup("ana", "other.worst.example")
    check_log(desk.driver, LISTED_HOSTS)


def test_the_monthly_report_and_its_csv(desk: Desk) -> None:
    desk.get("sam", "/reports")
    desk.fill({"days": "31"})
    desk.submit("days")
    rows = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in desk.driver.find_elements(By.CSS_SELECTOR, "main table tbody tr")
    ]
    shown = {row[0]: row[1:3] for row in rows}
    # The cases of this module's notices (the police notice: received two hours ago).
    assert {"all", "hotline", "law-enforcement", "public"} <= set(shown)
    desk.shots.shot(desk.driver, "reports-month")
    desk.driver.find_element(By.LINK_TEXT, "Export as CSV").click()
    text = desk.downloaded("takedown-report.csv").read_text(encoding="utf-8")
    table = list(csv.reader(text.splitlines()))
    assert tuple(table[0]) == CSV_COLUMNS
    assert {row[0]: row[1:3] for row in table[1:]} == shown
    check_log(desk.driver, LISTED_HOSTS)
