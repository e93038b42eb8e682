"""Takedown end to end with real parts: Unbound on loopback, SMTP with STARTTLS (aiosmtpd),
an aiohttp webhook receiver checking the HMAC, the real store and the control API.

Synthetic hosts: ``shop.hosted.test`` -> 198.51.100.10 (own space, customer ``cust-a``),
``other.hosted.test`` -> 203.0.113.50 (not own), ``gone.hosted.test`` -> NXDOMAIN.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgeagent.api import create_app
from edgeagent.api.routes import ROUTES
from edgeagent.api.takedown_routes import takedown_routes
from edgeagent.decisions import DecisionRequest, DecisionService, FourEyesRequired
from edgeagent.errors import InvalidRequest
from edgeagent.lab.resolvers import unbound_server
from edgeagent.metrics import Metrics
from edgeagent.model import Action, DecisionStatus, Entry, Indicator, NoticeSource, Scope
from edgeagent.store import SqliteStore
from edgeagent.store.base import Store
from edgeagent.takedown.customers.csv import CsvExport
from edgeagent.takedown.customers.directory import CustomerDirectory
from edgeagent.takedown.evidence import verify_bundle
from edgeagent.takedown.locate import Locator
from edgeagent.takedown.notifiers.smtp import SmtpNotifier
from edgeagent.takedown.notifiers.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    verify_webhook_signature,
)
from edgeagent.takedown.records import Authorisation, Outcome, OutcomeKind, Preservation, Referral
from edgeagent.takedown.rules import Job, TakedownPolicy, owed_notices
from edgeagent.takedown.service import TakedownService
from edgeagent.takedown.space import OwnSpace
from edgeagent.takedown.tickets import AuthorisationRequired
from edgeagent.takedown.ticketstore import TicketStore
from tests.support.api import add_tokens, make_context, make_guard
from tests.support.binaries import require_binary
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

UTC = dt.UTC
SECRET = b"webhook-test-secret"
CUSTOMERS = """prefix,customer_id,service_id,contact,valid_from,valid_to
198.51.100.0/28,cust-a,srv-web-1,noc@cust-a.example,2025-01-01T00:00:00Z,
198.51.100.16/28,cust-b,srv-web-2,noc@cust-b.example,2025-01-01T00:00:00Z,
"""
RECORDS = [
    ("shop.hosted.test", "A", "198.51.100.10"),
    ("shop2.hosted.test", "A", "198.51.100.11"),
    ("other.hosted.test", "A", "203.0.113.50"),
    ("mixed.hosted.test", "A", "198.51.100.20"),
    ("mixed.hosted.test", "AAAA", "2001:db8:ffff::1"),
    ("apex.hosted.test", "A", "198.51.100.12"),
    ("www.wonly.hosted.test", "A", "198.51.100.13"),
    ("cdn.listed.hosted.test", "A", "198.51.100.14"),
]


@pytest.fixture(scope="module")
def resolver() -> Iterator[tuple[str, int]]:
    require_binary("unbound")
    with unbound_server(RECORDS) as endpoint:
        yield endpoint


def _cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp.hosted.test")])
    now = dt.datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp.crt", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class MailSink:
    messages: list[tuple[Envelope, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append((envelope, session.ssl is not None))
        return "250 OK"


@dataclass
class HookSink:
    received: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    bad_signatures: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify_webhook_signature(
            SECRET,
            request.headers.get(TIMESTAMP_HEADER, ""),
            body,
            request.headers.get(SIGNATURE_HEADER, ""),
        )
        if not ok:
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        self.received.append(json.loads(body))
        return web.Response(status=204)


@dataclass
class Env:
    service: TakedownService
    store: Store
    mail: MailSink
    hook: HookSink
    customers_csv: Path
    tmp: Path


@pytest.fixture
async def env(tmp_path: Path, resolver: tuple[str, int]) -> AsyncIterator[Env]:
    cert, key = _cert(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    mail = MailSink()
    smtp_port = free_port(udp=False)
    controller = Controller(
        mail,
        hostname="127.0.0.1",
        port=smtp_port,
        tls_context=server_tls,
        require_starttls=True,
        ready_timeout=10,
    )
    controller.start()
    hook = HookSink()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    hook_port = free_port(udp=False)
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()

    csv_path = tmp_path / "customers.csv"
    csv_path.write_text(CUSTOMERS, encoding="utf-8")
    store = SqliteStore(tmp_path / "edgeagent.sqlite3")
    directory = CustomerDirectory([CsvExport(csv_path, "crm")])
    locator = Locator(
        OwnSpace(["198.51.100.0/24", "2001:db8:ffff::/48"]), directory, [resolver], timeout=2.0
    )
    notifiers = [
        SmtpNotifier(
            "127.0.0.1",
            smtp_port,
            "ntd@isp.example",
            ("hosting@isp.example",),
            ssl_context=client_tls,
            timeout=10,
        ),
        # A ticket system other teams read too: not the hosting team.
        WebhookNotifier(
            f"http://127.0.0.1:{hook_port}/hook", SECRET, timeout=10, hosting_team=False
        ),
    ]
    policy = TakedownPolicy(
        retry_backoff_seconds=0.05,
        require_authorisation_for=frozenset({"law-enforcement"}),
        referral_recipients={"example-hotline": "Example Hotline"},
    )
    decisions = DecisionService(store, make_guard(tmp_path / "guard"), public_needs_approval=False)
    service = TakedownService(
        store,
        TicketStore(tmp_path / "takedown.sqlite3"),
        locator,
        notifiers,
        policy,
        decisions=decisions,
    )
    report = await service.refresh_customers()
    assert report.loaded == {"crm": 2}
    yield Env(service, store, mail, hook, csv_path, tmp_path)
    await runner.cleanup()
    controller.stop()
    service.tickets.close()
    store.close()


def url_entry(url: str, action: Action = Action.BLOCK) -> Entry:
    return Entry(Indicator.parse(Scope.URL, url), action, "decision:1")


def audit_text(store: Store) -> str:
    return json.dumps([[r.action, r.subject, dict(r.detail)] for r in store.audit_since(None)])


async def test_url_on_customer_address_opens_ticket_with_mail_and_webhook(env: Env) -> None:
    received = dt.datetime.now(UTC) - dt.timedelta(minutes=3)
    start = time.monotonic()
    out = await env.service.on_entries(
        [url_entry("http://shop.hosted.test/gallery/1.html")], received, "HL-2026-001", "hotline"
    )
    elapsed = time.monotonic() - start
    assert elapsed < 60
    assert len(out.tickets) == 1
    t = out.tickets[0]
    assert (t.customer_id, t.service_id, t.contact) == ("cust-a", "srv-web-1", "noc@cust-a.example")
    assert t.urls[0].addresses == ("198.51.100.10",)
    assert t.deadline == received + dt.timedelta(minutes=60)
    assert t.last_notified_at is not None
    assert t.notify_failures == 0
    delivered = [e for e in t.events if e.action == "notify" and e.reason == "delivered"]
    assert {dict(e.detail)["channel"] for e in delivered} == {"smtp", "webhook"}

    # The e-mail went over STARTTLS to the hosting team and the customer's contact.
    assert len(env.mail.messages) == 1
    envelope, tls = env.mail.messages[0]
    assert tls
    assert envelope.rcpt_tos == ["hosting@isp.example", "noc@cust-a.example"]
    msg = message_from_bytes(envelope.original_content or b"")
    assert not msg.is_multipart()  # no attachment, ever
    text = msg.get_payload(decode=True).decode()
    assert "HL-2026-001" in text
    assert "http://shop.hosted.test/gallery/1.html" in text
    assert "198.51.100.10" in text
    assert "do NOT delete" in text
    assert "srv-web-1" in text

    # The webhook arrived with a valid signature and the same facts.
    assert env.hook.bad_signatures == 0
    assert len(env.hook.received) == 1
    hook = env.hook.received[0]
    assert hook["customer_id"] == "cust-a"
    assert hook["urls"] == [
        {"url": "http://shop.hosted.test/gallery/1.html", "addresses": ["198.51.100.10"]}
    ]
    assert hook["forward_to_customer"] is True

    # Audited under ticket:<id>, without the URL in plain text.
    audit = env.store.audit_since(None)
    assert any(r.action == "ticket.open" and r.subject == f"ticket:{t.id}" for r in audit)
    assert "shop.hosted.test" not in audit_text(env.store)
    assert env.store.verify_audit().ok


async def test_url_outside_own_space_or_unresolvable_creates_no_ticket(env: Env) -> None:
    now = dt.datetime.now(UTC)
    out = await env.service.on_entries(
        [
            url_entry("http://other.hosted.test/x"),
            url_entry("http://gone.hosted.test/x"),
            url_entry("http://shop.hosted.test/allowed", Action.ALLOW),
            # Looked for at its apex, www. and the names listed under it: all outside.
            Indicator.parse(Scope.DOMAIN, "hosted.test"),
        ],
        now,
        "HL-2",
        "hotline",
    )
    assert out.tickets == ()
    assert (out.outside, out.unresolved) == (2, 1)
    assert await env.service.list_tickets() == []
    assert env.mail.messages == []
    assert env.hook.received == []


async def test_urls_of_one_case_are_batched_per_customer(env: Env) -> None:
    now = dt.datetime.now(UTC)
    first = await env.service.on_entries(
        [url_entry("http://shop.hosted.test/a"), url_entry("http://mixed.hosted.test/b")],
        now,
        "HL-3",
        "public",
    )
    assert sorted(t.customer_id for t in first.tickets) == ["cust-a", "cust-b"]
    # mixed.hosted.test also has an own IPv6 address with no assignment.
    assert first.unassigned == 1
    again = await env.service.on_entries(
        [url_entry("http://shop2.hosted.test/c"), url_entry("http://shop.hosted.test/a")],
        now,
        "HL-3",
        "public",
    )
    (a,) = again.tickets
    assert a.id == next(t.id for t in first.tickets if t.customer_id == "cust-a")
    assert [u.url for u in a.urls] == ["http://shop.hosted.test/a", "http://shop2.hosted.test/c"]
    other_case = await env.service.on_entries(
        [url_entry("http://shop.hosted.test/a")], now, "HL-4", "public"
    )
    assert other_case.tickets[0].id not in {t.id for t in first.tickets}
    assert len(await env.service.list_tickets()) == 3


async def test_delivery_failures_are_retried_visible_and_the_clock_runs_on(env: Env) -> None:
    env.hook.fail_next = 2  # two 503s, then success within the immediate retries
    broken_mail = SmtpNotifier(
        "127.0.0.1", free_port(udp=False), "ntd@isp.example", ("hosting@isp.example",), timeout=2
    )
    env.service.notifiers = (broken_mail, env.service.notifiers[1])
    received = dt.datetime.now(UTC) - dt.timedelta(minutes=10)
    out = await env.service.on_entries(
        [url_entry("http://shop.hosted.test/z")], received, "HL-5", "hotline"
    )
    t = out.tickets[0]
    attempts = [(dict(e.detail)["channel"], e.reason) for e in t.events if e.action == "notify"]
    assert attempts.count(("smtp", "failed: ConnectionRefusedError")) == 3
    assert attempts.count(("webhook", "failed: HTTP status 503")) == 2
    assert ("webhook", "delivered") in attempts
    assert t.notify_failures == 1
    assert t.deadline == received + dt.timedelta(minutes=60)  # the clock is not reset
    actions = [r.action for r in env.store.audit_since(None)]
    assert "ticket.notify-failed" in actions

    later = dt.datetime.now(UTC) + dt.timedelta(minutes=6)
    jobs = await asyncio.to_thread(env.service.due_jobs, later)
    assert Job("retry-notice", t.id, t.events[-1].at + dt.timedelta(minutes=5)) in jobs


async def test_law_enforcement_hold_and_authorisation(env: Env) -> None:
    now = dt.datetime.now(UTC)
    out = await env.service.on_entries(
        [url_entry("http://shop.hosted.test/le")], now, "LE-9", "law-enforcement", hold=True
    )
    t = out.tickets[0]
    envelope, _ = env.mail.messages[-1]
    assert envelope.rcpt_tos == ["hosting@isp.example"]  # the customer is not tipped off
    body = (envelope.original_content or b"").decode()
    assert "LAW-ENFORCEMENT HOLD" in body
    assert "LE-9" in body  # the hosting team knows the police reference
    assert "noc@cust-a.example" not in body
    hook = env.hook.received[-1]
    assert hook["forward_to_customer"] is False
    assert hook["customer_contact"] == ""
    # The ticket system is read outside the hosting team: no police reference there.
    assert hook["reference"] == ""
    assert "LE-9" not in json.dumps(hook)

    t = await env.service.transition(t.id, "under-review", "alice", "checking")
    with pytest.raises(Exception, match="law-enforcement authorisation") as err:
        await env.service.transition(t.id, "temporarily-removed", "alice", "pull it")
    assert "found-legal" in str(err.value)
    given = Authorisation("Officer B, Example Police", "POLICE-REF-77", now)
    t = await env.service.transition(
        t.id, "temporarily-removed", "alice", "pull it", authorisation=given
    )
    assert t.authorisation is not None
    assert (t.authorisation.reference, t.authorisation.recorded_by) == ("POLICE-REF-77", "alice")
    assert t.removed_at is not None
    assert "POLICE-REF-77" not in audit_text(env.store)


async def test_authorisation_first_preserve_then_isolate(env: Env) -> None:
    """Where a law-enforcement authorisation must come first, the hosting team is told to
    preserve and wait; the isolate instruction goes out only once the authorisation
    (who, reference, when) is recorded, and only then may the content be isolated."""
    now = dt.datetime.now(UTC) - dt.timedelta(minutes=40)
    out = await env.service.on_entries(
        [url_entry("http://shop.hosted.test/auth")], now, "LE-10", "law-enforcement", hold=True
    )
    t = out.tickets[0]

    def last_mail() -> str:
        msg = message_from_bytes(env.mail.messages[-1][0].original_content or b"")
        return str(msg["Subject"]) + "\n" + msg.get_payload(decode=True).decode()

    first = last_mail()
    assert "PRESERVE, DO NOT ALTER, AWAIT INSTRUCTION" in first
    assert "Isolate the listed content" not in first
    assert "PRESERVE, DO NOT ALTER" in env.hook.received[-1]["instruction"]
    # Reminders say the same while no authorisation is recorded.
    await env.service.run_due()
    assert "Reminder" in last_mail()
    assert "PRESERVE, DO NOT ALTER, AWAIT INSTRUCTION" in last_mail()
    t = await env.service.transition(t.id, "under-review", "alice", "checking")
    with pytest.raises(AuthorisationRequired):
        await env.service.transition(t.id, "temporarily-removed", "alice", "pull it")
    sent = len(env.mail.messages)

    at = now + dt.timedelta(minutes=20)
    given = Authorisation("Officer C, Example Police", "POL-AUTH-1", at)
    t = await env.service.record_authorisation(t.id, "sam", given)
    recorded = next(e for e in t.events if e.action == "authorise")
    assert t.authorisation == replace(given, recorded_by="sam", recorded_at=recorded.at)
    assert len(env.mail.messages) == sent + 1
    isolate = last_mail()
    assert "Instruction to isolate" in isolate
    assert "Isolate the listed content" in isolate
    assert "PRESERVE, DO NOT ALTER" not in isolate
    assert env.hook.received[-1]["kind"] == "isolate"
    t = await env.service.transition(t.id, "temporarily-removed", "alice", "isolated")
    assert t.state.value == "temporarily-removed"
    (authorise,) = [
        r
        for r in env.store.audit_since(None)
        if r.action == "ticket.authorise" and r.subject == f"ticket:{t.id}"
    ]
    assert authorise.detail["by"] == "Officer C, Example Police"
    assert authorise.detail["authorised_at"] == at.isoformat()
    assert "POL-AUTH-1" not in audit_text(env.store)


async def test_a_process_that_may_not_send_records_the_notice_as_owed(env: Env) -> None:
    """The CLI (or an agent that does not lead) records the notice an action calls for;
    the leader sends it once."""
    now = dt.datetime.now(UTC) - dt.timedelta(minutes=40)
    out = await env.service.on_entries(
        [url_entry("http://shop.hosted.test/owed")], now, "LE-11", "law-enforcement", hold=True
    )
    sent = len(env.mail.messages)
    env.service.may_send = lambda: False
    given = Authorisation("Officer C, Example Police", "POL-AUTH-2", now)
    t = await env.service.record_authorisation(out.tickets[0].id, "sam", given)
    assert len(env.mail.messages) == sent
    assert owed_notices(t) == ("isolate",)
    assert await env.service.send_owed() == []  # still not the leader: nothing goes out
    env.service.may_send = lambda: True
    (t,) = await env.service.send_owed()
    assert len(env.mail.messages) == sent + 1
    assert env.hook.received[-1]["kind"] == "isolate"
    assert owed_notices(t) == ()
    assert await env.service.send_owed() == []  # sent once


async def test_recheck_moves_urls_to_the_new_customer(env: Env) -> None:
    now = dt.datetime.now(UTC)
    out = await env.service.on_entries(
        [url_entry("http://shop.hosted.test/m")], now, "HL-6", "hotline"
    )
    t = out.tickets[0]
    # The address changes hands: the export now gives 198.51.100.0/28 to cust-b.
    env.customers_csv.write_text(CUSTOMERS.replace("cust-a,srv-web-1", "cust-b,srv-web-9"))
    await env.service.refresh_customers()
    jobs = await asyncio.to_thread(
        env.service.due_jobs, dt.datetime.now(UTC) + dt.timedelta(minutes=31)
    )
    assert Job("recheck", t.id, t.urls[0].checked_at + dt.timedelta(minutes=30)) in jobs
    rechecked = await env.service.run_job(Job("recheck", t.id, now))
    assert rechecked.urls[0].status == "moved"
    tickets = await env.service.list_tickets()
    moved = [x for x in tickets if x.customer_id == "cust-b" and x.reference == "HL-6"]
    assert len(moved) == 1
    assert moved[0].service_id == "srv-web-9"


async def test_reminder_and_escalation_jobs(env: Env) -> None:
    received = dt.datetime.now(UTC) - dt.timedelta(minutes=40)
    out = await env.service.on_entries(
        [url_entry("http://shop.hosted.test/r")], received, "HL-7", "hotline"
    )
    t = out.tickets[0]
    jobs = {j.kind for j in await asyncio.to_thread(env.service.due_jobs)}
    assert "reminder" in jobs
    assert "escalation" not in jobs
    before = len(env.mail.messages)
    await env.service.run_due()
    assert len(env.mail.messages) == before + 1
    assert "Reminder" in str(env.mail.messages[-1][0].original_content)
    late = t.deadline + dt.timedelta(seconds=1)
    kinds = {j.kind for j in await asyncio.to_thread(env.service.due_jobs, late)}
    assert "escalation" in kinds
    assert "reminder" not in kinds


async def test_api_transitions_evidence_and_report(env: Env) -> None:
    received = dt.datetime.now(UTC) - dt.timedelta(minutes=30)
    out = await env.service.on_entries(
        [url_entry("http://shop.hosted.test/api")], received, "HL-8", "hotline"
    )
    tid = out.tickets[0].id
    tokens = add_tokens(env.store)
    ctx = make_context(env.store, make_guard(env.tmp / "guard"))
    app = create_app(ctx, routes=(*ROUTES, *takedown_routes(env.service)))
    async with TestClient(TestServer(app)) as client:

        async def call(method: str, path: str, who: str, **kw: Any) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {tokens[who]}"}
            resp = await client.request(method, path, headers=headers, **kw)
            return resp.status, await resp.json()

        status, body = await call("GET", "/v1/tickets", "analyst")
        assert status == 200
        assert [t["id"] for t in body["items"]] == [tid]
        status, body = await call("GET", f"/v1/tickets/{tid}", "noc")
        assert status == 403
        status, body = await call(
            "POST",
            f"/v1/tickets/{tid}/transition",
            "analyst",
            json={"to": "referred", "reason": "skip ahead"},
        )
        assert status == 409
        assert body["error"]["code"] == "invalid-transition"
        assert "allowed: under-review" in body["error"]["message"]
        for to in ("under-review", "temporarily-removed"):
            status, body = await call(
                "POST",
                f"/v1/tickets/{tid}/transition",
                "analyst",
                json={"to": to, "reason": "hosting team confirmed"},
            )
            assert status == 200, body
        assert body["state"] == "temporarily-removed"
        assert body["allowed_next"] == ["referred", "found-legal"]
        status, _ = await call("GET", f"/v1/tickets/{tid}/evidence", "analyst")
        assert status == 403
        status, bundle = await call("GET", f"/v1/tickets/{tid}/evidence", "supervisor")
        assert status == 200
        assert verify_bundle(bundle) == []
        actions = [r.action for r in env.store.audit_since(None) if r.subject == f"ticket:{tid}"]
        assert actions[-1] == "evidence.export"
        assert json.loads(bundle["files"]["audit.json"])[-1]["action"] == "ticket.transition"
        status, rep = await call(
            "GET",
            "/v1/reports/takedown",
            "analyst",
            params={"from": (received - dt.timedelta(hours=1)).isoformat()},
        )
        assert status == 200
        assert rep["total"]["count"] == 1
        assert rep["total"]["removed"] == 1
        assert rep["total"]["within_60_share"] == 1.0
        assert rep["by_source"]["hotline"]["median_minutes"] == pytest.approx(30, abs=1)
        status, body = await call(
            "GET", "/v1/reports/takedown", "analyst", params={"from": "yesterday"}
        )
        assert status == 400
    assert env.store.verify_audit().ok


async def test_referral_and_preservation_are_required_on_record(env: Env) -> None:
    now = dt.datetime.now(UTC)
    out = await env.service.on_entries(
        [url_entry("http://shop.hosted.test/ref")], now, "HL-11", "hotline"
    )
    tid = out.tickets[0].id
    for to in ("under-review", "temporarily-removed"):
        await env.service.transition(tid, to, "alice", "hosting team isolated it")
    with pytest.raises(InvalidRequest) as err:
        await env.service.transition(tid, "referred", "alice", "sent to the hotline")
    assert err.value.field == "referral"
    unknown = Referral("some-agency", "X-1", now)
    with pytest.raises(InvalidRequest) as err:
        await env.service.transition(tid, "referred", "alice", "sent", referral=unknown)
    assert err.value.field == "referral.recipient"
    assert "example-hotline" in err.value.reason
    referral = Referral("example-hotline", "HOTLINE-REF-5", now - dt.timedelta(minutes=2))
    t = await env.service.transition(tid, "referred", "alice", "sent", referral=referral)
    assert t.referral == replace(referral, recorded_by="alice", recorded_at=t.events[-1].at)
    t = await env.service.transition(tid, "confirmed-illegal", "alice", "hotline confirmed")

    with pytest.raises(InvalidRequest) as err:
        await env.service.transition(tid, "removed-and-preserved", "alice", "gone")
    assert err.value.field == "preservation"
    digest = "ab" * 32
    kept = Preservation("hosting evidence vault, case shelf 3", "J. Doe (hosting)", (digest,), now)
    t = await env.service.transition(
        tid, "removed-and-preserved", "alice", "gone", preservation=kept
    )
    assert t.preservation is not None
    assert (t.preservation.content_sha256, t.preservation.recorded_by) == ((digest,), "alice")
    t = await env.service.record_outcome(
        tid, "alice", Outcome(OutcomeKind.ACCOUNT_SUSPENDED, "terms of service 4.2", now)
    )
    assert [o.kind for o in t.outcomes] == [OutcomeKind.ACCOUNT_SUSPENDED]
    stored = await env.service.get(tid)
    assert (stored.referral, stored.preservation, stored.outcomes) == (
        t.referral,
        t.preservation,
        t.outcomes,
    )
    actions = [r.action for r in env.store.audit_since(None) if r.subject == f"ticket:{tid}"]
    assert actions[-1] == "ticket.outcome"
    assert "HOTLINE-REF-5" in json.dumps(t.referral.to_json() if t.referral else {})


async def test_found_legal_needs_two_people_and_revokes_the_case_blocks(env: Env) -> None:
    url = "http://shop.hosted.test/legal.html"
    decisions = env.service.decisions
    assert decisions is not None
    request = DecisionRequest(url, Scope.URL, Action.BLOCK, "report", "HL-12", NoticeSource.HOTLINE)
    decision = decisions.create(request, "ana")
    revoked: list[bool] = []
    env.service.on_policy_change = lambda: revoked.append(True)
    out = await env.service.on_entries(
        [decision.as_entry()], decision.notice_received_at, "HL-12", "hotline"
    )
    tid = out.tickets[0].id
    await env.service.transition(tid, "under-review", "ana", "checking")

    t = await env.service.transition(tid, "found-legal", "ana", "it is a museum photo")
    assert (t.state.value, t.found_legal_proposed_by) == ("under-review", "ana")
    assert decisions.store.get_decision(decision.id).status is DecisionStatus.ACTIVE
    with pytest.raises(FourEyesRequired):
        await env.service.transition(tid, "found-legal", "ana", "really")
    assert revoked == []

    mails = len(env.mail.messages)
    t = await env.service.transition(tid, "found-legal", "sam", "agreed: legal")
    assert t.state.value == "found-legal"
    assert t.found_legal_proposed_by == ""
    gone = decisions.store.get_decision(decision.id)
    assert gone.status is DecisionStatus.REVOKED
    assert gone.history[-1].actor == "sam"
    assert revoked == [True]
    # The hosting team is told the content may be restored.
    assert len(env.mail.messages) == mails + 1
    last = message_from_bytes(env.mail.messages[-1][0].original_content or b"")
    assert "Found legal" in str(last["Subject"])
    assert env.hook.received[-1]["kind"] == "found-legal"
    transition = [
        r
        for r in env.store.audit_since(None)
        if r.subject == f"ticket:{tid}" and r.action == "ticket.transition"
    ][-1]
    assert transition.detail["proposed_by"] == "ana"
    assert transition.actor == "sam"


async def test_purge_with_and_without_legal_hold(env: Env) -> None:
    now = dt.datetime.now(UTC)
    ids = []
    for n in range(3):
        out = await env.service.on_entries(
            [url_entry(f"http://shop.hosted.test/purge/{n}")], now, f"HL-P{n}", "hotline"
        )
        tid = out.tickets[0].id
        for to in ("under-review", "found-legal", "restored"):
            await env.service.transition(tid, to, "ana" if to != "restored" else "sam", "legal")
            if to == "found-legal":
                await env.service.transition(tid, to, "sam", "agreed")
        ids.append(tid)
    still_open = (
        await env.service.on_entries(
            [url_entry("http://shop.hosted.test/purge/open")], now, "HL-P-OPEN", "hotline"
        )
    ).tickets[0]
    held_id = ids[1]
    await env.service.set_legal_hold(held_id, "sup", True, "court order 17")

    # Nothing goes before its time.
    report = await env.service.purge_expired(now + dt.timedelta(days=364))
    assert report.purged == ()
    later = now + dt.timedelta(days=366)
    report = await env.service.purge_expired(later)
    assert sorted(report.purged) == [ids[0], ids[2]]
    assert report.kept_by_legal_hold == (held_id,)
    remaining = {t.id for t in await env.service.list_tickets(limit=1000)}
    assert remaining == {held_id, still_open.id}

    # The purge leaves a row per record naming the class of record, never its content.
    rows = [r for r in env.store.audit_since(None) if r.action == "ticket.purge"]
    assert sorted(r.subject for r in rows) == sorted(f"ticket:{i}" for i in (ids[0], ids[2]))
    assert all("takedown ticket record" in r.detail["removed"] for r in rows)
    assert all(r.detail["retention_days"] == 365 for r in rows)
    text = json.dumps([dict(r.detail) for r in rows])
    assert "shop.hosted.test" not in text
    assert "HL-P" not in text
    assert env.store.verify_audit().ok

    # Released, the held record goes at the next run.
    await env.service.set_legal_hold(held_id, "sup", False, "case closed in court")
    report = await env.service.purge_expired(later)
    assert report.purged == (held_id,)
    flags = [
        (r.action, r.detail["set"])
        for r in env.store.audit_since(None)
        if r.subject == f"ticket:{held_id}" and r.action == "ticket.legal-hold"
    ]
    assert flags == [("ticket.legal-hold", True), ("ticket.legal-hold", False)]


async def test_sla_figures_come_from_the_ticket_store(env: Env) -> None:
    metrics = Metrics()
    env.service.metrics = metrics

    def value(name: str, source: str) -> float:
        found = metrics.registry.get_sample_value(name, {"source": source})
        return 0.0 if found is None else found

    late = dt.datetime.now(UTC) - dt.timedelta(hours=2)
    out = await env.service.on_entries(
        [url_entry("http://shop.hosted.test/sla")], late, "HL-SLA", "hotline"
    )
    await env.service.on_entries(
        [url_entry("http://shop2.hosted.test/sla")], dt.datetime.now(UTC), "PUB-SLA", "public"
    )
    tid = out.tickets[0].id
    await env.service.run_due()
    assert value("edgeagent_takedown_open_tickets", "hotline") == 1
    assert value("edgeagent_takedown_open_tickets", "public") == 1
    assert value("edgeagent_takedown_open_overdue", "hotline") == 1
    assert value("edgeagent_takedown_open_overdue", "public") == 0
    assert value("edgeagent_takedown_sla_breaches_total", "hotline") == 1
    ticket = await env.service.get(tid)
    assert ticket.breached
    assert any(e.action == "sla-breach" for e in ticket.events)

    # Removed at last: no longer overdue, and the breach is not counted twice.
    for to in ("under-review", "temporarily-removed"):
        await env.service.transition(tid, to, "ana", "done")
    await env.service.run_due()
    assert value("edgeagent_takedown_open_overdue", "hotline") == 0
    assert value("edgeagent_takedown_open_tickets", "hotline") == 1
    assert value("edgeagent_takedown_sla_breaches_total", "hotline") == 1
    rows = [r for r in env.store.audit_since(None) if r.action == "ticket.sla-breach"]
    assert [r.subject for r in rows] == [f"ticket:{tid}"]


async def test_every_entry_kind_is_located(env: Env) -> None:
    now = dt.datetime.now(UTC)

    async def case(reference: str, *targets: tuple[Scope, str]) -> list[Any]:
        found = [Indicator.parse(scope, value) for scope, value in targets]
        out = await env.service.on_entries(found, now, reference, "law-enforcement")
        return sorted(
            (
                (t.customer_id, [(u.scope.value, u.url, u.addresses) for u in t.urls])
                for t in out.tickets
            ),
        )

    # A domain at its apex, at www. under it, or at a name the notice lists under it.
    assert await case("D-1", (Scope.DOMAIN, "apex.hosted.test")) == [
        ("cust-a", [("domain", "apex.hosted.test", ("198.51.100.12",))])
    ]
    assert await case("D-2", (Scope.DOMAIN, "wonly.hosted.test")) == [
        ("cust-a", [("domain", "wonly.hosted.test", ("198.51.100.13",))])
    ]
    listed = await case(
        "D-3",
        (Scope.DOMAIN, "listed.hosted.test"),
        (Scope.URL, "http://cdn.listed.hosted.test/x.html"),
    )
    assert listed == [
        (
            "cust-a",
            [
                ("domain", "listed.hosted.test", ("198.51.100.14",)),
                ("url", "http://cdn.listed.hosted.test/x.html", ("198.51.100.14",)),
            ],
        )
    ]
    # An address, no query; a host name.
    assert await case("D-4", (Scope.IP, "198.51.100.20"), (Scope.HOST, "shop.hosted.test")) == [
        ("cust-a", [("host", "shop.hosted.test", ("198.51.100.10",))]),
        ("cust-b", [("ip", "198.51.100.20", ("198.51.100.20",))]),
    ]
    # A prefix across two customers and space nobody holds: one ticket per customer,
    # named by the overlap; the rest is own but unassigned.
    out = await env.service.on_entries(
        [Indicator.parse(Scope.CIDR, "198.51.100.0/26")], now, "D-5", "law-enforcement"
    )
    assert sorted((t.customer_id, t.urls[0].addresses) for t in out.tickets) == [
        ("cust-a", ("198.51.100.0/28",)),
        ("cust-b", ("198.51.100.16/28",)),
    ]
    assert out.unassigned == 1
    assert all(t.hold is False and not t.segments for t in out.tickets)
    # Outside own space, or a hash (no host known): nothing.
    out = await env.service.on_entries(
        [
            Indicator.parse(Scope.CIDR, "203.0.113.0/24"),
            Indicator.parse(Scope.IP, "203.0.113.50"),
            Indicator.parse(Scope.URL_HASH, "ab" * 32),
        ],
        now,
        "D-6",
        "law-enforcement",
    )
    assert (out.tickets, out.outside) == ((), 2)
    # The same rules hold when the ticket is checked again later.
    (ticket,) = [t for t in await env.service.list_tickets() if t.reference == "D-3"]
    rechecked = await env.service.run_job(Job("recheck", ticket.id, now))
    assert [u.status for u in rechecked.urls] == ["live", "live"]
