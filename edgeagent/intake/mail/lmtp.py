"""LMTP: the ISP's mail server hands notices to the agent instead of a mailbox.

Each message takes the same path as a polled one (:meth:`MailIntake.take`: ledger,
DKIM, trust rule, store). The answer to DATA is the delivery report the mail server
acts on, so it is given only after the store commit: ``250`` once the decisions or the
triage item are stored, ``451`` (try again later) when storing failed, so the server
keeps the message and retries; the ledger answers a retry of a message stored before.
One recipient per transaction (LMTP answers DATA once per recipient; a second ``RCPT``
gets ``452`` and the server sends it again on its own). Listen on loopback or an
internal address only: anyone who can connect can hand in a message (which is then
judged like any other, but counts towards the quarantine).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from edgeagent.connlimits import limited
from edgeagent.errors import EdgeAgentError
from edgeagent.intake.mail.notices import MailIntake, MailOutcome
from edgeagent.limits import ConnectionLimits

log = logging.getLogger("edgeagent.intake.mail")


class LmtpDelivery:
    """aiosmtpd handler: one message in, stored before it is answered."""

    def __init__(self, intake: MailIntake, on_change: Callable[[], None] | None = None) -> None:
        self.intake = intake
        self.on_change = on_change

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if envelope.rcpt_tos:
            return "452 4.5.3 one recipient per transaction, please"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            outcome, ack = await asyncio.to_thread(self.intake.take, raw)
        except EdgeAgentError as exc:
            log.warning("lmtp: message not stored, the sender retries: %s", exc)
            return "451 4.3.0 not stored, try again later"
        except Exception:  # never a 500 quoting an exception to the mail server
            log.exception("lmtp: message not stored, the sender retries")
            return "451 4.3.0 not stored, try again later"
        log.info("lmtp message: %s", outcome.value)
        if outcome is MailOutcome.TRUSTED and self.on_change is not None:
            self.on_change()
        if ack is not None:
            await asyncio.to_thread(self.intake.send_acknowledgements, [ack])
        return "250 2.0.0 stored"


async def serve_lmtp(
    delivery: LmtpDelivery, host: str, port: int, limits: ConnectionLimits
) -> asyncio.Server:
    """Start the LMTP listener (messages over ``max_message_bytes`` are refused) under the
    ``[listeners]`` limits: a session is closed when its first message header has not
    ended within the header timeout, or after the idle timeout without a command; at the
    cap a new session takes the place of the oldest one that has not got that far."""
    # aiosmtpd logs each peer's address at INFO: the agent's logs name no peers.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    size = delivery.intake.settings.max_message_bytes

    def session() -> LMTP:
        return LMTP(
            delivery, data_size_limit=size, hostname="edgeagent", timeout=limits.idle_timeout
        )

    loop = asyncio.get_running_loop()
    return await loop.create_server(limited(session, limits), host, port)
