"""The lab's ways in for people: report page, appeal page and a mailbox for notices.

- the public pages on their own loopback port (``[intake] enabled``); the stop page's
  appeal link points at the appeal page, and Squid's helper reads the agent's appeal key
  (:func:`prepare_appeal_key`) so the link names the blocking entry by reference;
- a Dovecot mailbox (:func:`edgeagent.lab.mailbox.start_dovecot`, IMAP over TLS with a
  self-signed certificate) that the agent polls, one allow-listed sender
  (:data:`TRUSTED_SENDER`) whose DKIM public key the lab's authoritative DNS publishes
  (a TXT record in ``lab.test``); the private key's path is in ``lab.json``, so a
  newcomer can sign a notice the agent accepts, and send an unsigned one it quarantines;
- appellants' outcomes and notice acknowledgements go to the lab's SMTP sink.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeagent.intake.entryref import KEY_FILE_NAME, load_key
from edgeagent.lab.daemons import HOST, ProcessGroup, free_tcp_port
from edgeagent.lab.mailbox import DkimKey, RunningMailbox, dkim_key, start_dovecot

SENDER_DOMAIN = "hotline.lab.test"  # inside the lab's zone: its DNS publishes the key
TRUSTED_SENDER = f"notices@{SENDER_DOMAIN}"
SELECTOR = "lab"
MAILBOX_USER = "notices@isp.lab.test"
REFERENCE_PATTERN = r"\b(LAB-[0-9]+)\b"


def prepare_appeal_key(index_dir: Path, group: str | None) -> Path:
    """Create the agent's appeal key before Squid starts, beside the proxy index in
    ``index_dir`` (which Squid's helpers reach), 0640 with ``group``."""
    load_key(index_dir, group)
    return index_dir / KEY_FILE_NAME


@dataclass
class LabIntake:
    pages_port: int
    mailbox: RunningMailbox
    key: DkimKey
    key_path: Path
    password_path: Path

    @property
    def pages(self) -> str:
        return f"http://{HOST}:{self.pages_port}"

    def info(self) -> dict[str, Any]:
        """The ``lab.json`` keys: ``report_page``, ``appeal_page``, ``mailbox``."""
        return {
            "report_page": f"{self.pages}/report",
            "appeal_page": f"{self.pages}/appeal",
            "mailbox": {
                "imap": f"{self.mailbox.host}:{self.mailbox.port}",
                "user": MAILBOX_USER,
                "password": self.mailbox.users[MAILBOX_USER],
                "tls_certificate": str(self.mailbox.cert),
                "trusted_sender": TRUSTED_SENDER,
                "reference_pattern": REFERENCE_PATTERN,
                "dkim_key": str(self.key_path),
                "dkim_selector": SELECTOR,
            },
        }

    def config_text(self, dns_port: int, notifier: str) -> str:
        """``[intake]`` and ``[intake.mail]`` for the lab (``notifier``: the SMTP sink's)."""
        return f"""
[intake]
enabled = true
host = "{HOST}"
port = {self.pages_port}
operator = "Lab ISP"
notify_via = "{notifier}"

[intake.mail]
enabled = true
host = "{self.mailbox.host}"
port = {self.mailbox.port}
ca_file = "{self.mailbox.cert}"
user = "{MAILBOX_USER}"
password_file = "{self.password_path}"
poll_seconds = 2.0
dkim_resolvers = [{{ host = "{HOST}", port = {dns_port} }}]
ack_via = "{notifier}"

[intake.mail.senders.lab-hotline]
address = "{TRUSTED_SENDER}"
source = "hotline"
reference_pattern = '{REFERENCE_PATTERN}'
"""

    def stop(self) -> None:
        self.mailbox.stop()


def start_lab_intake(directory: Path, secrets_dir: Path, group: ProcessGroup) -> LabIntake:
    """The mailbox (in ``directory``) and the keys; the pages start with the agent."""
    key = dkim_key(SENDER_DOMAIN, SELECTOR)
    key_path = key.write_private(secrets_dir / "dkim-lab-hotline.pem")
    password = secrets.token_urlsafe(16)
    password_path = secrets_dir / "imap-password"
    password_path.touch(mode=0o600)
    password_path.write_text(password + "\n", encoding="utf-8")
    mailbox = start_dovecot({MAILBOX_USER: password}, group=group, parent=directory)
    return LabIntake(free_tcp_port(), mailbox, key, key_path, password_path)
