"""Integrity checks that run on the raw feed bytes *before* any parsing.

- :func:`verify_digest`: the body's SHA-256 must equal the one in the digest file
  (``sha256sum`` output, a bare hex digest, or ``sha256:HEX``).
- :func:`verify_signature`: a detached Ed25519 signature over the exact body bytes (raw
  64 bytes, or base64/hex text of them) must verify with the feed's public key (raw 32
  bytes or PEM).
- :func:`check_serial`: a feed's serial (the ``# serial:`` header of a list, an RPZ SOA
  serial) or timestamp must not go backwards: a replayed old list would silently unblock
  everything added since. Equal means "unchanged".

Every failure raises :class:`edgeagent.errors.FeedError`; nothing here logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from edgeagent.errors import FeedError

__all__ = [
    "check_serial",
    "extract_serial",
    "load_public_key",
    "parse_digest",
    "serial_newer",
    "verify_digest",
    "verify_signature",
]

_HEX64 = re.compile(rb"(?<![0-9a-fA-F])([0-9a-fA-F]{64})(?![0-9a-fA-F])")
_SERIAL = re.compile(rb"^\s*[#;]\s*(?:serial|version|generated)\s*[:=]\s*(\S+)\s*$", re.I | re.M)
_HEADER_SCAN = 4096  # the serial header sits in the first lines


def parse_digest(text: bytes) -> bytes:
    """The SHA-256 named by a digest file; raise ``ValueError`` if there is none."""
    m = _HEX64.search(text[:4096])
    if m is None:
        raise ValueError("no SHA-256 hex digest found")
    return bytes.fromhex(m.group(1).decode("ascii"))


def verify_digest(feed: str, body: bytes, digest_file: bytes) -> str:
    """Check ``body`` against ``digest_file``; return the hex digest."""
    try:
        expected = parse_digest(digest_file)
    except ValueError as exc:
        raise FeedError(feed, "digest file has no SHA-256") from exc
    actual = hashlib.sha256(body).digest()
    if actual != expected:
        raise FeedError(feed, "digest mismatch: body does not match the digest file")
    return actual.hex()


def load_public_key(key: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from 32 raw bytes, or PEM (SubjectPublicKeyInfo)."""
    if len(key) == 32:
        return Ed25519PublicKey.from_public_bytes(key)
    loaded = load_pem_public_key(key)
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError("public key is not Ed25519")
    return loaded


def _signature_bytes(sig: bytes) -> bytes:
    if len(sig) == 64:
        return sig
    text = sig.strip()
    if len(text) == 128:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("signature is neither raw, hex nor base64") from exc
    if len(raw) != 64:
        raise ValueError("signature is not 64 bytes")
    return raw


def verify_signature(feed: str, body: bytes, signature: bytes, public_key: bytes) -> None:
    """Verify a detached Ed25519 signature over ``body``; raise ``FeedError`` if it fails."""
    try:
        key = load_public_key(public_key)
        sig = _signature_bytes(signature)
    except ValueError as exc:
        raise FeedError(feed, f"signature check impossible: {exc}") from exc
    try:
        key.verify(sig, body)
    except InvalidSignature as exc:
        raise FeedError(feed, "signature does not verify") from exc


def extract_serial(body: bytes) -> str:
    """The ``# serial: X`` (or ``version``/``generated``) header of a list, or ``""``."""
    m = _SERIAL.search(body[:_HEADER_SCAN])
    return m.group(1).decode("ascii", "replace") if m else ""


def _as_number(s: str) -> int | None:
    return int(s) if s.isdigit() else None


def _as_time(s: str) -> datetime | None:
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


def serial_newer(previous: str, new: str) -> int:
    """Compare serials: -1 older, 0 same, 1 newer. Numbers numerically, else ISO times.

    Raises ``ValueError`` when the two cannot be compared (mixed or unknown forms).
    """
    if previous == new:
        return 0
    a, b = _as_number(previous), _as_number(new)
    if a is not None and b is not None:
        return (b > a) - (b < a)
    ta, tb = _as_time(previous), _as_time(new)
    if ta is not None and tb is not None:
        try:
            return (tb > ta) - (tb < ta)
        except TypeError as exc:  # naive vs aware
            raise ValueError("serials not comparable") from exc
    raise ValueError("serials not comparable")


def check_serial(feed: str, previous: str, new: str) -> bool:
    """Refuse a serial that goes backwards; return True if it is unchanged.

    An absent serial on either side passes (nothing to compare); a serial the previous
    one cannot be compared with is refused, because a format switch is a likely sign of
    a replaced feed.
    """
    if not previous or not new:
        return False
    try:
        order = serial_newer(previous, new)
    except ValueError as exc:
        raise FeedError(feed, "serial format changed; cannot prove it is newer") from exc
    if order < 0:
        raise FeedError(feed, "serial went backwards (rollback refused)")
    return order == 0
