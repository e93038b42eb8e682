"""S/MIME-signed notices: a real CA and signer certificates made here, messages signed by
the real ``openssl smime -sign``, verified by the intake's own ``openssl cms -verify``,
decisions stored in a real SQLite store (DKIM keys are looked up in a dict: no DNS)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeagent.intake.base import IntakeChannel
from edgeagent.intake.mail.ledger import MailLedger
from edgeagent.intake.mail.notices import MailIntake, MailOutcome
from edgeagent.intake.mail.settings import MailIntakeSettings
from edgeagent.intake.mail.smime import is_signed, verify_signer
from edgeagent.intake.triage import Triage
from edgeagent.lab.mailbox import dkim_key
from edgeagent.store import SqliteStore
from tests.support.api import make_context, make_guard
from tests.support.binaries import require_binary
from tests.support.mail import HOTLINE, POLICE, SENDERS, dict_lookup, notice, urls_body
from tests.support.pki import issue, write_pair

pytestmark = pytest.mark.integration

HOTLINE_DKIM = dkim_key("hotline.test", "s1")
URLS = ["http://bad.example/a.html", "https://bad.example/b?x=1"]


@dataclass(frozen=True)
class Pki:
    ca: Path
    hotline: Path  # stem of the .crt/.key of a signer certificate for HOTLINE
    other: Path  # ... for another address, under the same CA
    stranger: Path  # ... for HOTLINE, under a CA the intake does not trust


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    require_binary("openssl")
    directory = tmp_path_factory.mktemp("smime")
    ca_cert, ca_key = issue("Hotline Test CA", None, ca=True)
    write_pair(directory / "ca", ca_cert, ca_key)
    other_ca = issue("Unknown CA", None, ca=True)
    for stem, address, issuer in (
        ("hotline", HOTLINE, (ca_cert.subject, ca_key)),
        ("other", "other@hotline.test", (ca_cert.subject, ca_key)),
        ("stranger", HOTLINE, (other_ca[0].subject, other_ca[1])),
    ):
        cert, key = issue(address, issuer, email=address)
        write_pair(directory / stem, cert, key)
    return Pki(
        directory / "ca.crt", directory / "hotline", directory / "other", directory / "stranger"
    )


def _sign(raw: bytes, signer: Path, *, opaque: bool = False) -> bytes:
    """``raw`` signed by ``openssl smime -sign``, its headers outside the signature."""
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = [h for h in head.split(b"\r\n") if not h.lower().startswith((b"content-", b"mime"))]
    content = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
    command = ["openssl", "smime", "-sign", "-signer", f"{signer}.crt", "-inkey", f"{signer}.key"]
    command += ["-nodetach"] if opaque else []
    signed = subprocess.run(command, input=content, capture_output=True, check=True, timeout=10)
    return (
        b"\r\n".join(headers)
        + b"\r\n"
        + signed.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    )


@pytest.fixture
def intake(tmp_path: Path, pki: Pki) -> Iterator[tuple[MailIntake, SqliteStore]]:
    store = SqliteStore(tmp_path / "store.db")
    ctx = make_context(store, make_guard(tmp_path / "guard"))
    senders = {**SENDERS, "hotline": {**SENDERS["hotline"], "smime_ca_file": str(pki.ca)}}
    settings = MailIntakeSettings.model_validate({"senders": senders, "timeout_seconds": 10})
    ledger = MailLedger.in_state_dir(tmp_path)
    lookup = dict_lookup({"hotline.test": HOTLINE_DKIM})
    yield MailIntake(settings, ctx.decisions, Triage(ctx.decisions).submit, ledger, lookup), store
    store.close()


def _reason(store: SqliteStore) -> str:
    (item,) = store.list_intake_items(channel=IntakeChannel.MAIL_QUARANTINE)
    return item.content.quarantine_reason


def _raw(sender: str = HOTLINE) -> bytes:
    return notice(sender, "Notice HL-2026-5", urls_body(URLS, "HL-2026-5"))


@pytest.mark.parametrize("opaque", [False, True], ids=["multipart-signed", "signed-data"])
def test_a_notice_signed_by_the_senders_certificate_becomes_decisions(
    intake: tuple[MailIntake, SqliteStore], pki: Pki, opaque: bool
) -> None:
    mail, store = intake
    signed = _sign(_raw(), pki.hotline, opaque=opaque)
    assert is_signed(signed)
    outcome, ack = mail.take(signed)
    assert outcome is MailOutcome.TRUSTED
    assert ack is not None
    assert ack.notice.case_reference == "HL-2026-5"
    decisions = store.list_decisions()
    assert sorted(d.indicator.value for d in decisions) == sorted(URLS)
    assert {d.reference for d in decisions} == {"HL-2026-5"}
    assert store.list_intake_items(channel=IntakeChannel.MAIL_QUARANTINE) == []


def test_a_certificate_for_another_address_is_quarantined(
    intake: tuple[MailIntake, SqliteStore], pki: Pki
) -> None:
    mail, store = intake
    assert mail.take(_sign(_raw(), pki.other))[0] is MailOutcome.QUARANTINED
    assert store.list_decisions() == []
    assert _reason(store) == "S/MIME: the signer certificate is for other@hotline.test"


@pytest.mark.parametrize("opaque", [False, True], ids=["multipart-signed", "signed-data"])
def test_a_body_changed_after_signing_is_quarantined(
    intake: tuple[MailIntake, SqliteStore], pki: Pki, opaque: bool
) -> None:
    mail, store = intake
    signed = _sign(_raw(), pki.hotline, opaque=opaque)
    if opaque:  # one byte of the signed-data's base64, inside the signed content
        head, _, body = signed.partition(b"\r\n\r\n")
        lines = body.split(b"\r\n")
        lines[3] = lines[3][:10] + (b"A" if lines[3][10:11] != b"A" else b"B") + lines[3][11:]
        changed = head + b"\r\n\r\n" + b"\r\n".join(lines)
    else:
        changed = signed.replace(b"bad.example/a", b"bad.example/z")
    assert changed != signed
    assert mail.take(changed)[0] is MailOutcome.QUARANTINED
    assert store.list_decisions() == []
    reason = _reason(store)
    assert reason == "S/MIME signature does not verify"
    assert "http" not in reason


def test_a_certificate_under_another_ca_is_quarantined(
    intake: tuple[MailIntake, SqliteStore], pki: Pki
) -> None:
    mail, store = intake
    assert mail.take(_sign(_raw(), pki.stranger))[0] is MailOutcome.QUARANTINED
    assert _reason(store) == "S/MIME signature does not verify"


def test_a_sender_without_smime_ca_file_is_unaffected(
    intake: tuple[MailIntake, SqliteStore], pki: Pki
) -> None:
    mail, store = intake
    police = notice(POLICE, "Notice", "Case: POL/12\n" + "\n".join(URLS))
    assert mail.take(_sign(police, pki.hotline))[0] is MailOutcome.QUARANTINED
    # As before: the signature part is an attachment set aside, no S/MIME check at all.
    assert _reason(store) == "attachments that are not lists were discarded unopened"


def test_dkim_still_counts_for_a_sender_with_smime_ca_file(
    intake: tuple[MailIntake, SqliteStore],
) -> None:
    mail, store = intake
    assert mail.take(HOTLINE_DKIM.sign(_raw()))[0] is MailOutcome.TRUSTED
    assert len(store.list_decisions()) == 2
    assert mail.take(_raw(POLICE))[0] is MailOutcome.QUARANTINED  # neither signature


def test_the_signer_address_comes_from_the_subject_without_an_alt_name(
    tmp_path: Path, pki: Pki
) -> None:
    key = tmp_path / "plain.key"
    cert = tmp_path / "plain.crt"
    request = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    request += ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1"]
    request += ["-subj", f"/CN=Hotline/emailAddress={HOTLINE}"]
    subprocess.run(request, check=True, capture_output=True, timeout=10)
    signed = _sign(_raw(), tmp_path / "plain")
    verdict = verify_signer(signed, HOTLINE, cert, 10.0)
    assert verdict.passed, verdict.reason
    assert b"bad.example/a.html" in verdict.content
    assert not verify_signer(signed, "other@hotline.test", cert, 10.0).passed
    late = verify_signer(signed, HOTLINE, cert, 1e-6)
    assert (late.passed, late.reason) == (False, "S/MIME: openssl gave no answer within 1e-06 s")
