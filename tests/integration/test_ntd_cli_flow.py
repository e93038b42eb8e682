"""A day at the NTD desk with the ``edgeagent`` CLI alone, against a running daemon.

A police notice, a hotline notice, a public report and an appeal, each from start to
finish: tokens made and revoked, notices with many URLs in one call, four-eyes approvals,
revocation, and every step on the audit chain under the name of whoever did it. The
daemon runs for real (``edgeagent run``) with a local-file feed (a police "worst of" list),
takedown on (customers from a CSV export, hosts resolved by a real Unbound on loopback).
Ticket commands are not in the CLI yet: tickets are checked through the API.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgeagent.lab.resolvers import unbound_server
from tests.support.agent import AGENT, http_json, running_agent
from tests.support.binaries import require_binary
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

OWN = "198.51.100"  # the ISP's own space here; customers below
CUSTOMERS = f"""prefix,customer_id,service_id,contact
{OWN}.0/28,cust-shop,web-1,noc@cust-shop.example
{OWN}.128/25,cust-bulk,web-2,noc@cust-bulk.example
"""
BULK = 1000
RECORDS = [
    ("shop.hosted.test", "A", f"{OWN}.10"),
    ("report.hosted.test", "A", f"{OWN}.11"),
    ("away.hosted.test", "A", "203.0.113.50"),  # not own space: no ticket
    *[(f"b{i:04d}.hosted.test", "A", f"{OWN}.{128 + i % 120}") for i in range(BULK)],
]


@dataclass
class Desk:
    """The daemon's config and API, and one token file per person."""

    config: Path
    api: str
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

    def api_get(self, path: str, who: str) -> Any:
        secret = self.tokens[who].read_text(encoding="utf-8").strip()
        status, body = http_json("GET", self.api + path, secret)
        assert status == 200, body
        return body

    def wait(self, check: Any, what: str, seconds: float = 30) -> Any:
        deadline = time.monotonic() + seconds
        while True:
            found = check()
            if found:
                return found
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    def audit(self) -> list[dict[str, Any]]:
        """Every audit row, through the API (pages of rows from a time on)."""
        rows: dict[int, dict[str, Any]] = {}
        since = ""
        while True:
            query = "?limit=1000" + (f"&since={urllib.parse.quote(since)}" if since else "")
            page = self.api_get("/v1/audit" + query, "sam")["items"]
            known = len(rows)
            rows.update((r["id"], r) for r in page)
            assert len(rows) > known or not page, "a full page of rows with one time"
            if len(page) < 1000:
                return [rows[i] for i in sorted(rows)]
            since = page[-1]["at"]

    def tickets(self, reference: str) -> list[dict[str, Any]]:
        items = self.api_get("/v1/tickets?limit=1000", "ana")["items"]
        return [t for t in items if t["reference"] == reference]


def _config(tmp: Path, dns_port: int, api: int, metrics: int) -> Path:
    (tmp / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    (tmp / "police-list.txt").write_text("worst.example\n", encoding="utf-8")
    config = tmp / "edgeagent.toml"
    config.write_text(
        f"""
[agent]
state_dir = "{tmp / "state"}"
log_format = "json"
time_zone = "Europe/Berlin"
[api]
port = {api}
[metrics]
port = {metrics}
[guard]
change_floor = 0
[feeds.police]
kind = "domain-list"
path = "{tmp / "police-list.txt"}"
source = "law-enforcement"
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
    return config


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    require_binary("unbound")
    tmp = tmp_path_factory.mktemp("ntd-desk")
    api, metrics = free_port(udp=False), free_port(udp=False)
    with unbound_server(RECORDS) as (_, dns_port):
        config = _config(tmp, dns_port, api, metrics)
        desk = Desk(config, f"http://127.0.0.1:{api}", {})
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
        with running_agent(config, metrics, tmp / "daemon.log"):
            # The police list is synced at start.
            desk.wait(
                lambda: "DNS:   block" in desk.ok("lookup", "worst.example", who="ana"),
                "the police list",
            )
            yield desk
        log = (tmp / "daemon.log").read_text(encoding="utf-8")
        for secret in desk.tokens.values():
            assert secret.read_text().strip() not in log
        assert "shop.hosted.test" not in log  # entries never in logs


def test_a_police_notice(desk: Desk, tmp_path: Path) -> None:
    notice = tmp_path / "police.txt"
    notice.write_text(
        "# POL-2026-0042, by e-mail from the police\n"
        "http://shop.hosted.test/listed/1.html\n"
        "http://shop.hosted.test/listed/2.html\n"
        "http://away.hosted.test/listed.html\n"
        "not a url\n",
        encoding="utf-8",
    )
    add = desk.run(
        "decision", "add", "-f", str(notice), "--source", "law-enforcement",
        "--reference", "POL-2026-0042", "--reason", "police notice",
        "--received", "2026-03-02T08:15", who="ana",
    )  # fmt: skip
    assert add.returncode == 3, add.stderr  # one line refused
    assert "line 2: accepted" in add.stdout
    assert "line 5: refused" in add.stdout
    assert "notice POL-2026-0042: 3 accepted, 0 pending approval, 1 refused" in add.stdout

    listed = desk.ok("decision", "list", "--reference", "POL-2026-0042", "--json", who="ana")
    decisions = json.loads(listed)["items"]
    assert len(decisions) == 3
    assert decisions[0]["notice_received_at"] == "2026-03-02T07:15:00+00:00"  # Berlin time
    found = desk.ok("decision", "list", "--target", "shop.hosted.test", who="abe")
    assert len(found.splitlines()) == 2
    treated = desk.ok("lookup", "http://shop.hosted.test/listed/1.html", who="ana")
    assert "proxy: stop-page" in treated

    tickets = desk.wait(lambda: desk.tickets("POL-2026-0042"), "the police notice's ticket")
    assert [(t["customer_id"], len(t["urls"])) for t in tickets] == [("cust-shop", 2)]

    # The appeal against it is upheld: a supervisor revokes the whole case.
    refused = desk.run("decision", "revoke", str(decisions[0]["id"]), "--reason", "x", who="ana")
    assert refused.returncode == 3
    assert "403" in refused.stderr
    for d in decisions:
        out = desk.ok("decision", "revoke", str(d["id"]), "--reason", "appeal upheld", who="sam")
        assert f"#{d['id']} revoked" in out
    assert "proxy: pass" in desk.ok("lookup", "http://shop.hosted.test/listed/1.html", who="ana")


def test_a_hotline_notice_with_a_second_person(desk: Desk) -> None:
    add = desk.ok(
        "decision", "add", "192.0.2.66", "--scope", "ip", "--source", "hotline",
        "--reference", "HOT-77", "--reason", "hotline notice", who="abe",
    )  # fmt: skip
    assert "pending, decision" in add
    decision = add.split("decision ")[1].split(":")[0]
    plan = desk.ok("plan", who="abe")
    assert f"#{decision} block ip 192.0.2.66 (hotline, ref HOT-77, by abe)" in plan

    analyst = desk.run("decision", "approve", decision, who="ana")
    assert analyst.returncode == 3  # approving is a supervisor's
    approved = desk.ok("decision", "approve", decision, "--reason", "checked", who="sue")
    assert "approved by sue" in approved
    shown = desk.ok("decision", "show", decision, who="abe")
    assert "active" in shown
    assert "by sue: checked" in shown


def test_a_public_report_needs_review(desk: Desk) -> None:
    add = desk.ok(
        "decision", "add", "http://report.hosted.test/photo.html", "--source", "public",
        "--reference", "RPT-5", "--reason", "web form report", who="sam",
    )  # fmt: skip
    assert "pending, decision" in add
    decision = add.split("decision ")[1].split(":")[0]
    own = desk.run("decision", "approve", decision, who="sam")
    assert own.returncode == 3
    assert "four-eyes" in own.stderr
    desk.ok("decision", "approve", decision, "--reason", "confirmed", who="sue")
    tickets = desk.wait(lambda: desk.tickets("RPT-5"), "the report's ticket")
    assert tickets[0]["source"] == "public"


def test_an_appeal_against_the_police_list(desk: Desk) -> None:
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
    tickets = desk.wait(
        lambda: [t for t in desk.tickets("POL-BULK-1") if len(t["urls"]) == BULK],
        "every URL on the ticket",
        seconds=60,
    )
    assert tickets[0]["customer_id"] == "cust-bulk"
    page = json.loads(
        desk.ok(
            "decision", "list", "--reference", "POL-BULK-1", "--limit", "1000", "--json", who="abe"
        )
    )
    assert (len(page["items"]), page["next_offset"]) == (BULK, None)


def test_tokens_and_the_audit_chain(desk: Desk) -> None:
    listed = desk.ok("token", "list", who="ada")
    assert [line.split()[1] for line in listed.splitlines()] == ["ada", "ana", "abe", "sam", "sue"]
    assert desk.run("token", "list", who="sam").returncode == 3
    abe = next(line.split()[0] for line in listed.splitlines() if " abe " in line)
    desk.ok("token", "revoke", abe, "--reason", "left the team", who="ada")
    gone = desk.run("decision", "list", who="abe")
    assert gone.returncode == 3
    assert "token revoked" in gone.stderr

    assert "audit chain OK" in desk.ok("audit", "verify")
    rows = desk.audit()
    steps = {(r["action"], r["actor"]) for r in rows}
    for step in (
        ("token.create", "service-user:" + _account()),
        ("token.create", "ada"),
        ("decision.notice", "ana"),
        ("decision.revoke", "sam"),
        ("decision.approve", "sue"),
        ("decision.approve", "sam"),
        ("ticket.open", "system"),
        ("token.list", "ada"),
        ("token.revoke", "ada"),
        ("lookup", "ana"),
    ):
        assert step in steps, step
    assert not [r for r in rows if r["actor"].startswith("cli:")]
    assert "shop.hosted.test" not in json.dumps(rows)  # entries by short hash only


def _account() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
