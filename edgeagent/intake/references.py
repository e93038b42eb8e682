"""Public references of intake items: random, short, easy to read out on the phone.

A reference says nothing about the item: 10 characters of Crockford's base32 alphabet
(no I, L, O, U) after a channel letter, 50 random bits, so guessing another person's
reference is hopeless and the ``UNIQUE`` index catches the rare repeat.
"""

from __future__ import annotations

import re
import secrets

from edgeagent.intake.base import IntakeChannel

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_LETTER = {
    IntakeChannel.PUBLIC_REPORT: "R",
    IntakeChannel.MAIL_QUARANTINE: "M",
    IntakeChannel.APPEAL: "A",
    IntakeChannel.CHALLENGE: "C",
}
REFERENCE_PATTERN = re.compile(r"^[RMAC]-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$")


def new_reference(channel: IntakeChannel) -> str:
    """A fresh reference such as ``R-7K2QF-M0X4D``."""
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"{_LETTER[channel]}-{chars[:5]}-{chars[5:]}"
