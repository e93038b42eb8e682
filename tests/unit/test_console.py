"""The NTD console over the real API application and store (aiohttp test server).

Sign-in, sessions (fixation, idle expiry, revoked tokens), CSRF, roles taken from the
API's route table, masked entries and audited reveals, hostile text rendered inert, the
security headers on every page, pagination. The browser itself is
``tests/integration/test_console_chromium.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edgeagent.api import create_app
from edgeagent.api.context import CONTEXT
from edgeagent.api.routes import ROUTES
from edgeagent.console.app import HEADERS, Services, add_console
from edgeagent.console.exposure import inert, masked
from edgeagent.console.sessions import COOKIE_NAME
from edgeagent.console.settings import ConsoleSettings
from edgeagent.errors import short_hash
from edgeagent.intake.base import IntakeChannel, IntakeContent
from edgeagent.intake.triage import Triage
from edgeagent.store import SqliteStore
from edgeagent.takedown.evidence import verify_bundle
from edgeagent.takedown.tickets import TicketState
from tests.support.api import FakeClock, add_tokens, make_context, make_guard
from tests.support.full_api import full_api
from tests.support.tickets import make_ticket

LISTED = "http://bad.example/secret/path.html?q=1"
HOSTILE = "<script>alert(1)</script>\u202egnp.exe\u0000<img src=x>"


@dataclass
class Desk:
    client: TestClient[Any, Any]
    tokens: dict[str, str]
    store: SqliteStore
    clock: FakeClock

    async def sign_in(self, who: str) -> None:
        self.client.session.cookie_jar.clear()
        resp = await self.client.post("/console/signin", data={"token": self.tokens[who]})
        assert resp.status == 200, await resp.text()  # redirected to the queue
        assert resp.url.path == "/console/queue"

    async def page(self, path: str, status: int = 200) -> str:
        resp = await self.client.get(path)
        text = await resp.text()
        assert resp.status == status, text
        for name, value in HEADERS.items():
            assert resp.headers[name] == value
        return text

    async def post(self, path: str, status: int = 200, **fields: str) -> str:
        text = await self.page("/console/queue")
        token = re.search(r'name="csrf_token" value="([^"]+)"', text)
        assert token is not None
        resp = await self.client.post(path, data={"csrf_token": token.group(1), **fields})
        body = await resp.text()
        assert resp.status == status, body
        assert resp.headers["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]
        return body


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    async with running_desk(tmp_path, ConsoleSettings(idle_minutes=15, page_size=10)) as d:
        yield d


@asynccontextmanager
async def running_desk(
    tmp_path: Path, settings: ConsoleSettings, **context: Any
) -> AsyncIterator[Desk]:
    store = SqliteStore(tmp_path / "store.db")
    tokens = add_tokens(store)
    clock = FakeClock()
    ctx = make_context(store, make_guard(tmp_path / "guard"), **context)
    app = create_app(ctx)
    add_console(app, settings, ROUTES, Services(), clock)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Desk(client, tokens, store, clock)
    finally:
        await client.close()
        store.close()


def test_masked_and_inert() -> None:
    shown = masked(LISTED)
    assert shown == f"hxxp://bad[.]example/[path #{short_hash(LISTED)}]"
    assert "secret" not in shown
    assert masked("bad.example") == "bad[.]example"
    assert masked("https://user:pw@bad.example/") == "hxxps://bad[.]example/"
    text = inert(HOSTILE)
    assert "<" not in text
    assert "\u202e" not in text
    assert "\u0000" not in text
    assert "&lt;script&gt;" in text
    assert "&lt;U+202E&gt;" in text


async def test_sign_in_and_session_fixation(desk: Desk) -> None:
    assert (await desk.client.get("/console/queue")).url.path == "/console/signin"
    planted = "x" * 43
    desk.client.session.cookie_jar.update_cookies({COOKIE_NAME: planted})
    resp = await desk.client.post("/console/signin", data={"token": desk.tokens["analyst"]})
    assert resp.status == 200
    cookies = {c.key: c for c in desk.client.session.cookie_jar}
    session = cookies[COOKIE_NAME]
    assert session.value != planted
    assert session["httponly"]
    assert session["samesite"] == "Strict"
    bad = await desk.client.post("/console/signin", data={"token": "wrong"})
    assert bad.status == 401
    rows = desk.store.audit_since()
    assert [r.action for r in rows].count("console.signin") == 1
    assert any(r.action == "auth.denied" and r.subject == "console:signin" for r in rows)


async def test_idle_session_ends(desk: Desk) -> None:
    await desk.sign_in("analyst")
    await desk.page("/console/decisions")
    desk.clock.now += 15 * 60 + 1
    resp = await desk.client.get("/console/decisions")
    assert resp.url.path == "/console/signin"
    resp = await desk.client.post("/console/decisions/notice", data={"reference": "X"})
    assert resp.status == 401


async def test_csrf_required_on_every_form(desk: Desk) -> None:
    await desk.sign_in("analyst")
    fields = {"reference": "CASE-9", "source": "hotline", "reason": "r", "targets": LISTED}
    resp = await desk.client.post("/console/decisions/notice", data=fields)
    assert resp.status == 403
    resp = await desk.client.post(
        "/console/decisions/notice", data={**fields, "csrf_token": "forged"}
    )
    assert resp.status == 403
    assert desk.store.list_decisions() == []
    resp = await desk.client.post("/console/signout", data={})
    assert resp.status == 403


async def test_notice_approve_reveal(desk: Desk) -> None:
    await desk.sign_in("analyst")
    targets = f"{LISTED}\nhttp://bad.example/two\ndomain worse.example"
    page = await desk.post(
        "/console/decisions/notice",
        reference="CASE-7",
        source="public",
        reason="public report",
        targets=targets,
    )
    assert "secret" not in page
    assert "two" not in page
    assert page.count("<td>pending</td>") == 3
    [d1, *_] = sorted(desk.store.list_decisions(), key=lambda d: d.id)
    own = await desk.page(f"/console/decisions/{d1.id}")
    assert "You filed it, so you cannot approve it." in own
    assert f"/console/decisions/{d1.id}/approve" not in own
    # Crafted approvals: an analyst and a noc user (role) are refused, and audited.
    refused = await desk.post(f"/console/decisions/{d1.id}/approve", 403, reason="")
    assert "role analyst below required supervisor" in refused
    await desk.sign_in("noc")
    await desk.post(f"/console/decisions/{d1.id}/approve", 403, reason="")
    await desk.post(f"/console/decisions/{d1.id}/revoke", 403, reason="x")
    await desk.page("/console/decisions", 403)
    denied = [r for r in desk.store.audit_since() if r.action == "auth.denied"]
    assert [r.actor for r in denied] == ["analyst", "noc", "noc", "noc"]
    await desk.sign_in("supervisor")
    assert "a second person" in await desk.page(f"/console/decisions/{d1.id}")
    page = await desk.post(f"/console/decisions/{d1.id}/approve", reason="checked")
    assert '<span id="status">active</span>' in page
    assert "secret" not in page
    page = await desk.post(f"/console/decisions/{d1.id}/reveal", reason="verify the notice")
    assert f'<code class="revealed" id="revealed">{inert(LISTED)}</code>' in page
    assert "reveals today: 1" in page
    reveal = [r for r in desk.store.audit_since() if r.action == "console.reveal"]
    assert [(r.actor, r.subject, r.detail["reason"]) for r in reveal] == [
        ("supervisor", f"decision:{d1.id}", "verify the notice")
    ]
    assert "secret" not in str([r.detail for r in desk.store.audit_since()])
    queue = await desk.page("/console/queue")
    assert "<td>supervisor</td><td>1</td>" in queue


async def test_hostile_text_is_inert(desk: Desk) -> None:
    await desk.sign_in("analyst")
    fields = {"reference": "CASE-<b>1</b>", "source": "hotline", "targets": "x.example"}
    refused = await desk.post("/console/decisions/notice", 400, reason=HOSTILE, **fields)
    assert "reason: must not contain control characters" in refused
    await desk.post(
        "/console/decisions/notice",
        reference="CASE-<b>1</b>",
        source="hotline",
        reason=HOSTILE.replace("\u0000", ""),
        targets="http://bad.example/<script>x</script>\u202e",
    )
    [d] = desk.store.list_decisions()
    page = await desk.page(f"/console/decisions/{d.id}")
    assert "<script>" not in page.replace('<script src="/console/static/console.js"', "")
    assert "\u202e" not in page
    assert "<img" not in page
    assert "<b>1" not in page
    assert "&lt;U+202E&gt;" in page


async def test_long_lists_paginate(desk: Desk) -> None:
    await desk.sign_in("analyst")
    targets = "\n".join(f"http://p{i}.example/x" for i in range(25))
    await desk.post(
        "/console/decisions/notice", reference="CASE-P", source="hotline", reason="r",
        targets=targets,
    )  # fmt: skip
    first = await desk.page("/console/decisions")
    assert first.count('href="/console/decisions/') == 10
    assert 'rel="next" href="/console/decisions?offset=10"' in first
    last = await desk.page("/console/decisions?offset=20")
    assert last.count('href="/console/decisions/') == 5
    assert 'rel="next"' not in last
    assert 'rel="prev"' in last


async def test_roles_follow_the_route_table(desk: Desk) -> None:
    await desk.sign_in("supervisor")
    await desk.page("/console/audit")
    assert "intact" in await desk.page("/console/audit/verify")
    await desk.page("/console/tokens", 403)
    await desk.sign_in("admin")
    page = await desk.page("/console/tokens")
    token_id = next(t.id for t in desk.store.list_tokens() if t.name == "noc")
    assert f"/console/tokens/{token_id}/revoke" in page
    await desk.sign_in("noc")
    noc_cookie = {c.key: c.value for c in desk.client.session.cookie_jar}[COOKIE_NAME]
    await desk.page("/console/queue")
    await desk.sign_in("admin")
    await desk.post(f"/console/tokens/{token_id}/revoke", reason="left the team")
    desk.client.session.cookie_jar.clear()
    desk.client.session.cookie_jar.update_cookies({COOKIE_NAME: noc_cookie})
    assert (await desk.client.get("/console/queue")).url.path == "/console/signin"


async def test_static_assets_and_screen(desk: Desk) -> None:
    css = await desk.client.get("/console/static/console.css")
    assert css.status == 200
    assert css.content_type == "text/css"
    assert (await desk.client.get("/console/static/other.js")).status == 404
    await desk.sign_in("noc")
    assert "Return" in await desk.page("/console/screen")


@pytest.mark.parametrize(("proxies", "signed_in"), [("127.0.0.0/8", True), ("192.0.2.0/24", False)])
async def test_single_sign_on_only_from_the_trusted_proxy(
    tmp_path: Path, proxies: str, signed_in: bool
) -> None:
    settings = ConsoleSettings.model_validate(
        {"sso_header": "X-Remote-User", "trusted_proxies": [proxies]}
    )
    async with running_desk(tmp_path, settings) as d:
        resp = await d.client.get("/console/signin", headers={"X-Remote-User": "supervisor"})
        page = await resp.text()
        if signed_in:
            assert resp.url.path == "/console/queue"
            assert '<strong id="who">supervisor</strong>' in page
        else:
            assert resp.url.path == "/console/signin"
            assert 'id="token"' in page
        resp = await d.client.get("/console/signin", headers={"X-Remote-User": "nobody"})
        assert resp.status == (401 if signed_in else 200)


@pytest.fixture
async def case_desk(tmp_path: Path) -> AsyncIterator[tuple[Desk, Any]]:
    """The console over every route table the daemon serves (takedown and feeds too)."""
    async with full_api(tmp_path, console=ConsoleSettings(page_size=10)) as api:
        assert api.takedown is not None
        yield Desk(api.client, api.tokens, api.store, FakeClock()), api.takedown


async def test_a_case_worked_in_the_console(case_desk: tuple[Desk, Any]) -> None:
    desk, takedown = case_desk
    ticket = takedown.tickets.create(make_ticket(customer_id="<i>cust</i>\u202e"))
    await desk.sign_in("analyst")
    page = await desk.page(f"/console/tickets/{ticket.id}")
    assert "&lt;i&gt;cust&lt;/i&gt;&lt;U+202E&gt;" in page
    assert "min late" in page  # the deadline has passed
    moves = re.findall(r'<button type="submit">Move to ([a-z-]+)</button>', page)
    assert moves == ["under-review"]
    await desk.post(
        f"/console/tickets/{ticket.id}/transition", to="restored", reason="x", status=409
    )
    page = await desk.post(
        f"/console/tickets/{ticket.id}/transition", to="under-review", reason="checked"
    )
    assert '<span id="state">under-review</span>' in page
    page = await desk.post(
        f"/console/tickets/{ticket.id}/transition", to="temporarily-removed", reason="isolated"
    )
    assert "Move to referred" in page
    assert 'name="recipient"' in page
    # A move that needs its record names the missing field.
    refused = await desk.post(
        f"/console/tickets/{ticket.id}/transition", 400, to="referred", reason="r", recipient=""
    )
    assert "referral" in refused
    page = await desk.post(
        f"/console/tickets/{ticket.id}/authorisation", by="Officer <b>", reference="LE-1",
        at="2026-03-02 08:15",
    )  # fmt: skip
    assert "Record authorisation" not in page  # recorded: not offered again
    page = await desk.post(
        f"/console/tickets/{ticket.id}/outcome", kind="account-suspended", reason="policy"
    )
    assert "<td>policy</td>" in page  # on the timeline
    page = await desk.post(f"/console/tickets/{ticket.id}/comment", text="<script>x</script>")
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    page = await desk.post(f"/console/tickets/{ticket.id}/assign", assignee="analyst2")
    assert "<dd>analyst2</dd>" in page
    await desk.post(f"/console/tickets/{ticket.id}/hold", 403, reason="police asked")
    await desk.sign_in("supervisor")
    page = await desk.post(f"/console/tickets/{ticket.id}/hold", reason="police asked")
    assert "Release law-enforcement hold" in page
    page = await desk.post(f"/console/tickets/{ticket.id}/legal-hold", reason="court")
    assert "Release legal hold" in page
    page = await desk.post(f"/console/tickets/{ticket.id}/reveal", reason="check the notice")
    assert '<code class="revealed" id="revealed">http://shop.hosted.test/a</code>' in page
    reveals = [r.subject for r in desk.store.audit_since() if r.action == "console.reveal"]
    assert reveals == [f"ticket:{ticket.id}"]
    reports = await desk.page("/console/reports?days=400")
    assert "<svg" in reports
    csv_resp = await desk.client.get("/console/reports.csv?days=400")
    assert csv_resp.status == 200
    lines = (await csv_resp.text()).splitlines()
    assert lines[0].startswith("group,count,removed")
    # The export holds the page's figures: each group, its tickets and removals.
    assert len(lines) >= 3  # all, then the ticket's source
    for line in lines[1:]:
        group, count, removed, *_ = line.split(",")
        assert f"<td>{group}</td><td>{count}</td><td>{removed}</td>" in reports


async def test_intake_handled_in_the_console(case_desk: tuple[Desk, Any]) -> None:
    desk, _ = case_desk
    triage = Triage(desk.client.app[CONTEXT].decisions)
    report = triage.submit(
        IntakeChannel.PUBLIC_REPORT,
        IntakeContent(urls=("http://bad.example/<b>x</b>",), description="<script>y</script>"),
    )
    appeal = triage.submit(IntakeChannel.APPEAL, IntakeContent(statement="my bakery\u202e"))
    await desk.sign_in("analyst")
    queue = await desk.page("/console/queue")
    assert "&lt;script&gt;y&lt;/script&gt;" in queue
    assert "my bakery&lt;U+202E&gt;" in queue
    assert f"/console/intake/{report.id}/accept" in queue
    assert f"/console/intake/{appeal.id}/uphold" not in queue  # a supervisor's
    await desk.post(f"/console/intake/{appeal.id}/uphold", 403, reason="x")
    page = await desk.post(f"/console/intake/{report.id}/accept", reason="confirmed")
    assert f"{report.reference}: accepted; 1 decision(s)" in page
    await desk.sign_in("supervisor")
    page = await desk.post(f"/console/intake/{appeal.id}/uphold", reason="the block stays")
    assert f"{appeal.reference}: upheld" in page


async def test_four_eyes_enforced_and_missing_items(desk: Desk) -> None:
    await desk.sign_in("supervisor")
    await desk.post(
        "/console/decisions/notice", reference="CASE-4", source="public", reason="r",
        targets="http://bad.example/own",
    )  # fmt: skip
    [d] = desk.store.list_decisions()
    page = await desk.page(f"/console/decisions/{d.id}")
    assert "You filed it, so you cannot approve it." in page
    refused = await desk.post(f"/console/decisions/{d.id}/approve", 403, reason="")
    assert "the creator cannot approve their own decision" in refused
    assert desk.store.get_decision(d.id).status.value == "pending-approval"
    assert "decision not found" in await desk.page("/console/decisions/999", 404)


async def test_fleet_page(tmp_path: Path) -> None:
    member = {
        "name": "unbound-<1>", "enforcer": "rpz", "kind": "unbound", "region": "",
        "confirmed": 7, "lag": 2, "canary_ok": False, "reachable": True,
        "checked_at": 1_700_000_000.0,
    }  # fmt: skip
    fleet = {"members": [member], "enforcers": {"rpz": {"pending_version": 9, "retries": 3}}}
    async with running_desk(tmp_path, ConsoleSettings(), fleet=lambda: fleet) as d:
        await d.sign_in("noc")
        page = await d.page("/console/fleet")
    assert "<td>unbound-&lt;1&gt;</td><td>rpz / unbound</td><td>-</td><td>7</td>" in page
    assert '<span class="late">2</span>' in page
    assert '<span class="late">NO</span>' in page
    assert "2023-11-14 22:13 UTC" in page
    assert "<td>rpz</td><td>9</td><td>3</td>" in page


async def test_an_intake_item_page(case_desk: tuple[Desk, Any]) -> None:
    """What the person gave, inert, its URLs masked; outcomes offered by role; after an
    outcome, the item with the decisions it made."""
    desk, _ = case_desk
    triage = Triage(desk.client.app[CONTEXT].decisions)
    report = triage.submit(
        IntakeChannel.PUBLIC_REPORT,
        IntakeContent(
            urls=(LISTED,), description=HOSTILE.replace("\u0000", ""), contact="<b>me</b>"
        ),
    )
    appeal = triage.submit(IntakeChannel.APPEAL, IntakeContent(statement="my <i>bakery</i>"))
    await desk.sign_in("noc")
    await desk.page(f"/console/intake/{report.id}", 403)
    await desk.sign_in("analyst")
    page = await desk.page(f"/console/intake/{report.id}")
    assert masked(LISTED).replace("[", "").split("/")[2] in page.replace("[", "")
    assert "secret" not in page
    assert "&lt;script&gt;" in page
    assert "&lt;U+202E&gt;" in page
    assert "&lt;b&gt;me&lt;/b&gt;" in page
    assert 'id="intake-accept"' in page
    assert 'id="intake-revoke"' not in await desk.page(f"/console/intake/{appeal.id}")
    page = await desk.post(f"/console/intake/{report.id}/accept", reason="confirmed")
    assert '<span id="intake-state">accepted</span>' in page
    [d] = desk.store.list_decisions()
    assert f'href="/console/decisions/{d.id}"' in page
    assert 'id="intake-accept"' not in page  # decided: nothing more to offer
    await desk.sign_in("supervisor")
    page = await desk.page(f"/console/intake/{appeal.id}")
    assert "my &lt;i&gt;bakery&lt;/i&gt;" in page
    assert 'id="intake-revoke"' in page
    await desk.page("/console/intake/999", 404)


async def test_a_notice_with_its_time_jurisdiction_and_hold(desk: Desk) -> None:
    await desk.sign_in("analyst")
    fields = {"reference": "POL-1", "source": "hotline", "reason": "r", "targets": "x.example"}
    refused = await desk.post("/console/decisions/notice", 400, jurisdiction="Germany", **fields)
    assert "jurisdiction" in refused
    await desk.post(
        "/console/decisions/notice", received="2026-03-02 08:15", jurisdiction="DE", hold="on",
        **fields,
    )  # fmt: skip
    [d] = desk.store.list_decisions()
    assert (d.hold, d.jurisdiction) == (True, "DE")
    assert d.notice_received_at is not None
    assert d.notice_received_at.isoformat() == "2026-03-02T08:15:00+00:00"  # the team's zone


async def test_found_legal_shown_as_a_two_person_rule(case_desk: tuple[Desk, Any]) -> None:
    desk, takedown = case_desk
    ticket = takedown.tickets.create(make_ticket(state=TicketState.UNDER_REVIEW))
    await desk.sign_in("analyst")
    page = await desk.post(
        f"/console/tickets/{ticket.id}/transition", to="found-legal", reason="a bakery"
    )
    assert "Proposed found-legal: a second person confirms." in page
    assert "proposed by analyst; a second person must confirm it" in page
    assert "You proposed it, so you cannot confirm it." in page
    assert 'id="to-found-legal"' not in page
    await desk.sign_in("analyst2")
    page = await desk.page(f"/console/tickets/{ticket.id}")
    assert "proposed by analyst" in page
    assert "You proposed it" not in page
    page = await desk.post(
        f"/console/tickets/{ticket.id}/transition", to="found-legal", reason="agreed"
    )
    assert '<span id="state">found-legal</span>' in page


async def test_a_case_shows_its_records_and_exports_evidence(
    case_desk: tuple[Desk, Any],
) -> None:
    desk, takedown = case_desk
    ticket = takedown.tickets.create(
        make_ticket(hold=True, jurisdiction="DE", state=TicketState.UNDER_REVIEW)
    )
    await desk.sign_in("analyst")
    page = await desk.page(f"/console/tickets/{ticket.id}")
    assert "never to the customer" in page
    assert "<dd>DE</dd>" in page
    assert "Export evidence bundle" not in page  # a supervisor's
    await desk.post(f"/console/tickets/{ticket.id}/evidence", 403)
    page = await desk.post(
        f"/console/tickets/{ticket.id}/authorisation", by="Officer <b>", reference="LE-1",
        at="2026-03-02 08:15",
    )  # fmt: skip
    assert "Officer &lt;b&gt;, ref LE-1, 2026-03-02 08:15 UTC" in page
    await desk.sign_in("supervisor")
    assert "Export evidence bundle" in await desk.page(f"/console/tickets/{ticket.id}")
    resp = await desk.client.post(f"/console/tickets/{ticket.id}/evidence", data={"x": "1"})
    assert resp.status == 403  # no CSRF token
    body = await desk.post(f"/console/tickets/{ticket.id}/evidence")
    bundle = json.loads(body)
    assert verify_bundle(bundle) == []
    exports = [r.subject for r in desk.store.audit_since() if r.action == "evidence.export"]
    assert exports == [f"ticket:{ticket.id}"]
