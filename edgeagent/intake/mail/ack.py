"""The reply that acknowledges a trusted notice, sent through a takedown SMTP notifier.

Only trusted notices are answered (an answer to an unverified sender would be sent to
whoever the forger named). The reply quotes the case reference and, per URL, what became
of it by index and short hash: never the URL itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import make_msgid

from edgeagent.decisions import NoticeOutcome, notice_counts
from edgeagent.intake.mail.notices import Acknowledgement
from edgeagent.takedown.notifiers.smtp import SmtpNotifier

_MAX_LISTED = 200  # refused URLs named one by one; the count says the rest


def reply_message(ack: Acknowledgement, sender: str, operator: str) -> EmailMessage:
    """The plain-text reply to ``ack``'s message."""
    original = ack.message
    counts = notice_counts(ack.results)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = original.sender
    subject = original.subject.replace("\r", " ").replace("\n", " ")[:200]
    msg["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    if original.message_id.startswith("<") and original.message_id.endswith(">"):
        msg["In-Reply-To"] = original.message_id
        msg["References"] = original.message_id
    lines = [
        f"Case reference: {ack.notice.case_reference}",
        f"URLs received:  {len(ack.results)}",
        f"Blocked now:    {counts[NoticeOutcome.ACCEPTED.value]}",
        f"Pending review: {counts[NoticeOutcome.PENDING.value]}",
        f"Not acted on:   {counts[NoticeOutcome.REFUSED.value]}",
    ]
    refused = [r for r in ack.results if r.outcome is NoticeOutcome.REFUSED]
    if refused:
        lines += ["", "Not acted on (URL number in your notice, short hash, reason):"]
        lines += [f"  #{r.index + 1} {r.target_ref}: {r.reason}" for r in refused[:_MAX_LISTED]]
    lines += ["", operator, ""]
    msg.set_content("\n".join(lines))
    return msg


class MailAcknowledger:
    """``acknowledge`` for :class:`edgeagent.intake.mail.notices.MailIntake`."""

    def __init__(self, notifier: SmtpNotifier, operator: str) -> None:
        self._notifier = notifier
        self._operator = operator

    def __call__(self, acks: Sequence[Acknowledgement]) -> None:
        sender = self._notifier.sender
        self._notifier.deliver_all(
            [(reply_message(a, sender, self._operator), [a.message.sender]) for a in acks]
        )
