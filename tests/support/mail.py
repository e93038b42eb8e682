"""E-mailed notices for the tests: senders with DKIM keys, a DNS server publishing them,
a real Dovecot mailbox, and the mail intake wired over a real SQLite store.

:class:`MailWorld` holds the daemons (one authoritative ``named`` for ``hotline.test``,
``police.test`` and ``forger.test``, one Dovecot) for a module; each test takes a fresh
mailbox user and a fresh store (:meth:`MailWorld.intake`).
"""

from __future__ import annotations

import itertools
import secrets
import select
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from edgeagent.intake.mail.imap import ImapMailbox
from edgeagent.intake.mail.ledger import MailLedger
from edgeagent.intake.mail.notices import Acknowledge, MailIntake, MailPoller
from edgeagent.intake.mail.settings import MailIntakeSettings
from edgeagent.intake.mail.signature import KeyLookup
from edgeagent.intake.triage import Triage
from edgeagent.lab.daemons import RunningDaemon
from edgeagent.lab.mailbox import DkimKey, RunningMailbox, deliver, dkim_key
from edgeagent.lab.resolvers import start_authoritative
from edgeagent.store import SqliteStore
from tests.support.api import make_context, make_guard

HOTLINE = "notices@hotline.test"
POLICE = "cyber@police.test"
FORGER = "someone@forger.test"
DOMAINS = ("hotline.test", "police.test", "forger.test")

SENDERS: dict[str, dict[str, str]] = {
    "hotline": {
        "address": HOTLINE,
        "source": "hotline",
        "reference_pattern": r"\b(HL-\d{4}-\d+)\b",
    },
    "police": {
        "address": POLICE,
        "source": "law-enforcement",
        "reference_pattern": r"Case:\s*(POL/\d+)",
        "jurisdiction": "NL",
    },
}
_users = itertools.count(1)


def zone(domain: str, key: DkimKey) -> str:
    return (
        f"$ORIGIN {domain}.\n$TTL 300\n"
        f"@ SOA ns.{domain}. hostmaster.{domain}. 1 3600 600 86400 300\n"
        f"@ NS ns.{domain}.\nns A 127.0.0.1\n" + key.txt_record()
    )


def dict_lookup(keys: dict[str, DkimKey]) -> Callable[..., bytes | None]:
    """A DKIM key lookup answered from ``keys`` instead of DNS (unit tests)."""
    records = {
        f"{k.record_name}.": k.txt_record().split("( ")[1].rsplit(" )")[0].replace('" "', "")
        for k in keys.values()
    }

    def lookup(name: bytes | str, timeout: float = 5.0) -> bytes | None:
        key = name.decode() if isinstance(name, bytes) else name
        value = records.get(key if key.endswith(".") else key + ".")
        return value.strip('"').encode() if value else None

    return lookup


def start_dns(workdir: Path, keys: dict[str, DkimKey]) -> RunningDaemon:
    """One authoritative ``named`` publishing each domain's DKIM key."""
    return start_authoritative(workdir, {d: zone(d, k) for d, k in keys.items()})


def notice(
    sender: str,
    subject: str,
    body: str,
    *,
    attachments: Sequence[tuple[str, bytes, str]] = (),
) -> bytes:
    """A plain notice; ``attachments``: ``(content type, data, file name)``."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "notices@isp.test"
    msg["Subject"] = subject
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    msg.set_content(body)
    for kind, data, name in attachments:
        maintype, subtype = kind.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def urls_body(urls: Sequence[str], reference: str = "HL-2026-1") -> str:
    lines = "\n".join(urls)
    return f"Dear abuse team,\n\nplease act on these ({reference}):\n\n{lines}\n\nHotline\n"


@dataclass
class MailWorld:
    """Signing keys, their DNS and one Dovecot (see the module docstring)."""

    dns: RunningDaemon
    mailbox: RunningMailbox
    keys: dict[str, DkimKey]
    stores: list[SqliteStore] = field(default_factory=list)

    def sign(self, raw: bytes, domain: str) -> bytes:
        return self.keys[domain].sign(raw)

    def new_user(self) -> str:
        user = f"notices{next(_users)}@isp.test"
        self.mailbox.add_user(user, secrets.token_urlsafe(12))
        return user

    def deliver(self, user: str, raw: bytes) -> None:
        deliver(self.mailbox, user, [raw])

    def config(self, user: str, directory: Path) -> dict[str, object]:
        """``[intake.mail]`` for ``user``'s mailbox, as TOML would give it."""
        secret = directory / f"{user}.password"
        secret.write_text(self.mailbox.users[user], encoding="utf-8")
        return {
            "enabled": True,
            "host": "127.0.0.1",
            "port": self.mailbox.port,
            "ca_file": str(self.mailbox.cert),
            "user": user,
            "password_file": str(secret),
            "dkim_resolvers": [{"host": "127.0.0.1", "port": self.dns.port}],
            "senders": SENDERS,
        }

    def settings(self, user: str, directory: Path, **extra: object) -> MailIntakeSettings:
        return MailIntakeSettings.model_validate({**self.config(user, directory), **extra})

    def intake(
        self, directory: Path, user: str, acknowledge: Acknowledge | None = None, **extra: object
    ) -> tuple[MailPoller, SqliteStore]:
        """The mail intake of ``user``'s mailbox over a fresh store in ``directory``."""
        store = SqliteStore(directory / "store.db")
        self.stores.append(store)
        ctx = make_context(store, make_guard(directory / "guard"))
        settings = self.settings(user, directory, **extra)
        intake = MailIntake(
            settings,
            ctx.decisions,
            Triage(ctx.decisions).submit,
            MailLedger.in_state_dir(directory),
            KeyLookup(settings.dkim_resolvers, timeout=1.0),
            acknowledge=acknowledge,
        )
        password = self.mailbox.users[user]
        return MailPoller(intake, lambda: self.open(user, password, settings.port)), store

    def open(self, user: str, password: str, port: int | None = None) -> ImapMailbox:
        return ImapMailbox(
            "127.0.0.1",
            port or self.mailbox.port,
            user,
            password,
            context=self.mailbox.tls_context(),
            timeout=10.0,
        )

    def close(self) -> None:
        for store in self.stores:
            store.close()
        self.mailbox.stop()
        self.dns.stop()


def start_world(workdir: Path) -> MailWorld:
    from edgeagent.lab.mailbox import start_dovecot

    keys = {d: dkim_key(d, "sel2026") for d in DOMAINS}
    dns = start_dns(workdir / "dns", keys)
    try:
        mailbox = start_dovecot({})
    except Exception:
        dns.stop()
        raise
    return MailWorld(dns, mailbox, keys)


class CuttingRelay:
    """A TCP relay to ``port`` on loopback that drops the connection once the server has
    sent ``cut_after`` bytes (``None``: never). It counts what the server sent, so a run
    without a cut measures a whole session. One connection at a time; a thread each."""

    def __init__(self, port: int, cut_after: int | None = None) -> None:
        self.target = port
        self.cut_after = cut_after
        self.sent = 0
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with client, socket.create_connection(("127.0.0.1", self.target)) as server:
                self._relay(client, server)

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        while True:
            ready, _, _ = select.select(list(peers), [], [], 30)
            if not ready:
                return
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                if sock is server:
                    if self.cut_after is not None and self.sent + len(data) > self.cut_after:
                        keep = self.cut_after - self.sent
                        client.sendall(data[:keep])
                        self.sent += keep
                        self.cut_after = None  # one cut; the next connection passes
                        self.cuts += 1
                        return
                    self.sent += len(data)
                peers[sock].sendall(data)

    def close(self) -> None:
        self._listener.close()
