"""Digest, signature and serial checks on raw feed bytes."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edgeagent.errors import FeedError
from edgeagent.feeds import integrity

BODY = b"# serial: 42\nlisted.example\n"


@pytest.mark.parametrize(
    "fmt",
    ["{h}", "{h}  list.txt\n", "sha256:{h}", "SHA256 (list.txt) = {h}\n", "{H}"],
)
def test_digest_formats(fmt: str) -> None:
    h = hashlib.sha256(BODY).hexdigest()
    assert integrity.verify_digest("f", BODY, fmt.format(h=h, H=h.upper()).encode()) == h


def test_digest_mismatch_and_garbage() -> None:
    with pytest.raises(FeedError, match="digest mismatch"):
        integrity.verify_digest("f", BODY, hashlib.sha256(b"other").hexdigest().encode())
    with pytest.raises(FeedError, match="no SHA-256"):
        integrity.verify_digest("f", BODY, b"<html>not found</html>")


@pytest.mark.parametrize("encoding", ["raw", "hex", "base64"])
def test_signature_encodings(encoding: str) -> None:
    key = Ed25519PrivateKey.generate()
    sig = key.sign(BODY)
    encoded = {"raw": sig, "hex": sig.hex().encode(), "base64": base64.b64encode(sig)}[encoding]
    raw_pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    pem_pub = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    integrity.verify_signature("f", BODY, encoded, raw_pub)
    integrity.verify_signature("f", BODY, encoded, pem_pub)
    with pytest.raises(FeedError, match="does not verify"):
        integrity.verify_signature("f", BODY + b"x", encoded, raw_pub)


def test_signature_garbage_is_refused() -> None:
    key = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(FeedError, match="impossible"):
        integrity.verify_signature("f", BODY, b"!!not a signature!!", key)


def test_extract_serial() -> None:
    assert integrity.extract_serial(BODY) == "42"
    assert integrity.extract_serial(b"# generated: 2024-06-01T00:00:00Z\na.example\n") == (
        "2024-06-01T00:00:00Z"
    )
    assert integrity.extract_serial(b"a.example\n") == ""


def test_serial_order() -> None:
    assert integrity.check_serial("f", "9", "10") is False
    assert integrity.check_serial("f", "10", "10") is True
    assert integrity.check_serial("f", "", "1") is False
    assert integrity.check_serial("f", "2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z") is False
    with pytest.raises(FeedError, match="backwards"):
        integrity.check_serial("f", "10", "9")
    with pytest.raises(FeedError, match="backwards"):
        integrity.check_serial("f", "2024-06-02T00:00:00Z", "2024-06-01T00:00:00Z")
    with pytest.raises(FeedError, match="format changed"):
        integrity.check_serial("f", "10", "2024-06-01T00:00:00Z")
