"""Notifiers: an HMAC-signed JSON webhook and e-mail over SMTP with STARTTLS.

Both implement :class:`edgeagent.takedown.base.Notifier`: one attempt per ``send``,
:class:`NotifyError` on failure (retries are the engine's, so each attempt is recorded).

Webhook: ``POST`` of :func:`notice_json` as compact JSON; headers
``X-EdgeAgent-Timestamp`` (Unix seconds) and ``X-EdgeAgent-Signature:
sha256=<hex>`` where the MAC is HMAC-SHA256(secret, timestamp + "." + body). Receivers
check it with :func:`verify_signature` (constant time) and reject old timestamps.

E-mail: plain text from :func:`render_text`, to the configured hosting-team recipients,
plus the customer's contact unless the ticket is on law-enforcement hold. No attachment,
ever: the message is metadata only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import aiohttp

from edgeagent.takedown.base import Notice, NotifyError

SIGNATURE_HEADER = "X-EdgeAgent-Signature"
TIMESTAMP_HEADER = "X-EdgeAgent-Timestamp"


def notice_json(n: Notice) -> dict[str, Any]:
    """The notice as JSON: case, customer, URLs with addresses, deadline, instruction."""
    return {
        "ticket_id": n.ticket_id,
        "kind": n.kind,
        "reference": n.reference,
        "source": n.source,
        "customer_id": n.customer_id,
        "service_id": n.service_id,
        "customer_contact": "" if n.hold else n.customer_contact,
        "forward_to_customer": not n.hold,
        "law_enforcement_hold": n.hold,
        "urls": [
            {"url": u, "addresses": list(a)} for u, a in zip(n.urls, n.addresses, strict=True)
        ],
        "notice_received_at": n.notice_received_at.isoformat(),
        "deadline": n.deadline.isoformat(),
        "instruction": n.instruction,
    }


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``timestamp + "." + body``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: bytes, timestamp: str, body: bytes, signature: str, *, max_age: float = 300.0
) -> bool:
    """True if ``signature`` matches and ``timestamp`` is within ``max_age`` seconds."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= max_age and hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True, slots=True)
class WebhookNotifier:
    """HMAC-signed JSON webhook (see the module docstring). Any 2xx counts as delivered."""

    url: str
    secret: bytes
    timeout: float = 10.0
    ssl_context: ssl.SSLContext | None = None

    @property
    def channel(self) -> str:
        return "webhook"

    async def send(self, notice: Notice) -> None:
        body = json.dumps(notice_json(notice), separators=(",", ":"), sort_keys=True).encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(self.secret, ts, body),
        }
        try:
            async with asyncio.timeout(self.timeout):
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(
                        self.url,
                        data=body,
                        headers=headers,
                        ssl=self.ssl_context if self.ssl_context is not None else True,
                    ) as resp,
                ):
                    await resp.read()
                    if not 200 <= resp.status < 300:
                        raise NotifyError(self.channel, f"HTTP status {resp.status}")
        except TimeoutError:
            raise NotifyError(self.channel, "timed out") from None
        except aiohttp.ClientError as exc:
            raise NotifyError(self.channel, type(exc).__name__) from None


def render_text(n: Notice) -> tuple[str, str]:
    """``(subject, body)`` of the e-mail for ``n``."""
    kind = {"notice": "Takedown notice", "reminder": "Reminder", "escalation": "ESCALATION"}
    subject = f"[{n.reference}] {kind.get(n.kind, 'Takedown notice')}: ticket {n.ticket_id}"
    lines = [
        f"Case reference:   {n.reference}",
        f"Ticket:           {n.ticket_id}",
        f"Reported by:      {n.source}",
        f"Customer:         {n.customer_id}",
        f"Service:          {n.service_id}",
        f"Notice received:  {n.notice_received_at.isoformat()}",
        f"Deadline:         {n.deadline.isoformat()}",
    ]
    if n.hold:
        lines.append(
            "LAW-ENFORCEMENT HOLD: do not contact or warn the customer; act within the "
            "hosting team only."
        )
    lines += ["", "Listed URLs and the addresses they resolve to:"]
    for url, addrs in zip(n.urls, n.addresses, strict=True):
        lines.append(f"  {url}  ->  {', '.join(addrs)}")
    lines += ["", n.instruction, ""]
    return subject, "\n".join(lines)


@dataclass(frozen=True, slots=True)
class SmtpNotifier:
    """E-mail via SMTP; STARTTLS required when ``starttls`` (the default).

    ``ssl_context`` verifies the server (default: system trust store).
    """

    host: str
    port: int
    sender: str
    recipients: Sequence[str]
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None

    @property
    def channel(self) -> str:
        return "email"

    async def send(self, notice: Notice) -> None:
        await asyncio.to_thread(self._send, notice)

    def _send(self, notice: Notice) -> None:
        subject, text = render_text(notice)
        to = list(self.recipients)
        if not notice.hold and notice.customer_contact and "@" in notice.customer_contact:
            to.append(notice.customer_contact)
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        if len(to) > len(self.recipients):
            msg["Cc"] = to[-1]
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        msg["X-EdgeAgent-Ticket"] = str(notice.ticket_id)
        msg.set_content(text)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    if not smtp.has_extn("starttls"):
                        raise NotifyError(self.channel, "server does not offer STARTTLS")
                    smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(msg, from_addr=self.sender, to_addrs=to)
        except NotifyError:
            raise
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise NotifyError(self.channel, type(exc).__name__) from None
        if refused:
            raise NotifyError(self.channel, f"{len(refused)} recipient(s) refused")
