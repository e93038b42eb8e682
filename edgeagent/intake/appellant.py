"""Tells an appellant who left an e-mail address what became of their appeal.

Sent through a takedown SMTP notifier (``[intake] notify_via``), to the appellant alone.
The message names the appeal's reference, the outcome and the supervisor's reason; it
never quotes the blocked address or the appellant's statement back.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

from edgeagent.intake.base import IntakeItem, IntakeState
from edgeagent.takedown.notifiers.smtp import SmtpNotifier

_OUTCOME = {
    IntakeState.UPHELD: "We reviewed the block and it stays in place.",
    IntakeState.REVOKED: "We reviewed the block and have lifted it.",
}


def outcome_message(item: IntakeItem, sender: str, operator: str) -> EmailMessage:
    """The e-mail for a decided appeal or challenge (plain text, no attachment)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = item.content.contact
    msg["Subject"] = f"[{item.reference}] Your appeal: {item.state.value}"
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg.set_content(
        "\n".join(
            (
                f"Reference: {item.reference}",
                "",
                _OUTCOME.get(item.state, f"Outcome: {item.state.value}"),
                f"Reason: {item.reason}",
                "",
                f"{operator}",
                "",
            )
        )
    )
    return msg


class AppellantMail:
    """``notify`` for :class:`edgeagent.intake.triage.Triage` over an SMTP notifier."""

    def __init__(self, notifier: SmtpNotifier, operator: str) -> None:
        self._notifier = notifier
        self._operator = operator

    def __call__(self, item: IntakeItem) -> None:
        if "@" not in item.content.contact:
            return  # a telephone number or the like: the team calls back by hand
        msg = outcome_message(item, self._notifier.sender, self._operator)
        self._notifier.deliver(msg, [item.content.contact])
