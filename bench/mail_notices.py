"""E-mailed notices: 1,000 DKIM-signed notices of 10 URLs each, taken from a real mailbox.

Real pieces throughout: Dovecot (IMAP over TLS, :mod:`edgeagent.lab.mailbox`), an
authoritative ``named`` publishing the hotline's DKIM key, the agent's own wiring of the
mail channel (``Agent.build`` from a config with ``[intake.mail]``, then
:func:`edgeagent.intake.listener.mail_channel_for`) over its SQLite store, and an SMTP sink
(aiosmtpd) taking the acknowledgements. One message in ten is unsigned and goes to the
quarantine. The messages are in the mailbox before the clock starts; it stops when one
poll has fetched, checked, stored, acknowledged and marked every message. The agent's
store and ledger sync to disk as in production; the throwaway Dovecot does not
(``mail_fsync = never``): the figure is the agent's, not this disk's.

Goal: <= 60 s for 1,000 notices of 10 URLs each on this machine.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench import Row

ANCHOR = "goal: 1,000 e-mailed notices of 10 URLs each processed in <= 60 s"
SENDER = "notices@hotline.test"
USER = "notices@isp.test"
URLS_PER_NOTICE = 10
UNSIGNED_EVERY = 10  # one message in ten: unsigned, to the quarantine


class _Count:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received += 1
        return "250 OK"


def _notice(i: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = USER
    msg["Subject"] = f"Notice HL-2026-{i}"
    msg["Message-ID"] = make_msgid(domain="hotline.test")
    urls = "\n".join(f"http://n{i:04d}.bench.example/{j}/page.html" for j in range(URLS_PER_NOTICE))
    msg.set_content(f"Please act on these:\n{urls}\n")
    return msg.as_bytes().replace(b"\n", b"\r\n")


def _config(tmp: Path, imap_port: int, cert: Path, dns_port: int, smtp_port: int) -> Path:
    (tmp / "imap-password").write_text("bench-secret\n", encoding="utf-8")
    config = tmp / "edgeagent.toml"
    config.write_text(
        f"""
[agent]
state_dir = "{tmp / "state"}"
[intake.mail]
enabled = true
host = "127.0.0.1"
port = {imap_port}
ca_file = "{cert}"
user = "{USER}"
password_file = "{tmp / "imap-password"}"
dkim_resolvers = [{{ host = "127.0.0.1", port = {dns_port} }}]
ack_via = "ack"
[intake.mail.senders.hotline]
address = "{SENDER}"
source = "hotline"
reference_pattern = '\\b(HL-[0-9]{{4}}-[0-9]+)\\b'
[takedown.notifiers.ack]
kind = "smtp"
host = "127.0.0.1"
port = {smtp_port}
starttls = false
sender = "ntd@isp.test"
recipients = ["hosting@isp.test"]
""",
        encoding="utf-8",
    )
    return config


def measure(n: int = 1000) -> dict[str, Any]:
    from edgeagent.config import load_config
    from edgeagent.intake.base import IntakeChannel, IntakeState
    from edgeagent.intake.listener import mail_channel_for, triage_for
    from edgeagent.lab.daemons import free_tcp_port
    from edgeagent.lab.mailbox import deliver, dkim_key, start_dovecot
    from edgeagent.lab.resolvers import start_authoritative
    from edgeagent.service import Agent

    key = dkim_key("hotline.test", "bench")
    zone = (
        "$TTL 300\n@ SOA ns.hotline.test. h.hotline.test. 1 3600 600 86400 300\n"
        "@ NS ns.hotline.test.\nns A 127.0.0.1\n" + key.txt_record()
    )
    with tempfile.TemporaryDirectory(prefix="edgeagent-mail-bench-") as name:
        tmp = Path(name)
        dns = start_authoritative(tmp / "dns", {"hotline.test": zone})
        mailbox = start_dovecot({USER: "bench-secret"})
        sink = _Count()
        smtp_port = free_tcp_port()
        controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        try:
            messages = [
                _notice(i) if i % UNSIGNED_EVERY == 0 else key.sign(_notice(i)) for i in range(n)
            ]
            deliver(mailbox, USER, messages)
            config = _config(tmp, mailbox.port, mailbox.cert, dns.port, smtp_port)
            agent = Agent.build(load_config(config))
            try:
                channel = mail_channel_for(agent, triage_for(agent))
                poller = channel.poller if channel is not None else None
                if poller is None:
                    raise RuntimeError("the mail channel has no mailbox to poll")
                t0 = time.perf_counter()
                result = poller.poll_once()
                seconds = time.perf_counter() - t0
                decisions = agent.store.count_decisions()
                counts = agent.store.count_intake_items()
            finally:
                agent.close()
        finally:
            controller.stop()
            mailbox.stop()
            dns.stop()
    quarantined = counts.get((IntakeChannel.MAIL_QUARANTINE, IntakeState.PENDING), 0)
    return {
        "notices": n,
        "seconds": seconds,
        "trusted": result.trusted,
        "quarantined": result.quarantined,
        "decisions": decisions,
        "quarantine_size": quarantined,
        "acknowledged": sink.received,
    }


def rows(quick: bool) -> list[Row]:
    n = 30 if quick else 1000
    r = measure(n)
    unsigned = len(range(0, n, UNSIGNED_EVERY))
    expected = (n - unsigned, unsigned, (n - unsigned) * URLS_PER_NOTICE, n - unsigned)
    got = (r["trusted"], r["quarantine_size"], r["decisions"], r["acknowledged"])
    if got != expected:
        raise RuntimeError(f"(trusted, quarantined, decisions, acks) {got} != {expected}")
    goal = "<= 60 s" if n == 1000 else ""
    return [
        Row(
            f"{n:,} e-mailed notices x {URLS_PER_NOTICE} URLs: fetched, DKIM-checked, "
            "stored, acknowledged, marked",
            r["seconds"],
            "s",
            goal,
            ANCHOR,
        ),
        Row("  per notice", r["seconds"] / n * 1000, "ms", "", ANCHOR),
        Row(
            "  quarantine size afterwards (the unsigned ones)",
            r["quarantine_size"],
            "items",
            "",
            "one message in ten is unsigned by design",
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1000), indent=2))
