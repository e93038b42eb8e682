"""The daemon's peers for the on-segment takedown test, run inside the agent's namespace.

    ip netns exec NS python -m tests.support.segment_peers DIR RECORDS_JSON SECRET_HEX

starts a real Unbound serving ``RECORDS_JSON`` (``[[name, type, value], ...]``), an SMTP
sink (aiosmtpd; one ``DIR/mail/<n>.eml`` per message) and a webhook sink checking the
HMAC (``DIR/hooks/<n>.json``), all on 127.0.0.1 of that namespace. It prints one JSON
line ``{"dns_port", "smtp_port", "webhook_url"}`` when ready and stops when its stdin
closes. :func:`running` does all that from a test (``prefix`` runs it in a namespace);
:func:`received_mails` and :func:`received_hooks` read what the sinks received;
:func:`assert_hosting_only` checks a held case's messages; :func:`takedown_toml` is the
``[takedown]`` of a daemon that uses the peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from edgeagent.lab.resolvers import unbound_server
from edgeagent.lab.sinks import SmtpSink, WebhookSink


async def serve(directory: Path, records: list[tuple[str, str, str]], secret: bytes) -> None:
    with unbound_server(records) as (_, dns_port):
        smtp = SmtpSink(directory / "mail")
        hook = WebhookSink(directory / "hooks", secret)
        await smtp.start()
        await hook.start()
        ready = {"dns_port": dns_port, "smtp_port": smtp.port, "webhook_url": hook.url}
        print(json.dumps(ready), flush=True)
        try:
            await asyncio.to_thread(sys.stdin.read)
        finally:
            await hook.close()
            await smtp.close()


@contextlib.contextmanager
def running(
    directory: Path,
    records: Sequence[tuple[str, str, str]],
    secret: bytes,
    *,
    prefix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The peers in a subprocess (``prefix``, e.g. ``ip netns exec NS``, runs it
    elsewhere) until the block ends; yields their ``dns_port``, ``smtp_port``,
    ``webhook_url`` and the ``pid`` of the process serving SMTP and the webhook (the
    resolver is a child process of its own)."""
    repo = Path(__file__).resolve().parents[2]
    argv = [*prefix, sys.executable, "-m", "tests.support.segment_peers", str(directory)]
    proc = subprocess.Popen(
        [*argv, json.dumps(records), secret.hex()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=repo, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "peers exited"
        yield {**json.loads(line), "pid": proc.pid}
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class ReceivedMail:
    """One message the SMTP sink received: its envelope recipients, parsed and raw."""

    recipients: list[str]
    message: Message
    raw: str

    @property
    def ticket(self) -> str:
        return str(self.message["X-EdgeAgent-Ticket"])


def received_mails(directory: Path) -> list[ReceivedMail]:
    """Every message in ``directory/mail``, in the order received."""
    out = []
    for path in sorted((directory / "mail").glob("*.eml")):
        raw = path.read_bytes()
        msg = message_from_bytes(raw)
        rcpts = [a.strip() for a in str(msg["X-Lab-Rcpt-To"]).split(",")]
        out.append(ReceivedMail(rcpts, msg, raw.decode()))
    return out


def received_hooks(directory: Path) -> list[dict[str, Any]]:
    """Every webhook payload in ``directory/hooks``, each with a valid signature."""
    out = []
    for path in sorted((directory / "hooks").glob("*.json")):
        record = json.loads(path.read_text())
        assert record["signature_valid"], path.name
        out.append(dict(record["payload"]))
    return out


def assert_hosting_only(
    directory: Path, ticket_id: int, reference: str, hosting: str, contact: str
) -> None:
    """A case on law-enforcement hold: no message of ``ticket_id`` went to the
    customer's ``contact``, the ``reference`` reached the ``hosting`` team's address
    alone, and the ticket system outside the team never saw it."""
    mails = [m for m in received_mails(directory) if m.ticket == str(ticket_id)]
    assert mails
    for mail in mails:
        assert mail.recipients == [hosting]
        assert contact not in mail.raw
    for mail in received_mails(directory):
        if reference in mail.raw:
            assert mail.recipients == [hosting], mail.message["Subject"]
    hooks = [h for h in received_hooks(directory) if h["ticket_id"] == ticket_id]
    assert hooks
    for hook in hooks:
        assert (hook["forward_to_customer"], hook["customer_contact"]) == (False, "")
    assert reference not in json.dumps(received_hooks(directory))


def takedown_toml(
    directory: Path, peers: Mapping[str, Any], *, keys: str = "", mail_keys: str = ""
) -> str:
    """``[takedown]`` on 192.0.2.0/24 with one customer on 192.0.2.0/26 (a CSV export
    written to ``directory``), the peers' Unbound as its resolver and notices to the
    peers' SMTP sink as the hosting team's mail; ``keys`` and ``mail_keys`` are more
    lines of ``[takedown]`` and of that notifier."""
    customers = directory / "customers.csv"
    customers.write_text(
        "prefix,customer_id,service_id,contact\n192.0.2.0/26,cust-a,web-1,noc@cust-a.example\n"
    )
    return f"""
[takedown]
enabled = true
own_prefixes = ["192.0.2.0/24"]
resolvers = [{{ host = "127.0.0.1", port = {peers["dns_port"]} }}]
{keys}
[[takedown.customers]]
kind = "csv"
path = "{customers}"

{smtp_notifier_toml("hosting-mail", peers, "hosting@isp.example")}{mail_keys}"""


def smtp_notifier_toml(
    name: str, peers: Mapping[str, Any], recipient: str, *, hosting_team: bool = True
) -> str:
    """A ``[takedown.notifiers.NAME]`` table mailing ``recipient`` through the peers' SMTP
    sink; ``hosting_team=False`` for a team outside hosting (no held case reaches it)."""
    team = "" if hosting_team else "hosting_team = false\n"
    return f"""
[takedown.notifiers.{name}]
kind = "smtp"
{team}host = "127.0.0.1"
port = {peers["smtp_port"]}
starttls = false  # the sink is plain SMTP on loopback
sender = "ntd@isp.example"
recipients = ["{recipient}"]
"""


def main() -> None:
    directory, records, secret = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    asyncio.run(serve(directory, [tuple(r) for r in records], bytes.fromhex(secret)))


if __name__ == "__main__":
    main()
