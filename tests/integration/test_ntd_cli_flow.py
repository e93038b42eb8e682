"""A day at the NTD desk with the ``edgeagent`` CLI alone, against a running daemon.

A police notice, a hotline notice, a public report and an appeal, each from start to
finish with nothing but ``edgeagent`` commands: tokens made and revoked, notices with many
URLs in one call, four-eyes approvals, tickets listed, shown, assigned, commented, held,
authorised, referred, preserved and found legal, report and appeal outcomes, and every
step on the audit chain under the name of whoever did it.

The daemon runs for real (``edgeagent run``) with a local-file feed (a police "worst of"
list), the proxy index (for the Squid helper's appeal references), the public report and
appeal pages, and takedown on: customers from a CSV export, hosts resolved by a real
Unbound on loopback, notices to a real SMTP sink (aiosmtpd) and a webhook sink checking
the HMAC (:mod:`tests.support.segment_peers`). The public's part (a report, an appeal)
goes through the pages over HTTP, as a browser sends it; what the test reads besides the
CLI's output (mails, webhooks, the audit rows) is only looked at, never changed.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgeagent.takedown.evidence import verify_bundle
from tests.support.agent import AGENT, http_json, running_agent
from tests.support.desk_config import HOSTING, OWN, desk_config
from tests.support.ports import free_port
from tests.support.segment_peers import (
    ReceivedMail,
    assert_hosting_only,
    received_mails,
    running,
)

pytestmark = pytest.mark.integration

SHOP_CONTACT = "noc@cust-shop.example"
APPELLANT = "owner@away.example"
POLICE_REF = "POL-2026-0042"
CUSTOMERS = f"""prefix,customer_id,service_id,contact
{OWN}.0/28,cust-shop,web-1,{SHOP_CONTACT}
{OWN}.16/28,cust-blog,web-3,noc@cust-blog.example
{OWN}.128/25,cust-bulk,web-2,noc@cust-bulk.example
"""
BULK = 1000
RECORDS = [
    ("shop.hosted.test", "A", f"{OWN}.10"),
    ("blog.hosted.test", "A", f"{OWN}.20"),
    ("report.hosted.test", "A", f"{OWN}.11"),
    ("away.hosted.test", "A", "203.0.113.50"),  # not own space: no ticket
    *[(f"b{i:04d}.hosted.test", "A", f"{OWN}.{128 + i % 120}") for i in range(BULK)],
]
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # the host's figure


@dataclass
class Desk:
    """The daemon's config, API and pages, one token file per person, and the sinks."""

    config: Path
    api: str
    pages: str
    index: Path
    state: Path
    peers: Path
    tokens: dict[str, Path]

    def run(self, *args: str, who: str | None = None) -> subprocess.CompletedProcess[str]:
        """``edgeagent ARGS`` as ``who`` (their token file), or as the service user."""
        extra = ["--token-file", str(self.tokens[who])] if who else []
        env = {k: v for k, v in os.environ.items() if k != "EDGEAGENT_TOKEN"}
        return subprocess.run(
            [AGENT, *args, *extra, "-c", str(self.config)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )

    def ok(self, *args: str, who: str | None = None) -> str:
        done = self.run(*args, who=who)
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
        return done.stdout

    def refused(self, *args: str, who: str | None = None) -> str:
        """A command the rules refuse (exit 3); its message."""
        done = self.run(*args, who=who)
        assert done.returncode == 3, f"{args}: {done.stdout}{done.stderr}"
        return done.stderr

    def wait(self, check: Any, what: str, seconds: float = 30) -> Any:
        deadline = time.monotonic() + seconds
        while True:
            found = check()
            if found:
                return found
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    def observe(self, path: str) -> Any:
        """A read of the API, for the test to wait on (the desk's work goes through the
        CLI; polling with it would only start Python again and again)."""
        secret = self.tokens["sam"].read_text(encoding="utf-8").strip()
        status, body = http_json("GET", self.api + path, secret)
        assert status == 200, body
        return body

    def tickets(self, reference: str, ready: Any = lambda t: t["last_notified_at"]) -> list[Any]:
        """The case's tickets from ``edgeagent ticket list``, once the API shows them
        ``ready`` (by default: the first notice went out)."""
        self.wait(
            lambda: [
                t
                for t in self.observe("/v1/tickets?limit=1000")["items"]
                if t["reference"] == reference and ready(t)
            ],
            f"the ticket of {reference}",
            seconds=60,
        )
        found = json.loads(self.ok("ticket", "list", "--limit", "1000", "--json"))
        return [t for t in found if t["reference"] == reference]

    def ticket(self, reference: str) -> dict[str, Any]:
        """The case's one ticket, once its first notice went out."""
        (t,) = self.tickets(reference)
        return dict(t)

    def move(self, tid: int, state: str, who: str, *options: str) -> str:
        return self.ok(
            "ticket", "transition", str(tid), state, "--reason", "desk", *options, who=who
        )

    def mails(self, tid: int | None = None) -> list[ReceivedMail]:
        found = received_mails(self.peers)
        return [m for m in found if tid is None or m.ticket == str(tid)]

    def audit(self) -> list[dict[str, Any]]:
        """Every audit row, through the API (pages of rows from a time on): read only."""
        rows: dict[int, dict[str, Any]] = {}
        since = ""
        while True:
            query = "?limit=1000" + (f"&since={urllib.parse.quote(since)}" if since else "")
            page = self.observe("/v1/audit" + query)["items"]
            known = len(rows)
            rows.update((r["id"], r) for r in page)
            assert len(rows) > known or not page, "a full page of rows with one time"
            if len(page) < 1000:
                return [rows[i] for i in sorted(rows)]
            since = page[-1]["at"]

    def submit(self, path: str, fields: dict[str, str]) -> str:
        """What a visitor's browser does on a page: fetch the form, post it; the answer."""
        browser = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        query = f"?ref={fields['ref']}" if "ref" in fields else ""
        with browser.open(self.pages + path + query, timeout=10) as page:
            form = page.read().decode()
        token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', form)
        assert token, form
        data = urllib.parse.urlencode({"csrf_token": token.group(1), **fields}).encode()
        with browser.open(self.pages + path, data=data, timeout=10) as answer:
            assert answer.status == 200
            return str(answer.read().decode())

    def appeal_ref(self, url: str) -> str:
        """The opaque reference the stop page's appeal link carries for ``url``, as the
        Squid helper answers it from the daemon's proxy index (once the index has it)."""
        helper = [sys.executable, "-m", "edgeagent.proxy.squid_helper", "--index", str(self.index)]
        helper += ["--appeal-key", str(self.index.parent / "appeal-ref.key")]

        def answer() -> str | None:
            done = subprocess.run(
                helper,
                input=f"7 {url} GET\n",
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            listed = re.fullmatch(r"7 OK message=\S+\.([a-z2-7]{24})\n", done.stdout)
            return listed.group(1) if listed else None

        return str(self.wait(answer, "the URL in the proxy index"))


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    tmp = tmp_path_factory.mktemp("ntd-desk")
    secret = secrets.token_hex(32)
    secret_file = tmp / "webhook-hmac"
    secret_file.write_text(secret, encoding="utf-8")
    with running(tmp / "peers", RECORDS, secret.encode()) as peers:
        ports = {name: free_port(udp=False) for name in ("api", "metrics", "stop", "pages")}
        config = desk_config(tmp, peers, ports, secret_file, CUSTOMERS)
        desk = Desk(
            config,
            f"http://127.0.0.1:{ports['api']}",
            f"http://127.0.0.1:{ports['pages']}",
            tmp / "proxy" / "proxy-index.bin",
            tmp / "state",
            tmp / "peers",
            {},
        )
        # The first admin token comes from the service user; every other from the admin.
        for role, name in (
            ("admin", "ada"),
            ("analyst", "ana"),
            ("analyst", "abe"),
            ("supervisor", "sam"),
            ("supervisor", "sue"),
        ):
            out = desk.ok(
                "token",
                "create",
                "--role",
                role,
                "--name",
                name,
                who="ada" if desk.tokens else None,
            )
            path = tmp / f"{name}.token"
            path.write_text(out.splitlines()[-1] + "\n", encoding="utf-8")
            path.chmod(0o600)
            desk.tokens[name] = path
        with running_agent(config, ports["metrics"], tmp / "daemon.log"):
            # The police list is synced at start.
            desk.wait(
                lambda: desk.observe("/v1/lookup?target=worst.example")["dns"] == "block",
                "the police list",
            )
            yield desk
        log = (tmp / "daemon.log").read_text(encoding="utf-8")
        for token in desk.tokens.values():
            assert token.read_text().strip() not in log
        assert "shop.hosted.test" not in log  # entries never in logs


def test_a_police_notice_from_notice_to_evidence(desk: Desk, tmp_path: Path) -> None:
    """Held from the start, authorisation before isolation, referral and preservation
    on record: the customer hears nothing, the police reference stays in the team."""
    notice = tmp_path / "police.txt"
    notice.write_text(
        f"# {POLICE_REF}, by e-mail from the police\n"
        "http://shop.hosted.test/listed/1.html\n"
        "http://shop.hosted.test/listed/2.html\n"
        "http://away.hosted.test/listed.html\n"
        "not a url\n",
        encoding="utf-8",
    )
    add = desk.run(
        "decision", "add", "-f", str(notice), "--source", "law-enforcement",
        "--reference", POLICE_REF, "--reason", "police notice", "--jurisdiction", "DE",
        "--received", "2026-03-02T08:15", who="ana",
    )  # fmt: skip
    assert add.returncode == 3, add.stderr  # one line refused
    assert "line 2: accepted" in add.stdout
    assert "line 5: refused" in add.stdout
    assert f"notice {POLICE_REF}: 3 accepted, 0 pending approval, 1 refused" in add.stdout

    listed = desk.ok("decision", "list", "--reference", POLICE_REF, "--json", who="ana")
    decisions = json.loads(listed)["items"]
    assert len(decisions) == 3
    assert decisions[0]["notice_received_at"] == "2026-03-02T07:15:00+00:00"  # Berlin time
    assert {(d["hold"], d["jurisdiction"]) for d in decisions} == {(True, "DE")}
    found = desk.ok("decision", "list", "--target", "shop.hosted.test", who="abe")
    assert len(found.splitlines()) == 2
    assert "proxy: stop-page" in desk.ok(
        "lookup", "http://shop.hosted.test/listed/1.html", who="ana"
    )

    ticket = desk.ticket(POLICE_REF)
    tid = ticket["id"]
    assert (ticket["customer_id"], len(ticket["urls"]), ticket["hold"]) == ("cust-shop", 2, True)
    assert ticket["jurisdiction"] == "DE"
    shown = desk.ok("ticket", "show", str(tid))
    assert "[HOLD" in shown.splitlines()[0]
    assert f"{POLICE_REF} (law-enforcement, DE)" in shown
    before = desk.mails(tid)  # the notice (and any escalation: a notice of March is overdue)
    assert "PRESERVE, DO NOT ALTER, AWAIT INSTRUCTION" in before[0].raw
    assert not [m for m in before if "Isolate the listed content" in m.raw]

    desk.ok("ticket", "assign", str(tid), "abe", "--reason", "police desk", who="ana")
    desk.ok("ticket", "comment", str(tid), "police asked for a call before isolation", who="abe")
    desk.move(tid, "under-review", "abe")
    early = ("ticket", "transition", str(tid), "temporarily-removed", "--reason", "x")
    assert "authorisation" in desk.refused(*early, who="abe")
    desk.ok(
        "ticket", "authorise", str(tid), "--by", "LKA Example, Officer D",
        "--reference", "LKA-2026-9", "--at", "2026-03-02T14:30", who="abe",
    )  # fmt: skip
    isolate = desk.wait(
        lambda: [
            m for m in desk.mails(tid) if "Instruction to isolate" in str(m.message["Subject"])
        ],
        "the instruction to isolate",
    )
    assert "Isolate the listed content" in isolate[0].raw
    desk.move(tid, "temporarily-removed", "abe")

    referred = ("ticket", "transition", str(tid), "referred", "--reason", "x")
    assert "referral: required" in desk.refused(*referred, who="abe")
    referral = ("--referral-ref", "HL-REF-77", "--referred-at", "2026-03-02T16:00")
    unknown = desk.refused(*referred, "--referred-to", "nobody", *referral, who="abe")
    assert "referral.recipient" in unknown
    desk.move(tid, "referred", "abe", "--referred-to", "example-hotline", *referral)
    desk.move(tid, "confirmed-illegal", "abe")
    preserved = ("ticket", "transition", str(tid), "removed-and-preserved", "--reason", "x")
    assert "preservation: required" in desk.refused(*preserved, who="abe")
    desk.move(
        tid, "removed-and-preserved", "abe",
        "--preserved-where", "hosting evidence store, shelf 4", "--preserved-by", "host admin K",
        "--preserved-at", "2026-03-02T17:00", "--content-sha256", SHA,
    )  # fmt: skip
    desk.ok(
        "ticket", "outcome", str(tid), "account-suspended", "--reason", "terms of service",
        who="abe",
    )  # fmt: skip
    desk.refused("ticket", "legal-hold", str(tid), "--reason", "court order", who="abe")
    desk.ok("ticket", "legal-hold", str(tid), "--reason", "court order 2026/17", who="sam")
    desk.move(tid, "evidence-issued", "abe")
    bundle = tmp_path / "evidence.json"
    desk.refused("ticket", "evidence", str(tid), "-o", str(bundle), who="abe")
    desk.ok("ticket", "evidence", str(tid), "-o", str(bundle), who="sam")
    assert (bundle.stat().st_mode & 0o777, verify_bundle(json.loads(bundle.read_text()))) == (
        0o600,
        [],
    )

    shown = desk.ok("ticket", "show", str(tid))
    assert re.match(rf"ticket {tid}: evidence-issued  \[HOLD, LEGAL-HOLD", shown)
    assert "authorisation   LKA Example, Officer D, ref LKA-2026-9, 2026-03-02 14:30 CET" in shown
    assert "referred to     example-hotline, ref HL-REF-77" in shown
    assert "preserved       at hosting evidence store, shelf 4 by host admin K" in shown
    assert "outcome         account-suspended: terms of service" in shown
    assert_hosting_only(desk.peers, tid, POLICE_REF, HOSTING, SHOP_CONTACT)


def test_a_hotline_notice_with_a_second_person(desk: Desk) -> None:
    add = desk.ok(
        "decision", "add", "192.0.2.66", "--scope", "ip", "--source", "hotline",
        "--reference", "HOT-77", "--reason", "hotline notice", who="abe",
    )  # fmt: skip
    assert "pending, decision" in add
    decision = add.split("decision ")[1].split(":")[0]
    plan = desk.ok("plan", who="abe")
    assert f"#{decision} block ip 192.0.2.66 (hotline, ref HOT-77, by abe)" in plan
    assert "supervisor" in desk.refused("decision", "approve", decision, who="ana")
    approved = desk.ok("decision", "approve", decision, "--reason", "checked", who="sue")
    assert "approved by sue" in approved
    shown = desk.ok("decision", "show", decision, who="abe")
    assert "active" in shown
    assert "by sue: checked" in shown

    # The same notice's URL on a customer's server: not held, so the customer is told.
    desk.ok(
        "decision", "add", "http://blog.hosted.test/gallery/3.html", "--source", "hotline",
        "--reference", "HOT-77", "--reason", "hotline notice", who="abe",
    )  # fmt: skip
    ticket = desk.ticket("HOT-77")
    tid = ticket["id"]
    assert (ticket["customer_id"], ticket["hold"]) == ("cust-blog", False)
    assert "noc@cust-blog.example" in desk.mails(tid)[0].recipients
    desk.move(tid, "under-review", "ana")
    desk.move(tid, "temporarily-removed", "ana")
    desk.move(
        tid, "referred", "ana", "--referred-to", "example-agency",
        "--referral-ref", "AG-5", "--referred-at", "2026-03-03",
    )  # fmt: skip
    # The agency asks for silence: a supervisor holds the case from now on.
    desk.refused("ticket", "hold", str(tid), "--reason", "agency request", who="ana")
    held = desk.ok("ticket", "hold", str(tid), "--reason", "agency request AG-5", who="sue")
    assert "hold recorded as sue" in held
    shown = desk.ok("ticket", "show", str(tid), "--json")
    body = json.loads(shown)
    assert (body["state"], body["hold"]) == ("referred", True)
    assert body["referral"]["at"] == "2026-03-02T23:00:00+00:00"  # midnight in Berlin
    assert body["referral"]["recorded_by"] == "ana"


def test_a_public_report_reviewed_and_found_legal(desk: Desk) -> None:
    report = {
        "urls": "http://report.hosted.test/photo.html",
        "category": "Sexualised images of a child",
        "came_across": "web",
        "live_video": "no",
        "discovered_at": "2026-03-02T09:00",
        "description": "",
        "anonymous": "yes",
        "contact": "",
    }
    answer = desk.submit("/report", report)
    reference = re.search(r"\b(R-[0-9A-Z]{5}-[0-9A-Z]{5})\b", answer)
    assert reference, answer
    rpt = reference.group(1)
    cat = desk.submit("/report", {**report, "urls": "http://away.hosted.test/cat.jpg"})
    junk = re.search(r"\b(R-[0-9A-Z]{5}-[0-9A-Z]{5})\b", cat)
    assert junk

    queue = desk.ok("intake", "list", "--state", "pending", "--channel", "public-report")
    ids = {line.split()[1]: line.split()[0] for line in queue.splitlines()}
    item = json.loads(desk.ok("intake", "show", ids[rpt]))
    assert item["content"]["urls"] == ["http://report.hosted.test/photo.html"]
    rejected = desk.ok("intake", "reject", ids[junk.group(1)], "--reason", "a cat", who="abe")
    assert "is now rejected" in rejected
    accepted = desk.ok("intake", "accept", ids[rpt], "--reason", "looks real", who="sam")
    assert "is now accepted" in accepted
    decision = re.search(r"decision (\d+): block .* \(pending-approval\)", accepted)
    assert decision, accepted
    assert "four-eyes" in desk.refused("decision", "approve", decision.group(1), who="sam")
    desk.ok("decision", "approve", decision.group(1), "--reason", "confirmed", who="sue")

    ticket = desk.ticket(rpt)
    tid = ticket["id"]
    assert (ticket["source"], ticket["customer_id"]) == ("public", "cust-shop")
    desk.move(tid, "under-review", "ana")
    proposed = desk.move(tid, "found-legal", "ana")
    assert "a second person must confirm it" in proposed
    assert "a second person" in desk.refused(
        "ticket", "transition", str(tid), "found-legal", "--reason", "again", who="ana"
    )
    assert "proxy: stop-page" in desk.ok(
        "lookup", "http://report.hosted.test/photo.html", who="ana"
    )
    confirmed = desk.move(tid, "found-legal", "abe")
    assert f"ticket {tid}: found-legal" in confirmed
    assert "revoked" in desk.ok("decision", "show", decision.group(1), who="ana")
    assert "proxy: pass" in desk.ok("lookup", "http://report.hosted.test/photo.html", who="ana")
    restore = desk.wait(
        lambda: [m for m in desk.mails(tid) if "Found legal" in str(m.message["Subject"])],
        "the found-legal notice",
    )
    assert "may be restored" in " ".join(restore[0].raw.split())
    desk.move(tid, "restored", "abe")


def test_appeals_from_the_stop_page(desk: Desk) -> None:
    """The owner of a page a police notice blocked appeals through the stop page's link;
    a supervisor decides with the CLI. An appeal against the police list's domain needs
    an allow, which waits for a second person."""
    page = "http://away.hosted.test/gallery/9.html"
    desk.ok(
        "decision", "add", page, "--source", "law-enforcement", "--reference", "POL-2026-0051",
        "--reason", "police notice", who="ana",
    )  # fmt: skip
    assert "proxy: stop-page" in desk.ok("lookup", page, who="ana")
    ref = desk.appeal_ref(page)
    answer = desk.submit(
        "/appeal", {"ref": ref, "statement": "my own photos", "contact": APPELLANT}
    )
    appeal = re.search(r"\b(A-[0-9A-Z]{5}-[0-9A-Z]{5})\b", answer)
    assert appeal, answer
    queue = desk.ok("intake", "list", "--channel", "appeal")
    (line,) = [x for x in queue.splitlines() if appeal.group(1) in x]
    item = line.split()[0]
    assert "supervisor" in desk.refused("intake", "revoke", item, "--reason", "x", who="ana")
    revoked = desk.ok("intake", "revoke", item, "--reason", "appeal upheld on review", who="sue")
    assert "is now revoked" in revoked
    assert "proxy: pass" in desk.ok("lookup", page, who="ana")
    told = desk.wait(
        lambda: [m for m in desk.mails() if m.recipients == [APPELLANT]], "the appellant's answer"
    )
    assert appeal.group(1) in str(told[0].message["Subject"])
    assert "POL-2026-0051" not in told[0].raw

    # The site owner of www.worst.example appeals; the police list covers the domain.
    add = desk.ok(
        "decision", "add", "www.worst.example", "--scope", "host", "--action", "allow",
        "--source", "internal", "--reference", "APPEAL-3", "--reason", "appeal upheld",
        who="ana",
    )  # fmt: skip
    assert "pending, decision" in add  # it would lift a police list's block
    decision = add.split("decision ")[1].split(":")[0]
    assert "DNS:   block" in desk.ok("lookup", "www.worst.example", who="ana")
    # A supervisor on the agent's host approves as the service user, named by --actor.
    approved = desk.ok("decision", "approve", decision, "--actor", "sam")
    assert "approved by sam" in approved
    assert "DNS:   passthru" in desk.ok("lookup", "www.worst.example", who="ana")
    assert "DNS:   block" in desk.ok("lookup", "other.worst.example", who="ana")


def test_a_notice_of_1000_urls_in_one_call(desk: Desk, tmp_path: Path) -> None:
    notice = tmp_path / "bulk.txt"
    notice.write_text(
        "".join(f"http://b{i:04d}.hosted.test/listed/{i}.html\n" for i in range(BULK)),
        encoding="utf-8",
    )
    add = desk.ok(
        "decision", "add", "-f", str(notice), "--source", "law-enforcement",
        "--reference", "POL-BULK-1", "--reason", "police notice", "--json", who="ana",
    )  # fmt: skip
    results = json.loads(add)["results"]
    assert len(results) == BULK
    assert {r["outcome"] for r in results} == {"accepted"}
    tickets = desk.tickets("POL-BULK-1", lambda t: len(t["urls"]) == BULK)
    assert len(tickets[0]["urls"]) == BULK
    assert (tickets[0]["customer_id"], tickets[0]["hold"]) == ("cust-bulk", True)
    page = json.loads(
        desk.ok(
            "decision", "list", "--reference", "POL-BULK-1", "--limit", "1000", "--json", who="abe"
        )
    )
    assert (len(page["items"]), page["next_offset"]) == (BULK, None)
    assert_hosting_only(desk.peers, tickets[0]["id"], "POL-BULK-1", HOSTING, SHOP_CONTACT)


def test_tokens_and_the_audit_chain(desk: Desk) -> None:
    listed = desk.ok("token", "list", who="ada")
    assert [line.split()[1] for line in listed.splitlines()] == ["ada", "ana", "abe", "sam", "sue"]
    assert desk.run("token", "list", who="sam").returncode == 3
    abe = next(line.split()[0] for line in listed.splitlines() if " abe " in line)
    desk.ok("token", "revoke", abe, "--reason", "left the team", who="ada")
    assert "token revoked" in desk.refused("decision", "list", who="abe")
    assert "token revoked" in desk.refused("ticket", "comment", "1", "gone", who="abe")

    assert "audit chain OK" in desk.ok("audit", "verify")
    rows = desk.audit()
    steps = {(r["action"], r["actor"]) for r in rows}
    for step in (
        ("token.create", "service-user:" + _account()),
        ("token.create", "ada"),
        ("decision.notice", "ana"),
        ("decision.approve", "sue"),
        ("decision.approve", "sam"),
        ("ticket.open", "system"),
        ("ticket.assign", "ana"),
        ("ticket.comment", "abe"),
        ("ticket.transition", "abe"),
        ("ticket.authorise", "abe"),
        ("ticket.outcome", "abe"),
        ("ticket.legal-hold", "sam"),
        ("evidence.export", "sam"),
        ("ticket.hold", "sue"),
        ("ticket.found-legal-proposed", "ana"),
        ("ticket.revoke-blocks", "abe"),
        ("intake.receive", "intake"),
        ("intake.accepted", "sam"),
        ("intake.rejected", "abe"),
        ("intake.revoked", "sue"),
        ("token.list", "ada"),
        ("token.revoke", "ada"),
        ("lookup", "ana"),
    ):
        assert step in steps, step
    assert not [r for r in rows if r["actor"].startswith("cli:")]
    dumped = json.dumps(rows)
    assert "shop.hosted.test" not in dumped  # entries by short hash only
    assert "LKA-2026-9" not in dumped  # the authorisation's reference too


def _account() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
