"""Fuzzing e-mailed notices (edgeagent/intake/mail): hostile MIME is a quarantine, never a
crash and never decisions.

Messages are assembled from header and body fragments that matter to MIME parsers
(duplicate From, broken boundaries, encoded words, bad base64, NULs, huge lines) around
hostile URLs. Properties: :func:`parse_message` never raises; a message with problems or
parts set aside is quarantined whatever its DKIM verdict; nothing it quotes in a
quarantine reason comes from the message's text.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgeagent.intake.mail.classify import Quarantined, classify
from edgeagent.intake.mail.message import parse_message
from edgeagent.intake.mail.settings import MailSenderSettings
from edgeagent.intake.mail.signature import DkimVerdict
from tests.support.fuzzing import EXAMPLES, fuzz_settings, hostile_urls
from tests.support.mail import HOTLINE, SENDERS

MARKER = "m4rk3r"
SENDERS_SETTINGS = {n: MailSenderSettings.model_validate(s) for n, s in SENDERS.items()}

_headers = st.lists(
    st.sampled_from(
        [
            f"From: {HOTLINE}",
            f"From: other@hotline.test, {HOTLINE}",
            "From: =?utf-8?b?bm90aWNlc0Bob3RsaW5lLnRlc3Q=?=",
            "From: <>",
            f"Subject: HL-2026-1 {MARKER}",
            f"Subject: =?utf-8?q?HL-2026-1_{MARKER}?=",
            "Subject: =?bogus?x?zz?=",
            "Content-Type: multipart/mixed; boundary=b",
            "Content-Type: multipart/mixed",
            'Content-Type: text/plain; charset="no-such-charset"',
            "Content-Transfer-Encoding: base64",
            "Content-Transfer-Encoding: quoted-printable",
            "Content-Disposition: attachment; filename=list.csv",
            "Content-Disposition: attachment; filename*=utf-8''%FF.zip",
            f"X-{MARKER}: \x00\x01",
            " folded continuation with no header",
            "Received: " + "x" * 3000,
        ]
    ),
    max_size=8,
)
_body_lines = st.lists(
    st.one_of(
        hostile_urls.map(lambda u: f"{u}{MARKER}"),
        st.sampled_from(
            [
                "--b",
                "--b--",
                "Content-Type: image/png",
                "Content-Type: application/json",
                "",
                "!!!!not base64",
                '{"urls": ["http://listed.example/1"]}',
                "iVBORw0KGgo=",
                f"{MARKER}=\r",
            ]
        ),
    ),
    max_size=20,
)


@fuzz_settings(default=100, long=20_000)
@given(_headers, _body_lines, st.booleans())
def test_hostile_messages_never_crash_and_never_act_when_broken(
    headers: list[str], body: list[str], dkim_passed: bool
) -> None:
    EXAMPLES.count("intake.mail.parse_message")
    raw = ("\r\n".join(headers) + "\r\n\r\n" + "\r\n".join(body)).encode("utf-8", "surrogateescape")
    message = parse_message(raw)
    found = classify(message, DkimVerdict(dkim_passed, "x"), SENDERS_SETTINGS, max_urls=1000)
    if message.problems or message.set_aside or not dkim_passed:
        assert isinstance(found, Quarantined)
    if isinstance(found, Quarantined):
        assert MARKER not in found.reason


def test_a_plain_notice_is_trusted_when_signed() -> None:
    """Keeps the property from being vacuous: an ordinary notice passes."""
    raw = f"From: {HOTLINE}\r\nSubject: HL-2026-1\r\n\r\nhttp://listed.example/a.html\r\n"
    message = parse_message(raw.encode())
    found = classify(message, DkimVerdict(True), SENDERS_SETTINGS, max_urls=10)
    assert not isinstance(found, Quarantined)
