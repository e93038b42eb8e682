"""Opaque references of blocking entries, for appeals.

The stop page's appeal link names the entry that refused the page by a keyed hash, never
by its URL: ``HMAC-SHA256(key, index digest of the entry)`` cut to 120 bits, written in
lowercase base32 (24 characters). The index digest (:func:`edgeagent.proxy.index.
entry_digest`) is what the proxy's helper matched, so the helper can compute the
reference from its match without ever holding the entry; the agent finds the entry
again by computing the reference of each entry in force (:meth:`EntryRefs.find`).

The key is 32 random bytes in ``appeal-ref.key`` beside the proxy index (created on first use,
written atomically; 0600, or 0640 with the proxy helper's group when one is configured,
``[proxy] group``, so that helper may read it). Without the key a
reference reveals nothing, not even whether two people appealed the same page across
key rotations.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from edgeagent.atomic import write_atomic
from edgeagent.errors import EdgeAgentError
from edgeagent.model import Indicator

KEY_FILE_NAME = "appeal-ref.key"
REF_PATTERN = re.compile(r"^[a-z2-7]{24}$")


def ref_of_digest(key: bytes, digest: bytes) -> str:
    """The reference of the entry whose index digest is ``digest``."""
    mac = hmac.new(key, digest, hashlib.sha256).digest()[:15]
    return base64.b32encode(mac).decode("ascii").lower()


def load_key(directory: Path, group: str | None = None, former: Path | None = None) -> bytes:
    """The key in ``directory`` (created if missing: the key in ``former``, the directory
    it was kept in before, when there is one, so that earlier references still resolve;
    else a new one); ``EdgeAgentError`` if unreadable."""
    path = directory / KEY_FILE_NAME
    if not path.exists():
        # The proxy index's directory may not exist before the first index is written.
        directory.mkdir(parents=True, exist_ok=True)
        mode = 0o600 if group is None else 0o640
        earlier = None if former is None else former / KEY_FILE_NAME
        if earlier is not None and earlier != path and earlier.is_file():
            key = earlier.read_bytes()
        else:
            key = secrets.token_bytes(32)
        write_atomic(path, key, mode, group=group)
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise EdgeAgentError(f"{path}: cannot read the appeal key: {exc.strerror}") from None
    if len(key) != 32:
        raise EdgeAgentError(f"{path}: the appeal key must be 32 bytes, not {len(key)}")
    return key


class EntryRefs:
    """References of indicators under one key."""

    def __init__(self, key: bytes) -> None:
        self._key = bytes(key)

    @classmethod
    def load(
        cls, directory: Path, group: str | None = None, former: Path | None = None
    ) -> EntryRefs:
        return cls(load_key(directory, group, former))

    def of(self, indicator: Indicator) -> str:
        """The reference of ``indicator``; address entries (which the proxy does not
        enforce) are hashed as ``scope NUL value``."""
        from edgeagent.proxy.index import entry_digest

        if indicator.scope.is_name or indicator.scope.is_url:
            digest = entry_digest(indicator.scope, indicator.value)
        else:
            digest = hashlib.sha256(f"{indicator.scope}\0{indicator.value}".encode()).digest()
        return ref_of_digest(self._key, digest)

    def find(self, ref: str, indicators: Iterable[Indicator]) -> list[Indicator]:
        """Those of ``indicators`` whose reference is ``ref`` (constant time per compare)."""
        return [i for i in indicators if hmac.compare_digest(self.of(i), ref)]


def is_ref(text: str) -> bool:
    return REF_PATTERN.fullmatch(text) is not None
