"""API bearer tokens: generation and hashing.

A token secret is shown once, to the person who creates it (``edgeagent token create``);
the store keeps only its SHA-256 digest. Secrets carry a fixed prefix so that a leaked
token is easy to recognise in a secret scanner and cannot be mistaken for anything else.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "ea_"  # noqa: S105 - a public marker, not a secret
_SECRET_BYTES = 32  # 256 bits of entropy: no need for a slow KDF, a plain digest is safe


def hash_token(secret: str) -> bytes:
    """SHA-256 digest of ``secret`` (UTF-8): the only form in which a token is stored."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def new_token() -> tuple[str, bytes]:
    """A fresh random secret and its digest. Show the secret once; store the digest."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
    return secret, hash_token(secret)
