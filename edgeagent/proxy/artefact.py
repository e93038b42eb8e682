"""The proxy index as a signed artefact: what the centre serves and an edge checks.

An artefact is either the whole index file (``full``) or an index edit
(``delta``, :func:`edgeagent.proxy.indexwriter.encode_edit`) from the version the edge
holds (``base``). Either way it names the index the edge must end with: its ``version``
and ``digest`` (:func:`edgeagent.proxy.indexwriter.index_digest`). The centre signs, with
Ed25519, the statement::

    edgeagent-proxy-index/1 \\n kind \\n base \\n version \\n digest \\n sha256(body)

so a body, a version or a result digest changed on the way (or by anyone without the
private key) fails :func:`verify`. HTTP carries the statement's fields in headers
(:data:`HEADERS`) and the body as is.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edgeagent.errors import EdgeAgentError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

Kind = Literal["full", "delta"]
MEDIA_TYPE = "application/vnd.edgeagent.proxy-index"
HEADERS = {
    "kind": "X-Edgeagent-Index-Kind",
    "base": "X-Edgeagent-Index-Base",
    "version": "X-Edgeagent-Index-Version",
    "digest": "X-Edgeagent-Index-Digest",
    "signature": "X-Edgeagent-Index-Signature",
}


class ArtefactError(EdgeAgentError):
    """An artefact that must not be installed (bad signature, digest or shape)."""


@dataclass(frozen=True, slots=True)
class Artefact:
    """One answer of ``GET /v1/policy/index``; ``base`` is 0 for a full index."""

    kind: Kind
    base: int
    version: int
    digest: str
    body: bytes
    signature: bytes = b""

    def statement(self) -> bytes:
        body_sha = hashlib.sha256(self.body).hexdigest()
        fields = ("edgeagent-proxy-index/1", self.kind, self.base, self.version, self.digest)
        return "\n".join(map(str, (*fields, body_sha))).encode("ascii")

    @property
    def etag(self) -> str:
        """The ETag of the index it leads to (the same for a full index and a delta)."""
        return f'"{self.version}-{self.digest[:32]}"'

    def headers(self) -> dict[str, str]:
        return {
            HEADERS["kind"]: self.kind,
            HEADERS["base"]: str(self.base),
            HEADERS["version"]: str(self.version),
            HEADERS["digest"]: self.digest,
            HEADERS["signature"]: base64.b64encode(self.signature).decode("ascii"),
            "ETag": self.etag,
            "Content-Type": MEDIA_TYPE,
        }

    @classmethod
    def from_headers(cls, headers: dict[str, str], body: bytes) -> Artefact:
        """Read an answer back; :class:`ArtefactError` naming the bad header."""
        lower = {k.lower(): v for k, v in headers.items()}

        def field(name: str) -> str:
            value = lower.get(HEADERS[name].lower())
            if value is None:
                raise ArtefactError(f"artefact header {HEADERS[name]} missing")
            return value

        kind = field("kind")
        if kind not in ("full", "delta"):
            raise ArtefactError(f"artefact header {HEADERS['kind']}: {kind[:16]!r}")
        try:
            base, version = int(field("base")), int(field("version"))
            signature = base64.b64decode(field("signature"), validate=True)
        except ValueError as exc:
            raise ArtefactError(f"artefact header malformed: {exc}") from None
        digest = field("digest")
        return cls("full" if kind == "full" else "delta", base, version, digest, body, signature)


@dataclass(frozen=True, slots=True)
class EdgeReport:
    """What an edge last said: the version and digest it installed, whether its proxy
    canary saw that version (``None``: not checked yet), and when (Unix time)."""

    edge: str
    version: int
    digest: str
    canary_ok: bool | None
    at: float
    error: str = ""


def sign(artefact: Artefact, key: Ed25519PrivateKey) -> Artefact:
    return Artefact(
        artefact.kind,
        artefact.base,
        artefact.version,
        artefact.digest,
        artefact.body,
        key.sign(artefact.statement()),
    )


def verify(artefact: Artefact, key: Ed25519PublicKey) -> None:
    """Raise :class:`ArtefactError` unless the centre's key signed this artefact."""
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(artefact.signature, artefact.statement())
    except InvalidSignature:
        raise ArtefactError(f"artefact for version {artefact.version}: bad signature") from None


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (PKCS#8, unencrypted)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
    )

    key = _load(path, private=True)
    if not isinstance(key, Ed25519PrivateKey):
        raise ArtefactError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (SubjectPublicKeyInfo)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PublicKey,
    )

    key = _load(path, private=False)
    if not isinstance(key, Ed25519PublicKey):
        raise ArtefactError(f"{path}: not an Ed25519 public key")
    return key


def _load(path: Path, *, private: bool) -> object:
    from cryptography.hazmat.primitives import serialization

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtefactError(f"{path}: cannot read key: {exc.strerror}") from None
    try:
        if private:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ArtefactError(f"{path}: not a PEM key ({exc})") from None


def new_key_pair() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair as PEM: (private, public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
    )

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public
