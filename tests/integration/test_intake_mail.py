"""E-mailed notices against a real Dovecot (IMAP over TLS) and a real ``named`` publishing
the senders' DKIM keys; acknowledgements by real SMTP (aiosmtpd).

One mailbox user and one store per test; the daemons are shared by the module.
"""

from __future__ import annotations

import asyncio
import base64
import email
import imaplib
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeagent.errors import StoreError
from edgeagent.intake.base import IntakeChannel, IntakeItem
from edgeagent.intake.mail.ack import MailAcknowledger
from edgeagent.intake.mail.imap import DONE_KEYWORD, ImapMailbox, MailboxError
from edgeagent.intake.mail.lmtp import LmtpDelivery, serve_lmtp
from edgeagent.intake.mail.notices import MailPoller
from edgeagent.intake.mail.signature import KeyLookupFailed
from edgeagent.lab.sinks import SmtpSink
from edgeagent.limits import DEFAULT_LIMITS, ConnectionLimits
from edgeagent.model import DecisionStatus, NoticeSource
from edgeagent.store import SqliteStore
from edgeagent.takedown.notifiers.smtp import SmtpNotifier
from tests.support.binaries import require_binary
from tests.support.mail import (
    FORGER,
    HOTLINE,
    POLICE,
    CuttingRelay,
    MailWorld,
    notice,
    start_world,
    urls_body,
)
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

URLS = ["http://bad.example/a.html", "http://bad.example/b.html?x=1", "https://worse.example/c"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailWorld]:
    require_binary("dovecot")
    require_binary("named")
    w = start_world(tmp_path_factory.mktemp("mailworld"))
    try:
        yield w
    finally:
        w.close()


def _quarantined(store: SqliteStore) -> list[IntakeItem]:
    return store.list_intake_items(channel=IntakeChannel.MAIL_QUARANTINE)


def _flags(world: MailWorld, user: str) -> list[bytes]:
    with imaplib.IMAP4_SSL(
        "127.0.0.1", world.mailbox.port, ssl_context=world.mailbox.tls_context()
    ) as m:
        m.login(user, world.mailbox.users[user])
        m.select("INBOX")
        _, rows = m.fetch("1:*", "(FLAGS)")
    return [r for r in rows if isinstance(r, bytes)]


async def test_trusted_notice_becomes_decisions_and_is_acknowledged(
    world: MailWorld, tmp_path: Path
) -> None:
    user = world.new_user()
    raw = notice(HOTLINE, "Notice HL-2026-41", urls_body([*URLS, URLS[0]], "HL-2026-41"))
    world.deliver(user, world.sign(raw, "hotline.test"))
    sink = SmtpSink(tmp_path / "sent")
    await sink.start()
    try:
        notifier = SmtpNotifier("127.0.0.1", sink.port, "ntd@isp.test", (), starttls=False)
        poller, store = world.intake(tmp_path, user, MailAcknowledger(notifier, "ISP NTD team"))
        result = await asyncio.to_thread(poller.poll_once)
    finally:
        await sink.close()
    assert (result.trusted, result.quarantined) == (1, 0)
    decisions = store.list_decisions()
    assert sorted(d.indicator.value for d in decisions) == sorted(URLS)
    assert {d.reference for d in decisions} == {"HL-2026-41"}
    assert {d.notice_source for d in decisions} == {NoticeSource.HOTLINE}
    assert {d.status for d in decisions} == {DecisionStatus.ACTIVE}
    assert {d.actor for d in decisions} == {"mail:hotline"}
    assert not any(d.hold for d in decisions)
    assert _quarantined(store) == []
    # The reply goes to the sender, names the case and the counts, never a URL.
    replies = sorted((tmp_path / "sent").glob("*.eml"))
    assert len(replies) == 1
    reply = email.message_from_bytes(replies[0].read_bytes())
    assert reply["To"] == HOTLINE
    assert reply["Subject"] == "Re: Notice HL-2026-41"
    text = reply.get_payload()
    assert "Case reference: HL-2026-41" in text
    assert "Blocked now:    3" in text
    assert "bad.example" not in replies[0].read_text()
    # Marked done in the mailbox; the next poll finds nothing.
    assert DONE_KEYWORD.encode() in _flags(world, user)[0]
    again = await asyncio.to_thread(poller.poll_once)
    assert (again.trusted, again.quarantined, again.already_done) == (0, 0, 0)
    assert len(store.list_decisions()) == 3


def test_police_notice_with_attached_lists_is_held(world: MailWorld, tmp_path: Path) -> None:
    user = world.new_user()
    csv = b"url,seen\r\nhttp://listed.example/one.html,2026-11-30\r\n"
    json_list = b'{"urls": ["http://listed.example/two.html", 7]}'
    raw = notice(
        POLICE,
        "Notice from the police",
        "Case: POL/7781\nSee the attached lists.\n",
        attachments=[("text/csv", csv, "urls.csv"), ("application/json", json_list, "more.json")],
    )
    world.deliver(user, world.sign(raw, "police.test"))
    poller, store = world.intake(tmp_path, user)
    assert poller.poll_once().trusted == 1
    decisions = store.list_decisions()
    assert sorted(d.indicator.value for d in decisions) == [
        "http://listed.example/one.html",
        "http://listed.example/two.html",
    ]
    assert {(d.reference, d.notice_source, d.hold, d.jurisdiction) for d in decisions} == {
        ("POL/7781", NoticeSource.LAW_ENFORCEMENT, True, "NL")
    }


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "DKIM: not signed"),
        ("unknown-sender", "sender not on the allow-list"),
        ("forged-from", "DKIM: signed by forger.test, not by the sender's domain"),
        ("modified-body", "DKIM: the body does not match the signature"),
        ("image", "attachments that are not lists were discarded unopened"),
        ("archive", "attachments that are not lists were discarded unopened"),
        ("malformed", "malformed message"),
        ("no-reference", "no case reference matching the sender's pattern"),
    ],
)
def test_untrusted_messages_are_quarantined_never_applied(
    world: MailWorld, tmp_path: Path, case: str, reason: str
) -> None:
    user = world.new_user()
    body = urls_body(URLS)
    plain = notice(HOTLINE, "Notice HL-2026-9", body)
    image = b"\x89PNG\r\n\x1a\n" + b"\x00" * 3000
    raw = {
        "unsigned": plain,
        "unknown-sender": world.sign(notice(FORGER, "HL-2026-9", body), "forger.test"),
        # A valid signature, of the forger's own domain, on a message claiming the hotline.
        "forged-from": world.keys["forger.test"].sign(plain),
        "modified-body": world.sign(plain, "hotline.test").replace(
            b"bad.example/a.html", b"bad.example/z.html"
        ),
        "image": world.sign(
            notice(HOTLINE, "HL-2026-9", body, attachments=[("image/png", image, "shot.png")]),
            "hotline.test",
        ),
        "archive": world.sign(
            notice(
                HOTLINE,
                "HL-2026-9",
                body,
                attachments=[("application/zip", b"PK\x03\x04" * 50, "a.zip")],
            ),
            "hotline.test",
        ),
        "malformed": world.sign(
            b"From: notices@hotline.test\r\nFrom: other@hotline.test\r\nSubject: HL-2026-9\r\n"
            b"Content-Type: multipart/mixed\r\n\r\n" + body.encode() + b"\r\n",
            "hotline.test",
        ),
        "no-reference": world.sign(
            notice(HOTLINE, "Notice", urls_body(URLS, "none")), "hotline.test"
        ),
    }[case]
    world.deliver(user, raw)
    poller, store = world.intake(tmp_path, user)
    result = poller.poll_once()
    assert (result.trusted, result.quarantined) == (0, 1)
    assert store.list_decisions() == []
    [item] = _quarantined(store)
    assert item.content.quarantine_reason.startswith(reason), item.content.quarantine_reason
    if case in ("image", "archive"):
        [kind] = item.content.attachments
        assert kind.startswith(("image/png, ", "application/zip, "))
        assert kind.endswith(" bytes")
        stored = item.content.to_json()
        assert base64.b64encode(image[:30]).decode()[:20] not in stored
        assert "PNG" not in stored
        assert "PK" not in stored
    # A sender the allow-list names keeps its claimed source for the person to check.
    expected = "" if case in ("unknown-sender", "malformed") else "hotline"
    assert item.content.notice_source == expected
    assert DONE_KEYWORD.encode() in _flags(world, user)[0]


def test_mailbox_dropped_mid_session_loses_nothing_and_applies_nothing_twice(
    world: MailWorld, tmp_path: Path
) -> None:
    """The connection is cut at several points of a session (during a fetch, between a
    store commit and the mark, ...); after the next poll every message is stored once."""

    def fill(user: str) -> None:
        for n in range(4):
            urls = [f"http://cut{n}.example/{i}.html" for i in range(3)]
            ref = f"HL-2026-{100 + n}"
            world.deliver(
                user, world.sign(notice(HOTLINE, ref, urls_body(urls, ref)), "hotline.test")
            )
        world.deliver(user, notice(FORGER, "hello", urls_body(["http://spam.example/"])))

    def run(directory: Path, cut_after: int | None) -> tuple[int, SqliteStore, CuttingRelay]:
        directory.mkdir()
        user = world.new_user()
        fill(user)
        relay = CuttingRelay(world.mailbox.port, cut_after)
        intake = world.intake(directory, user)[0].intake
        password = world.mailbox.users[user]
        poller = MailPoller(intake, lambda: world.open(user, password, relay.port))
        failures = 0
        for _ in range(3):
            try:
                poller.poll_once()
            except MailboxError:
                failures += 1
            if cut_after is None:
                break  # measuring one whole session
        relay.close()
        return failures, intake.decisions.store, relay  # type: ignore[return-value]

    _, _, whole = run(tmp_path / "whole", None)
    total = whole.sent  # one session that takes all five messages
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.9):
        failures, store, relay = run(tmp_path / f"cut{fraction}", int(total * fraction))
        assert (relay.cuts, failures) == (1, 1), fraction
        decisions = store.list_decisions()
        assert len(decisions) == 12, fraction
        assert len({d.indicator.value for d in decisions}) == 12
        assert len(_quarantined(store)) == 1, fraction


def test_a_lost_mark_is_not_a_second_application(world: MailWorld, tmp_path: Path) -> None:
    """Stored, then the mark fails: the ledger answers the next fetch."""
    user = world.new_user()
    world.deliver(user, notice(FORGER, "hi", urls_body(["http://one.example/"])))
    world.deliver(user, world.sign(notice(HOTLINE, "HL-2026-5", urls_body(URLS)), "hotline.test"))
    poller, store = world.intake(tmp_path, user)
    password = world.mailbox.users[user]

    class MarkFails(ImapMailbox):
        def mark_done(self, uid: int) -> None:
            raise MailboxError("imap: mark lost")

    failing = MailPoller(
        poller.intake,
        lambda: MarkFails(
            "127.0.0.1", world.mailbox.port, user, password, context=world.mailbox.tls_context()
        ),
    )
    with pytest.raises(MailboxError):
        failing.poll_once()
    assert len(_quarantined(store)) == 1
    result = poller.poll_once()
    assert (result.trusted, result.quarantined, result.already_done) == (1, 0, 1)
    assert len(_quarantined(store)) == 1
    assert len(store.list_decisions()) == 3
    assert (poller.poll_once().already_done, len(store.list_decisions())) == (0, 3)


async def test_lmtp_answers_only_after_the_store_commit(
    world: MailWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ISP's mail server delivers over LMTP: 250 once stored, 451 when the store
    fails (the server keeps the message and retries), a retry is not applied twice."""
    poller, store = world.intake(tmp_path, world.new_user())
    intake = poller.intake
    port = free_port(udp=False)
    server = await serve_lmtp(LmtpDelivery(intake), "127.0.0.1", port, DEFAULT_LIMITS)
    signed = world.sign(
        notice(HOTLINE, "HL-2026-77", urls_body(URLS, "HL-2026-77")), "hotline.test"
    )

    def send(raw: bytes, rcpts: list[str]) -> dict[str, tuple[int, bytes | str]]:
        with smtplib.LMTP("127.0.0.1", port) as lmtp:
            try:
                return dict(lmtp.sendmail(HOTLINE, rcpts, raw))
            except smtplib.SMTPDataError as exc:
                return {"*": (exc.smtp_code, exc.smtp_error)}

    try:

        def failing(*args: object, **kwargs: object) -> object:
            raise StoreError("disk full")

        monkeypatch.setattr(intake.decisions, "create_notice", failing)
        refused = await asyncio.to_thread(send, signed, ["notices@isp.test"])
        assert refused["*"][0] == 451
        assert store.list_decisions() == []
        monkeypatch.undo()
        # One recipient per transaction: the second is refused for a retry of its own.
        refused = await asyncio.to_thread(send, signed, ["notices@isp.test", "b@isp.test"])
        assert refused == {"b@isp.test": (452, b"4.5.3 one recipient per transaction, please")}
        assert len(store.list_decisions()) == 3
        # A retry after a lost answer: stored once.
        assert await asyncio.to_thread(send, signed, ["notices@isp.test"]) == {}
        assert len(store.list_decisions()) == 3
        unsigned = notice(HOTLINE, "HL-2026-78", urls_body(URLS))
        assert await asyncio.to_thread(send, unsigned, ["notices@isp.test"]) == {}
        [item] = _quarantined(store)
        assert item.content.quarantine_reason == "DKIM: not signed"
    finally:
        server.close()
        await server.wait_closed()


async def test_lmtp_sessions_are_held_to_the_listener_limits(
    world: MailWorld, tmp_path: Path
) -> None:
    """The LMTP listener under ``[listeners]`` as every HTTP one: a session whose first
    message header has not ended within the header timeout is closed, silent sessions
    over the cap make room for a real delivery, an idle session ends at the idle timeout."""
    poller, store = world.intake(tmp_path, world.new_user())
    port = free_port(udp=False)
    limits = ConnectionLimits(header_timeout=0.5, idle_timeout=1.0, max_connections=16)
    server = await serve_lmtp(LmtpDelivery(poller.intake), "127.0.0.1", port, limits)
    signed = world.sign(
        notice(HOTLINE, "HL-2026-90", urls_body(URLS, "HL-2026-90")), "hotline.test"
    )

    async def closed_after(greet: bytes = b"") -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        began = time.monotonic()
        writer.write(greet)
        while await reader.read(4096):
            pass
        writer.close()
        return time.monotonic() - began

    def deliver() -> dict[str, tuple[int, bytes]]:
        with smtplib.LMTP("127.0.0.1", port) as lmtp:
            return dict(lmtp.sendmail(HOTLINE, ["notices@isp.test"], signed))

    try:
        for greet in (b"", b"LHLO mta.isp.test\r\nMAIL FROM:<a@hotline.test>\r\n"):
            assert 0.4 < await asyncio.wait_for(closed_after(greet), 5) < 1.5
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
        assert await asyncio.to_thread(deliver) == {}
        assert len(store.list_decisions()) == 3
        for _, writer in silent:
            writer.close()
        # A session past its first header is held by the idle timeout alone.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"LHLO mta.isp.test\r\n")
        began = time.monotonic()
        while await asyncio.wait_for(reader.read(4096), 5):
            if time.monotonic() - began < 0.3:  # a header end: the header timer stops
                writer.write(b"NOOP\r\n\r\n")
        assert 0.9 < time.monotonic() - began < 3.0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


def test_a_dns_failure_leaves_the_notice_for_the_next_poll(
    world: MailWorld, tmp_path: Path
) -> None:
    """No answer about the key is no verdict: the notice is neither quarantined nor
    marked, and the next poll (DNS back) trusts it."""
    user = world.new_user()
    world.deliver(user, world.sign(notice(HOTLINE, "HL-2026-60", urls_body(URLS)), "hotline.test"))
    dead = free_port()  # nothing answers there
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    broken, store = world.intake(
        tmp_path / "a", user, dkim_resolvers=[{"host": "127.0.0.1", "port": dead}]
    )
    with pytest.raises(KeyLookupFailed):
        broken.poll_once()
    assert store.list_decisions() == []
    assert _quarantined(store) == []
    assert DONE_KEYWORD.encode() not in _flags(world, user)[0]
    working, other = world.intake(tmp_path / "b", user)
    assert working.poll_once().trusted == 1
    assert len(other.list_decisions()) == 3
