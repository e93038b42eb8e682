"""DKIM: does a message carry a valid signature of its sender's own domain?

A signature counts only when it verifies (body hash and header signature, with the key
published under ``<selector>._domainkey.<d>``), signs the From header (``h=`` names it;
the parser refuses a message with more than one From), has no body length limit (``l=``:
anything appended after the signed length would pass) and its ``d=`` is exactly the From
address's domain. A valid signature of another domain proves nothing about the sender.

Key lookups go to the configured resolvers (:class:`KeyLookup`), cached for a few
minutes so that a batch of notices from one hotline costs one query. A lookup that gets
no answer at all (timeout, SERVFAIL) is not a verdict: :class:`KeyLookupFailed` stops
the message, which stays in the mailbox (or is refused with 451 over LMTP) and is
judged again later, instead of quarantining a hotline's notice for a DNS hiccup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dkim
import dns.exception
import dns.resolver

from edgeagent.configtypes import Endpoint
from edgeagent.errors import EdgeAgentError

_CACHE_SECONDS = 300.0


class KeyLookupFailed(EdgeAgentError):
    """The resolvers gave no answer: try the message again later."""


@dataclass(frozen=True, slots=True)
class DkimVerdict:
    """``passed``: a signature of the sender's domain verified; else ``reason`` says why
    not (for the person who looks at the quarantined message)."""

    passed: bool
    reason: str = ""


class KeyLookup:
    """The TXT records dkimpy asks for, from ``resolvers`` (default: the system's)."""

    def __init__(self, resolvers: Sequence[Endpoint] = (), timeout: float = 5.0) -> None:
        if resolvers:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [r.host for r in resolvers]
            self._resolver.port = resolvers[0].port
        else:
            self._resolver = dns.resolver.Resolver()
        self._resolver.lifetime = timeout
        self._cache: dict[str, tuple[float, bytes | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, name: bytes | str, timeout: float = 5.0) -> bytes | None:
        qname = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(qname)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = self._query(qname)
        with self._lock:
            self._cache[qname] = (now + _CACHE_SECONDS, value)
        return value

    def _query(self, qname: str) -> bytes | None:
        try:
            answer = self._resolver.resolve(qname, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.DNSException as exc:
            raise KeyLookupFailed(f"DKIM key lookup failed: {type(exc).__name__}") from None
        for rr in answer:
            return b"".join(rr.strings)
        return None


def verify_sender(
    raw: bytes, sender_domain: str, lookup: Callable[..., bytes | None]
) -> DkimVerdict:
    """Whether ``raw`` has a valid DKIM signature of ``sender_domain`` (module docstring)."""
    if not sender_domain:
        return DkimVerdict(False, "no sender address")
    try:
        checker = dkim.DKIM(raw, minkey=1024)
        count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    except dkim.DKIMException:
        return DkimVerdict(False, "DKIM: the message cannot be read")
    if count == 0:
        return DkimVerdict(False, "DKIM: not signed")
    reasons: list[str] = []
    for idx in range(count):
        try:
            ok = bool(checker.verify(idx=idx, dnsfunc=lookup))
        except dkim.DKIMException as exc:
            reasons.append(_failure(exc))
            continue
        domain = _text(checker.domain).lower()
        if not ok:
            reasons.append(f"DKIM: the signature of {domain or 'a domain'} does not verify")
        elif b"from" not in (checker.include_headers or ()):
            reasons.append("DKIM: the signature does not cover the From header")
        elif b"l" in (checker.signature_fields or {}):
            reasons.append("DKIM: the signature covers only part of the body (l=)")
        elif domain != sender_domain.lower():
            reasons.append(f"DKIM: signed by {domain}, not by the sender's domain")
        else:
            return DkimVerdict(True)
    return DkimVerdict(False, "; ".join(dict.fromkeys(reasons)))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value or "")


def _failure(exc: dkim.DKIMException) -> str:
    """A reason a person can act on; dkimpy's own text may quote the message's headers."""
    if "body hash mismatch" in str(exc):
        return "DKIM: the body does not match the signature (changed after signing)"
    return f"DKIM: {type(exc).__name__}"
