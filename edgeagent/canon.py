"""URL and name canonicalisation, lookup expressions and hashing.

TEMPORARY minimal version: the canon work replaces canonical_name/canonical_url/
lookup_expressions with the full Safe Browsing v4 implementation. Signatures are final.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from urllib.parse import urlsplit

import idna

from edgeagent.errors import InvalidTarget, short_hash

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


def short_ref(text: str) -> str:
    """Short stable hash naming an entry in logs, metrics and errors."""
    return short_hash(text)


def canonical_name(text: str) -> str:
    name = text.strip().rstrip(".").lower()
    try:
        name = idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidTarget(f"not a valid host name: {exc}", text) from exc
    if not all(_LABEL.match(label) for label in name.split(".")):
        raise InvalidTarget("not a valid host name", text)
    return name


def canonical_url(text: str) -> str:
    parts = urlsplit(text if "://" in text else f"http://{text}")
    host = canonical_name(parts.hostname or "")
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme or 'http'}://{host}{path}{query}"


def url_host(url: str) -> str:
    """Host of a canonical URL (as produced by :func:`canonical_url`)."""
    rest = url.split("://", 1)[1]
    host = rest.split("/", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def lookup_expressions(text: str) -> list[str]:
    url = canonical_url(text)
    return [url.split("://", 1)[1]]


def expression_hash(expr: str) -> bytes:
    return hashlib.sha256(expr.encode("utf-8")).digest()


def canonical_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError as exc:
        raise InvalidTarget("not an IP address", text) from exc


def canonical_cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError as exc:
        raise InvalidTarget("not an IP prefix", text) from exc
