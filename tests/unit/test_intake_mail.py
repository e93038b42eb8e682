"""E-mailed notices without a server: parsing, DKIM rules, the trust rule, the reply,
``[intake.mail]`` validation. DKIM keys are real; the key lookup is a dict here (the
integration tests publish them in a real ``named``)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgeagent.config import load_config
from edgeagent.decisions import NoticeOutcome, NoticeResult
from edgeagent.errors import ConfigError
from edgeagent.intake.mail.ack import reply_message
from edgeagent.intake.mail.classify import Quarantined, TrustedNotice, classify
from edgeagent.intake.mail.message import find_urls, parse_message
from edgeagent.intake.mail.notices import Acknowledgement, MailIntake
from edgeagent.intake.mail.settings import MailIntakeSettings, MailSenderSettings
from edgeagent.intake.mail.signature import DkimVerdict, verify_sender
from edgeagent.lab.mailbox import dkim_key
from edgeagent.metrics import Metrics
from edgeagent.proxy.squid_helper import read_appeal_key
from tests.support.mail import HOTLINE, SENDERS, dict_lookup, notice, urls_body

KEYS = {d: dkim_key(d, "s1") for d in ("hotline.test", "forger.test")}
SENDER_SETTINGS = {n: MailSenderSettings.model_validate(s) for n, s in SENDERS.items()}
URLS = ["http://bad.example/a.html", "https://bad.example/b?x=1"]


LOOKUP = dict_lookup(KEYS)


def test_urls_come_from_the_body_and_attached_lists_in_order_once() -> None:
    raw = notice(
        HOTLINE,
        "HL-2026-1",
        f"see {URLS[0]}, and ({URLS[1]}).\n{URLS[0]}\n",
        attachments=[
            ("text/csv", b"url\r\nhttp://csv.example/1,x\r\n", "list.csv"),
            ("application/json", b'["http://json.example/2", {"no": 1}]', "l.json"),
            ("text/plain", b"http://txt.example/3\n", "l.txt"),
        ],
    )
    message = parse_message(raw)
    assert message.urls == (
        *URLS,
        "http://csv.example/1",
        "http://json.example/2",
        "http://txt.example/3",
    )
    assert message.sender == HOTLINE
    assert message.problems == ()
    assert message.set_aside == ()


def test_images_archives_and_documents_are_set_aside_unopened() -> None:
    png = b"\x89PNG\r\n" + bytes(range(256)) * 4
    raw = notice(
        HOTLINE,
        "HL-2026-1",
        urls_body(URLS),
        attachments=[
            ("image/png", png, "a.png"),
            ("application/zip", b"PK\x03\x04" * 10, "a.zip"),
            ("application/pdf", b"%PDF-1.4", "a.pdf"),
        ],
    )
    message = parse_message(raw)
    kinds = [a.content_type for a in message.set_aside]
    assert kinds == ["image/png", "application/zip", "application/pdf"]
    # The size is that of the part as sent (base64), never of a decoded payload.
    assert message.set_aside[0].size >= len(png) * 4 // 3
    assert message.urls == tuple(URLS)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"From: a@hotline.test\r\nFrom: b@hotline.test\r\n\r\nhttp://x.example/\r\n",
        b"From: notices@hotline.test\r\nContent-Type: multipart/mixed\r\n\r\nno boundary\r\n",
        b"From: notices@hotline.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64\r\n",
        b"Subject: no from\r\n\r\nhttp://x.example/\r\n",
    ],
)
def test_malformed_messages_are_problems_never_crashes(raw: bytes) -> None:
    message = parse_message(raw)
    verdict = verify_sender(raw, message.sender_domain, LOOKUP)
    found = classify(message, verdict, SENDER_SETTINGS, max_urls=10)
    assert isinstance(found, Quarantined)


def test_find_urls_strips_trailing_punctuation_only() -> None:
    assert find_urls("a http://x.example/p?q=1. b (https://y.example/z), HTTP://Z.example") == [
        "http://x.example/p?q=1",
        "https://y.example/z",
        "HTTP://Z.example",
    ]


def _signed(raw: bytes, domain: str = "hotline.test") -> bytes:
    return KEYS[domain].sign(raw)


def test_dkim_passes_only_for_the_senders_own_domain() -> None:
    raw = notice(HOTLINE, "HL-2026-1", urls_body(URLS))
    assert verify_sender(_signed(raw), "hotline.test", LOOKUP) == DkimVerdict(True)
    assert verify_sender(raw, "hotline.test", LOOKUP).reason == "DKIM: not signed"
    forged = verify_sender(KEYS["forger.test"].sign(raw), "hotline.test", LOOKUP)
    assert forged.reason == "DKIM: signed by forger.test, not by the sender's domain"
    changed = _signed(raw).replace(b"bad.example/a", b"bad.example/z")
    assert "changed after signing" in verify_sender(changed, "hotline.test", LOOKUP).reason
    # No key published: fails, with a reason.
    assert not verify_sender(_signed(raw), "hotline.test", dict_lookup({})).passed
    # A second signature does not hide a good one, in either order.
    both = KEYS["forger.test"].sign(_signed(raw))
    assert verify_sender(both, "hotline.test", LOOKUP).passed


def test_dkim_refuses_a_body_length_limit() -> None:
    import dkim

    raw = notice(HOTLINE, "HL-2026-1", urls_body(URLS))
    key = KEYS["hotline.test"]
    limited = dkim.sign(raw, b"s1", b"hotline.test", key.private_pem, length=True) + raw
    assert "l=" in verify_sender(limited, "hotline.test", LOOKUP).reason


def test_the_trust_rule_in_order() -> None:
    raw = notice(HOTLINE, "Notice HL-2026-8", urls_body(URLS, "HL-2026-8"))
    message = parse_message(_signed(raw))
    found = classify(message, DkimVerdict(True), SENDER_SETTINGS, max_urls=10)
    assert found == TrustedNotice("hotline", SENDER_SETTINGS["hotline"], "HL-2026-8", message.urls)
    too_many = classify(message, DkimVerdict(True), SENDER_SETTINGS, max_urls=1)
    assert isinstance(too_many, Quarantined)
    assert too_many.reason == "2 URLs, more than max_urls (1)"
    unsigned = classify(
        message, DkimVerdict(False, "DKIM: not signed"), SENDER_SETTINGS, max_urls=9
    )
    assert isinstance(unsigned, Quarantined)
    assert unsigned.content.notice_source == "hotline"
    assert unsigned.content.contact == HOTLINE
    assert unsigned.content.urls == tuple(URLS)
    no_urls = parse_message(_signed(notice(HOTLINE, "HL-2026-8", "nothing here")))
    found = classify(no_urls, DkimVerdict(True), SENDER_SETTINGS, max_urls=9)
    assert isinstance(found, Quarantined)
    assert found.reason == "no URLs found"


def test_the_reference_comes_from_the_subject_before_the_body() -> None:
    raw = notice(HOTLINE, "Re: HL-2026-2", urls_body(URLS, "HL-2026-3"))
    found = classify(parse_message(raw), DkimVerdict(True), SENDER_SETTINGS, max_urls=9)
    assert isinstance(found, TrustedNotice)
    assert found.case_reference == "HL-2026-2"


def test_the_reply_counts_and_never_names_a_url() -> None:
    message = parse_message(notice(HOTLINE, "HL-2026-4", urls_body(URLS)))
    results = (
        NoticeResult(0, NoticeOutcome.ACCEPTED, "aaaa"),
        NoticeResult(1, NoticeOutcome.REFUSED, "bbbb", "duplicate: exists"),
    )
    notice_ = TrustedNotice("hotline", SENDER_SETTINGS["hotline"], "HL-2026-4", message.urls)
    reply = reply_message(Acknowledgement(message, notice_, results), "ntd@isp.test", "ISP")
    text = reply.as_string()
    assert reply["To"] == HOTLINE
    assert reply["In-Reply-To"] == message.message_id
    assert "Blocked now:    1" in text
    assert "#2 bbbb: duplicate: exists" in text
    assert "bad.example" not in text


def test_mail_settings_are_checked_with_their_key_names(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="password_file or password_env is required"):
        MailIntakeSettings.model_validate({"enabled": True, "user": "u"})
    with pytest.raises(ValidationError, match="must be hotline or law-enforcement"):
        MailSenderSettings.model_validate({**SENDERS["hotline"], "source": "public"})
    with pytest.raises(ValidationError, match="not a regular expression"):
        MailSenderSettings.model_validate({**SENDERS["hotline"], "reference_pattern": "("})
    twice = {"a": SENDERS["hotline"], "b": {**SENDERS["hotline"], "address": HOTLINE.upper()}}
    with pytest.raises(ValidationError, match=r"senders\.b\.address is the address of senders\.a"):
        MailIntakeSettings.model_validate({"senders": twice})
    config = tmp_path / "edgeagent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path}"\n[intake.mail]\nack_via = "nobody"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"intake\.mail\.ack_via"):
        load_config(config)
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path}"\n[intake.mail.senders.x]\naddress = "{HOTLINE}"\n'
        'source = "hotline"\nreference_pattern = "("\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"intake\.mail\.senders\.x\.reference_pattern"):
        load_config(config)


def test_the_squid_helper_goes_on_without_an_unreadable_appeal_key(tmp_path: Path) -> None:
    assert read_appeal_key(tmp_path / "missing.key") is None
    (tmp_path / "short.key").write_bytes(b"x" * 5)
    assert read_appeal_key(tmp_path / "short.key") is None
    (tmp_path / "good.key").write_bytes(b"k" * 32)
    assert read_appeal_key(tmp_path / "good.key") == b"k" * 32


def _unreachable_mailbox_intake(tmp_path: Path, metrics: Metrics | None = None) -> MailIntake:
    """An intake whose store is never reached: its mailbox fails first."""
    from edgeagent.intake.mail.ledger import MailLedger
    from edgeagent.intake.mail.notices import MailIntake

    return MailIntake(
        MailIntakeSettings.model_validate({"poll_seconds": 0.01}),
        None,  # type: ignore[arg-type]
        lambda channel, content: None,  # type: ignore[arg-type,return-value]
        MailLedger.in_state_dir(tmp_path),
        LOOKUP,
        metrics=metrics,
    )


async def test_the_poller_counts_failures_and_keeps_polling(tmp_path: Path) -> None:
    from edgeagent.intake.mail.imap import ImapMailbox, MailboxError
    from edgeagent.intake.mail.notices import MailPoller
    from edgeagent.metrics import Metrics

    metrics = Metrics()
    intake = _unreachable_mailbox_intake(tmp_path, metrics)
    attempts: list[int] = []

    def broken() -> ImapMailbox:
        attempts.append(1)
        if len(attempts) == 1:
            raise MailboxError("imap 127.0.0.1:1: cannot open the mailbox: refused")
        raise RuntimeError("a bug")

    task = asyncio.create_task(MailPoller(intake, broken).run())
    while len(attempts) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    failed = metrics.registry.get_sample_value("edgeagent_intake_mail_polls_failed_total")
    assert failed is not None
    assert failed >= 2
    assert (tmp_path / "mail-ledger.sqlite").stat().st_mode & 0o777 == 0o600


async def test_only_the_leader_reads_the_mailbox(tmp_path: Path) -> None:
    from edgeagent.intake.mail.imap import ImapMailbox, MailboxError
    from edgeagent.intake.mail.notices import MailPoller

    intake = _unreachable_mailbox_intake(tmp_path)
    leading = [False]
    opened: list[bool] = []

    def mailbox() -> ImapMailbox:
        opened.append(leading[0])
        raise MailboxError("imap 127.0.0.1:1: cannot open the mailbox: refused")

    task = asyncio.create_task(MailPoller(intake, mailbox, lambda: leading[0]).run())
    await asyncio.sleep(0.1)  # ten polls' time as a standby: the mailbox is left alone
    assert opened == []
    leading[0] = True
    while not opened:
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert set(opened) == {True}
