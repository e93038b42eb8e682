"""API bearer tokens: generation, hashing, and the audited changes people make to them.

A token secret is shown once, to the person who creates it (``edgeagent token create``);
the store keeps only its SHA-256 digest. Secrets carry a fixed prefix so that a leaked
token is easy to recognise in a secret scanner and cannot be mistaken for anything else.
A token's name is its holder's identity: the actor of everything done with it.

Creating, listing and revoking tokens are audited (``token.create``, ``token.list``,
``token.revoke``) with the actor who did it; the API and the CLI both go through
:func:`create_token`, :func:`list_tokens` and :func:`revoke_token`.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgeagent.store.base import Store, Token

TOKEN_PREFIX = "ea_"  # noqa: S105 - a public marker, not a secret
_SECRET_BYTES = 32  # 256 bits of entropy: no need for a slow KDF, a plain digest is safe


def hash_token(secret: str) -> bytes:
    """SHA-256 digest of ``secret`` (UTF-8): the only form in which a token is stored."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def new_token() -> tuple[str, bytes]:
    """A fresh random secret and its digest. Show the secret once; store the digest."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
    return secret, hash_token(secret)


def create_token(store: Store, name: str, role: str, actor: str) -> tuple[str, Token]:
    """A new token for ``name``; returns the secret (show it once) and the stored token."""
    secret, digest = new_token()
    token = store.add_token(name, role, digest)
    store.append_audit(actor, "token.create", f"token:{token.id}", {"name": name, "role": role})
    return secret, token


def list_tokens(store: Store, actor: str) -> list[Token]:
    """Every token (never a secret or its hash), oldest first; the listing is audited."""
    tokens = store.list_tokens()
    store.append_audit(actor, "token.list", "tokens", {"count": len(tokens)})
    return tokens


def revoke_token(store: Store, token_id: int, actor: str, reason: str) -> Token:
    """Revoke token ``token_id`` (``NotFound`` if unknown); audited with ``reason``."""
    token = store.revoke_token(token_id)
    store.append_audit(
        actor,
        "token.revoke",
        f"token:{token.id}",
        {"name": token.name, "role": token.role, "reason": reason},
    )
    return token
