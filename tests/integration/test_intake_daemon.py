"""Every way in, through ``edgeagent run`` with ``[intake]`` and ``[intake.mail]`` enabled.

A member of the public reports on the report page, a site owner appeals from the stop
page's link (the opaque entry reference) and leaves an e-mail address, a hotline e-mails
a DKIM-signed notice and someone else an unsigned one; all of it reaches the one queue
(or, for the trusted notice, decisions), and the supervisor's revocation of the appeal is
mailed to the appellant over real SMTP (aiosmtpd). Real Dovecot and named as in
``test_intake_mail``.
"""

from __future__ import annotations

import http.cookiejar
import re
import smtplib
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from edgeagent.intake.entryref import EntryRefs
from edgeagent.model import Indicator, Scope
from tests.support.agent import create_token, http_json, running_agent
from tests.support.binaries import require_binary
from tests.support.mail import FORGER, HOTLINE, POLICE, MailWorld, notice, start_world, urls_body
from tests.support.polling import wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.integration


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(raw)))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for rcpt, m in self.messages if address in rcpt]


@pytest.fixture
def smtp() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    port = free_port(udp=False)
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[MailWorld]:
    require_binary("dovecot")
    require_binary("named")
    w = start_world(tmp_path / "world")
    try:
        yield w
    finally:
        w.close()


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return "'" + value + "'"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"


def _config(
    tmp_path: Path, world: MailWorld, user: str, smtp_port: int
) -> tuple[Path, int, int, int, int]:
    api, metrics, pages, lmtp = (free_port(udp=False) for _ in range(4))
    mail = world.config(user, tmp_path)
    senders = mail.pop("senders")
    assert isinstance(senders, dict)
    lines = [
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\nlog_format = "json"',
        f"[api]\nport = {api}\n[metrics]\nport = {metrics}",
        f'[intake]\nenabled = true\nport = {pages}\nnotify_via = "mail"',
        "[intake.mail]",
        *(f"{k} = {_toml(v)}" for k, v in mail.items()),
        f'ack_via = "mail"\npoll_seconds = 0.5\nlmtp_host = "127.0.0.1"\nlmtp_port = {lmtp}',
        *(
            f"[intake.mail.senders.{n}]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in s.items())
            for n, s in senders.items()
        ),
        "[takedown.notifiers.mail]",
        f'kind = "smtp"\nhost = "127.0.0.1"\nport = {smtp_port}\nstarttls = false',
        'sender = "ntd@isp.test"\nrecipients = ["hosting@isp.test"]',
    ]
    config = tmp_path / "edgeagent.toml"
    config.write_text("\n".join(lines) + "\n")
    return config, api, metrics, pages, lmtp


class _Browser:
    """A person at the public pages: a cookie jar, the form's CSRF token, a POST."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def submit(self, path: str, fields: dict[str, str]) -> str:
        with self.opener.open(self.base + path, timeout=10) as resp:
            page = resp.read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token is not None, page
        data = urllib.parse.urlencode({**fields, "csrf_token": token.group(1)}).encode()
        with self.opener.open(self.base + path.partition("?")[0], data, timeout=10) as resp:
            answer = resp.read().decode()
        reference = re.search(r'id="reference">([^<]+)<', answer)
        assert reference is not None, answer
        return reference.group(1)


def test_report_appeal_and_mail_reach_the_queue_and_the_appellant_hears_back(
    world: MailWorld, smtp: tuple[_Inbox, int], tmp_path: Path
) -> None:
    inbox, smtp_port = smtp
    user = world.new_user()
    config, api_port, metrics_port, pages_port, lmtp_port = _config(
        tmp_path, world, user, smtp_port
    )
    analyst = create_token(config, "analyst", "ana")
    supervisor = create_token(config, "supervisor", "sam")
    api = f"http://127.0.0.1:{api_port}"
    with running_agent(config, metrics_port, tmp_path / "daemon.log"):
        status, blocked = http_json(
            "POST",
            f"{api}/v1/decisions",
            analyst,
            {
                "target": "http://mistaken.example/shop.html",
                "scope": "url",
                "action": "block",
                "reason": "hotline report",
                "reference": "CASE-1",
                "source": "hotline",
            },
        )
        assert status == 201, blocked
        # The stop page's link carries the entry's reference under the agent's key.
        key = (tmp_path / "state" / "appeal-ref.key").read_bytes()
        ref = EntryRefs(key).of(Indicator.parse(Scope.URL, "http://mistaken.example/shop.html"))
        person = _Browser(f"http://127.0.0.1:{pages_port}")
        report = person.submit(
            "/report",
            {
                "urls": "http://reported.example/x.html",
                "category": "Sexualised images of a child",
                "came_across": "web",
                "anonymous": "yes",
            },
        )
        appeal = person.submit(
            f"/appeal?ref={ref}",
            {"ref": ref, "statement": "This is my shop.", "contact": "owner@shop.test"},
        )
        world.deliver(
            user,
            world.sign(
                notice(
                    HOTLINE,
                    "HL-2026-300",
                    urls_body(["http://mailed.example/1.html"], "HL-2026-300"),
                ),
                "hotline.test",
            ),
        )
        world.deliver(user, notice(FORGER, "look", urls_body(["http://spam.example/1.html"])))

        def mailed() -> list[Any] | None:
            _, page = http_json("GET", f"{api}/v1/decisions?reference=HL-2026-300", analyst)
            return page["items"] or None

        [decision] = wait_for("the mailed notice's decision", mailed, 20)
        assert (decision["source"], decision["actor"]) == ("hotline", "mail:hotline")
        # The ISP's mail server hands a police notice over LMTP: stored before "250".
        police = world.sign(
            notice(POLICE, "Notice", "Case: POL/9\nhttp://lmtp.example/1.html\n"), "police.test"
        )
        with smtplib.LMTP("127.0.0.1", lmtp_port) as lmtp:
            assert lmtp.sendmail(POLICE, ["notices@isp.test"], police) == {}
        _, page = http_json("GET", f"{api}/v1/decisions?reference=POL/9", analyst)
        [held] = page["items"]
        assert (held["source"], held["status"], held["hold"]) == ("law-enforcement", "active", True)

        def queue() -> dict[str, Any] | None:
            _, page = http_json("GET", f"{api}/v1/intake?state=pending", analyst)
            items = {i["channel"]: i for i in page["items"]}
            return items if len(items) == 3 else None

        items = wait_for("three pending items", queue, 20)
        assert items["public-report"]["reference"] == report
        assert items["public-report"]["content"]["contact"] == ""
        assert items["appeal"]["reference"] == appeal
        assert items["appeal"]["content"]["subject"] == ref
        assert items["mail-quarantine"]["content"]["quarantine_reason"] == (
            "sender not on the allow-list"
        )
        wait_for("the acknowledgement", lambda: inbox.to(HOTLINE) or None, 10)

        # The supervisor lifts the block; the appellant is told by mail.
        status, out = http_json(
            "POST",
            f"{api}/v1/intake/{items['appeal']['id']}/revoke",
            supervisor,
            {"reason": "the shop is legitimate"},
        )
        assert status == 200, out
        assert out["item"]["state"] == "revoked"
        [told] = wait_for("the appellant's mail", lambda: inbox.to("owner@shop.test") or None, 10)
        body = told.get_payload()
        assert isinstance(body, str)
        assert appeal in told["Subject"]
        assert "have lifted it" in body
        assert "the shop is legitimate" in body
        assert "mistaken.example" not in body
        _, revoked = http_json("GET", f"{api}/v1/decisions/{blocked['id']}", analyst)
        assert revoked["status"] == "revoked"

        def metric(name: str) -> float | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                text = resp.read().decode()
            found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
            return float(found.group(1)) if found else None

        assert metric('edgeagent_intake_pending{channel="mail-quarantine"}') == 1.0
        assert metric('edgeagent_intake_mail_messages_total{outcome="trusted"}') == 2.0
