"""Which messages a machine may act on: the trust rule of e-mailed notices.

Pure. A message becomes a :class:`TrustedNotice` only when all of these hold, checked
in this order; the first that fails is the quarantine reason a person sees:

1. it parsed without defects and has exactly one From address;
2. nothing was set aside (an image, archive or other attachment that is not a list);
3. the From address is an allow-listed sender's;
4. it carries a DKIM signature of that address's domain (:mod:`.signature`) or, for a
   sender with ``smime_ca_file``, an S/MIME signature by that address (:mod:`.smime`);
5. it names at least one URL and at most ``max_urls``;
6. the sender's reference pattern finds the case reference (subject first, then body).

Anything else is :class:`Quarantined`: it becomes a triage item for a person, never
decisions by itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from edgeagent.intake.base import IntakeContent
from edgeagent.intake.mail.message import MailMessage
from edgeagent.intake.mail.settings import MailSenderSettings
from edgeagent.intake.mail.signature import DkimVerdict

_DESCRIPTION_CHARS = 4000


@dataclass(frozen=True, slots=True)
class TrustedNotice:
    sender_name: str
    sender: MailSenderSettings
    case_reference: str
    urls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Quarantined:
    reason: str
    content: IntakeContent


def sender_of(
    message: MailMessage, senders: Mapping[str, MailSenderSettings]
) -> tuple[str, MailSenderSettings] | None:
    """The allow-listed sender whose address is the message's From (case-insensitive)."""
    for name, sender in senders.items():
        if message.sender and sender.address.lower() == message.sender:
            return name, sender
    return None


def classify(
    message: MailMessage,
    dkim: DkimVerdict,
    senders: Mapping[str, MailSenderSettings],
    *,
    max_urls: int,
) -> TrustedNotice | Quarantined:
    """Apply the rule of the module docstring to a parsed message and the verdict on its
    signature (DKIM, or S/MIME where the sender's config asks for it)."""
    known = sender_of(message, senders)
    claimed = known[1].source.value if known else ""
    reason = _untrusted(message, dkim, known, max_urls)
    reference = _reference(message, known[1]) if known else ""
    if reason is None and not reference:
        reason = "no case reference matching the sender's pattern"
    if reason is not None or known is None:
        return Quarantined(reason or "not trusted", _content(message, reason or "", claimed))
    return TrustedNotice(known[0], known[1], reference, message.urls)


def _untrusted(
    message: MailMessage,
    dkim: DkimVerdict,
    known: tuple[str, MailSenderSettings] | None,
    max_urls: int,
) -> str | None:
    if message.problems:
        return "malformed message: " + "; ".join(message.problems[:5])
    if message.set_aside:
        return "attachments that are not lists were discarded unopened"
    if known is None:
        return "sender not on the allow-list"
    if not dkim.passed:
        return dkim.reason or "no valid DKIM signature of the sender's domain"
    if not message.urls:
        return "no URLs found"
    if len(message.urls) > max_urls:
        return f"{len(message.urls)} URLs, more than max_urls ({max_urls})"
    return None


def _reference(message: MailMessage, sender: MailSenderSettings) -> str:
    pattern = re.compile(sender.reference_pattern)
    for text in (message.subject, message.text):
        found = pattern.search(text)
        if found:
            return (found.group(1) if pattern.groups else found.group(0))[:200]
    return ""


def _content(message: MailMessage, reason: str, claimed_source: str) -> IntakeContent:
    """The triage item of a quarantined message: what it said, why it waits, and the
    attachments set aside (type and size only)."""
    description = f"Subject: {message.subject}\n\n{message.text}"[:_DESCRIPTION_CHARS]
    return IntakeContent(
        urls=message.urls[:10_000],
        description=description,
        contact=message.sender,
        notice_source=claimed_source,
        quarantine_reason=reason,
        attachments=tuple(a.describe() for a in message.set_aside),
    )
