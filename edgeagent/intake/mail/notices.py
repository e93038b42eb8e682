"""From a mailbox message to stored decisions or a quarantined triage item.

Per message, in this order (:meth:`MailIntake.poll`):

1. skip it if the ledger has it (stored before; only its mark was lost);
2. parse it, check its signature (only for allow-listed senders: an unknown sender's
   domain is never looked up): S/MIME (:mod:`.smime`) when the sender has
   ``smime_ca_file`` and the message is S/MIME-signed - a verified signature puts the
   signed content in the message's place - else, or when that fails, DKIM; classify it
   (:mod:`.classify`);
3. store: a trusted notice becomes one decision per URL through
   :meth:`edgeagent.decisions.DecisionService.create_notice` (the sender's source,
   reference and jurisdiction; law-enforcement notices held by the service's rule),
   anything else one ``mail-quarantine`` triage item;
4. record it in the ledger, then mark it done in the mailbox.

The replies that acknowledge trusted notices go out once the poll ends, however it
ends, in one SMTP session (a failed reply is logged; the decisions stand).

A connection lost at any step leaves the message unmarked: the next poll fetches it
again and step 1 (or, before the ledger write, the store's refusal of a decision that
exists) keeps it from being applied twice. Logs name messages by mailbox UID and
outcome only, never by sender, subject or URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from edgeagent.decisions import DecisionRequest, DecisionService, NoticeResult, NoticeTarget
from edgeagent.errors import EdgeAgentError
from edgeagent.intake.base import IntakeChannel, IntakeContent, Submit
from edgeagent.intake.mail.classify import Quarantined, TrustedNotice, classify, sender_of
from edgeagent.intake.mail.imap import ImapMailbox
from edgeagent.intake.mail.ledger import MailLedger, message_key
from edgeagent.intake.mail.message import MailMessage, parse_message
from edgeagent.intake.mail.settings import MailIntakeSettings
from edgeagent.intake.mail.signature import DkimVerdict, verify_sender
from edgeagent.intake.mail.smime import is_signed, signed_message, verify_signer
from edgeagent.metrics import Metrics
from edgeagent.model import Action, Scope

log = logging.getLogger("edgeagent.intake.mail")

KeyLookupFn = Callable[..., bytes | None]


class MailOutcome(StrEnum):
    TRUSTED = "trusted"  # became decisions
    QUARANTINED = "quarantined"  # became a triage item
    ALREADY_DONE = "already-done"  # in the ledger: only marked


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """What a reply to a trusted notice says (see :mod:`.ack`)."""

    message: MailMessage
    notice: TrustedNotice
    results: tuple[NoticeResult, ...]


Acknowledge = Callable[[Sequence[Acknowledgement]], None]


@dataclass(frozen=True, slots=True)
class PollResult:
    trusted: int = 0
    quarantined: int = 0
    already_done: int = 0


class MailIntake:
    """The mail channel's rules on top of the decisions service and the triage queue."""

    def __init__(
        self,
        settings: MailIntakeSettings,
        decisions: DecisionService,
        submit: Submit,
        ledger: MailLedger,
        lookup: KeyLookupFn,
        *,
        acknowledge: Acknowledge | None = None,
        on_change: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.decisions = decisions
        self.submit = submit
        self.ledger = ledger
        self.lookup = lookup
        self.acknowledge = acknowledge
        self.on_change = on_change
        self.metrics = metrics

    def poll(self, mailbox: ImapMailbox) -> PollResult:
        """Take every message not yet done (module docstring); ``MailboxError`` when the
        connection fails (what was stored before it stays stored)."""
        counts = dict.fromkeys(MailOutcome, 0)
        acks: list[Acknowledgement] = []
        try:
            for uid, size in mailbox.pending():
                if size > self.settings.max_message_bytes:
                    outcome = self._oversized(mailbox.identity(uid), size)
                else:
                    outcome, ack = self.take(mailbox.fetch(uid))
                    acks.extend([ack] if ack is not None else [])
                counts[outcome] += 1
                mailbox.mark_done(uid)
                log.info("mail message uid %d: %s", uid, outcome.value)
        finally:
            if counts[MailOutcome.TRUSTED] and self.on_change is not None:
                self.on_change()
            self.send_acknowledgements(acks)
        return PollResult(
            counts[MailOutcome.TRUSTED],
            counts[MailOutcome.QUARANTINED],
            counts[MailOutcome.ALREADY_DONE],
        )

    def take(self, raw: bytes) -> tuple[MailOutcome, Acknowledgement | None]:
        """Steps 1-4 of the module docstring for one message (without the mailbox mark);
        a trusted notice's reply is returned, to be sent with the poll's others."""
        key = message_key(raw)
        if self.ledger.done(key):
            return self._counted(MailOutcome.ALREADY_DONE), None
        message, verdict = self._verified(raw, parse_message(raw))
        found = classify(message, verdict, self.settings.senders, max_urls=self.settings.max_urls)
        if isinstance(found, Quarantined):
            self.submit(IntakeChannel.MAIL_QUARANTINE, found.content)
            self.ledger.record(key)
            return self._counted(MailOutcome.QUARANTINED), None
        results = self._decide(found)
        self.ledger.record(key)
        ack = Acknowledgement(message, found, tuple(results))
        return self._counted(MailOutcome.TRUSTED), ack

    def _verified(self, raw: bytes, message: MailMessage) -> tuple[MailMessage, DkimVerdict]:
        """The message to classify and the verdict on its signature (step 2)."""
        known = None if message.problems else sender_of(message, self.settings.senders)
        if known is None:
            return message, DkimVerdict(False)
        ca_file = known[1].smime_ca_file
        if ca_file is None or not is_signed(raw):
            return message, verify_sender(raw, message.sender_domain, self.lookup)
        smime = verify_signer(raw, message.sender, ca_file, self.settings.timeout_seconds)
        if smime.content:
            # The signed content, not its wrapping: the signature part is no attachment.
            message = parse_message(signed_message(raw, smime.content))
        if smime.passed:
            return message, DkimVerdict(True)
        dkim = verify_sender(raw, message.sender_domain, self.lookup)
        return message, dkim if dkim.passed else DkimVerdict(False, smime.reason)

    def _decide(self, notice: TrustedNotice) -> list[NoticeResult]:
        sender = notice.sender
        request = DecisionRequest(
            target="",
            scope=Scope.URL,
            action=Action.BLOCK,
            reason=sender.reason,
            reference=notice.case_reference,
            source=sender.source,
            jurisdiction=sender.jurisdiction,
        )
        targets = [NoticeTarget(url, Scope.URL) for url in notice.urls]
        return self.decisions.create_notice(request, targets, f"mail:{notice.sender_name}")

    def _oversized(self, identity: str, size: int) -> MailOutcome:
        """A message too large to fetch: a person looks at it in the mailbox."""
        key = hashlib.sha256(identity.encode()).hexdigest()
        if self.ledger.done(key):
            return self._counted(MailOutcome.ALREADY_DONE)
        reason = f"{size} bytes, over max_message_bytes: not fetched, see the mailbox"
        self.submit(IntakeChannel.MAIL_QUARANTINE, IntakeContent(quarantine_reason=reason))
        self.ledger.record(key)
        return self._counted(MailOutcome.QUARANTINED)

    def send_acknowledgements(self, acks: Sequence[Acknowledgement]) -> None:
        """Reply to trusted notices (one SMTP session); a failure is logged."""
        if self.acknowledge is None or not acks:
            return
        try:
            self.acknowledge(acks)
        except EdgeAgentError as exc:
            log.warning("%d notice(s) not acknowledged: %s", len(acks), exc)

    def _counted(self, outcome: MailOutcome) -> MailOutcome:
        if self.metrics is not None:
            self.metrics.intake_mail_messages.labels(outcome.value).inc()
        return outcome


class MailPoller:
    """Polls the mailbox every ``poll_seconds`` until cancelled (the daemon's task).

    Only while ``leading()`` says so: with several central agents on one database the
    leader alone takes messages, so one mailbox is never read by two (each agent keeps
    its own ledger of processed messages).
    """

    def __init__(
        self,
        intake: MailIntake,
        open_mailbox: Callable[[], ImapMailbox],
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.intake = intake
        self.open_mailbox = open_mailbox
        self.leading = leading

    def poll_once(self) -> PollResult:
        """One session: open, take every pending message, close (``MailboxError``)."""
        with self.open_mailbox() as mailbox:
            return self.intake.poll(mailbox)

    async def run(self) -> None:
        while True:
            if not self.leading():
                await asyncio.sleep(self.intake.settings.poll_seconds)
                continue
            try:
                await asyncio.to_thread(self.poll_once)
            except EdgeAgentError as exc:  # the mailbox, DNS or the store failed this time
                log.warning("mail intake: %s (retried next poll)", exc)
                self._failed()
            except Exception:  # a bug must not end the polling for good
                log.exception("mail intake: poll failed (retried next poll)")
                self._failed()
            await asyncio.sleep(self.intake.settings.poll_seconds)

    def _failed(self) -> None:
        if self.intake.metrics is not None:
            self.intake.metrics.intake_mail_polls_failed.inc()
