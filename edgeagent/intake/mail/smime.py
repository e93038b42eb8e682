"""S/MIME: does a message carry a valid signature of its sender, under a configured CA?

Used for the senders whose ``smime_ca_file`` is set. A signature counts only when
``openssl cms -verify`` accepts it (the signed content is unchanged and the signer's
certificate chains to that CA bundle alone, for S/MIME signing) AND the signer
certificate's e-mail address (its subjectAltName rfc822Name, else its subject
emailAddress) is the From address. Both forms are read: ``multipart/signed`` (detached)
and ``application/pkcs7-mime`` signed-data (opaque).

The message goes to ``openssl`` on stdin (no shell, with a timeout); only the signer
certificates are written, to a private temporary directory. :func:`signed_message` is
the message to read URLs and references from: the outer headers (From, Subject, ...)
with the signed content in place of the signature wrapping.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from edgeagent.errors import EdgeAgentError

_SIGNED_TYPES = ("multipart/signed", "application/pkcs7-mime", "application/x-pkcs7-mime")


class _NoVerdict(EdgeAgentError):
    """``openssl`` did not run to a verdict (the message says why)."""


@dataclass(frozen=True, slots=True)
class SmimeVerdict:
    """``passed``: signed by the sender under the CA; else ``reason`` says why not.
    ``content``: the signed content (MIME entity) as ``openssl`` read it, unverified when
    ``passed`` is false (for the person who looks at the quarantined message)."""

    passed: bool
    reason: str = ""
    content: bytes = b""


def is_signed(raw: bytes) -> bool:
    """Whether ``raw`` is S/MIME-signed (by its top-level content type)."""
    headers = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
    return headers.get_content_type() in _SIGNED_TYPES


def verify_signer(raw: bytes, sender: str, ca_file: Path, timeout: float) -> SmimeVerdict:
    """Whether ``raw`` has a valid S/MIME signature of ``sender`` (module docstring)."""
    try:
        return _verify(raw, sender, ca_file, timeout)
    except _NoVerdict as exc:
        return SmimeVerdict(False, str(exc))


def _verify(raw: bytes, sender: str, ca_file: Path, timeout: float) -> SmimeVerdict:
    with tempfile.TemporaryDirectory(prefix="edgeagent-smime-") as workdir:
        signers = Path(workdir) / "signers.pem"
        verify = ["-CAfile", str(ca_file), "-no-CApath", "-no-CAstore"]
        verify += ["-purpose", "smimesign", "-signer", str(signers)]
        verified = _cms(raw, verify, timeout)
        if verified is None:
            content = _cms(raw, ["-noverify", "-nosigs"], timeout) or b""
            return SmimeVerdict(False, "S/MIME signature does not verify", content)
        certs = x509.load_pem_x509_certificates(signers.read_bytes())
    addresses = [a for cert in certs for a in _addresses(cert)]
    if sender.lower() in addresses:
        return SmimeVerdict(True, content=verified)
    named = ", ".join(addresses) or "no e-mail address"
    return SmimeVerdict(False, f"S/MIME: the signer certificate is for {named}", verified)


def signed_message(raw: bytes, content: bytes) -> bytes:
    """``raw``'s headers but its MIME ones, over the signed ``content``."""
    outer = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
    inner: Message = BytesParser(policy=policy.compat32).parsebytes(content)
    for name, value in outer.items():
        if not name.lower().startswith("content-") and name.lower() != "mime-version":
            inner[name] = value
    return inner.as_bytes()


def _cms(raw: bytes, options: list[str], timeout: float) -> bytes | None:
    """The signed content ``openssl cms -verify`` writes, or None when it refuses;
    :class:`_NoVerdict` when it does not run or does not finish."""
    try:
        done = subprocess.run(
            ["openssl", "cms", "-verify", "-inform", "SMIME", *options],
            input=raw,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise _NoVerdict(f"S/MIME: openssl gave no answer within {timeout:g} s") from None
    except OSError as exc:
        raise _NoVerdict(f"S/MIME: openssl cannot run ({type(exc).__name__})") from None
    return done.stdout if done.returncode == 0 else None


def _addresses(cert: x509.Certificate) -> list[str]:
    """The certificate's e-mail addresses, lower-case: the subjectAltName's, else the
    subject's emailAddress."""
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = alt.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
    return [name.lower() for name in names]
