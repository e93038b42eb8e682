"""``kind = "smtp"``: plain-text e-mail over SMTP, STARTTLS required by default.

The message goes to the configured hosting-team recipients, plus the customer's contact
(as Cc) unless the ticket is on law-enforcement hold. No attachment, ever: the message is
metadata only (:func:`render_text`).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Annotated, Literal

from pydantic import Field, model_validator

from edgeagent.configtypes import (
    Email,
    EnvName,
    Host,
    Items,
    Port,
    Seconds,
    SecretFile,
    one_secret,
    read_secret,
)
from edgeagent.takedown.notifiers.base import (
    WITHHELD,
    Notice,
    Notifier,
    NotifierConfig,
    NotifyError,
)


class SmtpNotifierConfig(NotifierConfig):
    """E-mail notices to the hosting team (STARTTLS unless ``starttls = false``)."""

    kind: Literal["smtp"]
    host: Host
    port: Port = 587
    starttls: bool = True
    username: str | None = None
    password_file: SecretFile | None = None
    password_env: EnvName | None = None
    sender: Email
    recipients: Annotated[Items[Email], Field(min_length=1)]
    timeout_seconds: Seconds = 30.0

    @model_validator(mode="after")
    def _secret(self) -> SmtpNotifierConfig:
        one_secret(self, "password", required=self.username is not None)
        return self


def render_text(n: Notice) -> tuple[str, str]:
    """``(subject, body)`` of the e-mail for ``n``."""
    kind = {
        "notice": "Takedown notice",
        "reminder": "Reminder",
        "escalation": "ESCALATION",
        "isolate": "Instruction to isolate",
        "found-legal": "Found legal, may be restored",
    }
    subject = f"{kind.get(n.kind, 'Takedown notice')}: ticket {n.ticket_id}"
    if n.reference:
        subject = f"[{n.reference}] {subject}"
    lines = [
        f"Case reference:   {n.reference or WITHHELD}",
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
    if n.segments:
        lines += ["", "Where the addresses sit, seen from the host the agent runs on:"]
        lines += [f"  {d.describe()}" for d in n.segments]
    lines += ["", n.instruction, ""]
    return subject, "\n".join(lines)


@dataclass(frozen=True, slots=True)
class SmtpNotifier(Notifier):
    """E-mail via SMTP; STARTTLS required when ``starttls`` (the default).

    ``ssl_context`` verifies the server (default: system trust store).
    """

    KIND = "smtp"
    Config = SmtpNotifierConfig

    host: str
    port: int
    sender: str
    recipients: Sequence[str]
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None
    name: str = "smtp"
    hosting_team: bool = True

    @classmethod
    def from_config(cls, config: NotifierConfig, *, name: str) -> SmtpNotifier:
        assert isinstance(config, SmtpNotifierConfig)
        login = config.username is not None
        return cls(
            config.host,
            config.port,
            config.sender,
            tuple(config.recipients),
            starttls=config.starttls,
            username=config.username,
            password=read_secret(config.password_file, config.password_env) if login else None,
            timeout=config.timeout_seconds,
            name=name,
            hosting_team=config.hosting_team,
        )

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
        self.deliver(msg, to)

    def deliver(self, msg: EmailMessage, to: Sequence[str]) -> None:
        """Send ``msg`` to ``to`` over this notifier's server (blocking); ``NotifyError``."""
        self.deliver_all([(msg, to)])

    def deliver_all(self, batch: Sequence[tuple[EmailMessage, Sequence[str]]]) -> None:
        """Send every ``(msg, to)`` of ``batch`` in one SMTP session (blocking); the first
        failure raises ``NotifyError`` (the messages before it are sent)."""
        refused = 0
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    if not smtp.has_extn("starttls"):
                        raise NotifyError(self.name, "server does not offer STARTTLS")
                    smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self.password or "")
                for msg, to in batch:
                    refused += len(smtp.send_message(msg, from_addr=self.sender, to_addrs=to))
        except NotifyError:
            raise
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise NotifyError(self.name, type(exc).__name__) from None
        if refused:
            raise NotifyError(self.name, f"{refused} recipient(s) refused")
