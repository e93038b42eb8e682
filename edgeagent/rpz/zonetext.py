"""Zone-text building blocks: owner names, rpz-ip triggers, the zone apex, serials.

Everything here is pure and cheap: the compiler calls these once per entry, and the zone
is streamed as text (dnspython zone objects are far too slow for large zones).

Owner names are always *relative* to the zone origin: no trailing dot, no ``@`` except the
apex, no ``$ORIGIN``. One absolute or out-of-zone owner can make Unbound drop a whole RPZ
zone, so :func:`safe_owner` is the single gate every name-derived owner passes through.
"""

from __future__ import annotations

import ipaddress
import re

SERIAL_BITS = 32
_SERIAL_MOD = 1 << SERIAL_BITS
_SERIAL_HALF = 1 << (SERIAL_BITS - 1)

# Lower-case A-labels: 1..63 characters, no empty label, no trailing dot, nothing a zone
# file parser would treat specially (spaces, ';', '$', '@', '(', quotes, backslashes).
NAME_PATTERN = re.compile(r"[a-z0-9_][a-z0-9_-]{0,62}(?:\.[a-z0-9_][a-z0-9_-]{0,62})*")

# RPZ gives these last labels a special meaning (IP, NS and client triggers); a listed
# "name" ending in one must never become an owner.
_RPZ_SPECIAL = ("rpz-ip", "rpz-nsip", "rpz-nsdname", "rpz-client-ip", "rpz-drop")

MAX_TEXT_NAME = 253  # presentation length of a 255-octet wire name without trailing dot


def safe_owner(name: str, zone: str, wildcard: bool = False) -> str | None:
    """Relative owner for ``name`` (``*.name`` if ``wildcard``) in ``zone``, or ``None``.

    ``None`` means the name cannot be an owner in this zone: not a plain lower-case
    A-label name, an RPZ special label, or too long once the zone name is appended.
    """
    if NAME_PATTERN.fullmatch(name) is None:
        return None
    last = name.rpartition(".")[2]
    if last.startswith("rpz-") and last in _RPZ_SPECIAL:
        return None
    owner = f"*.{name}" if wildcard else name
    if len(owner) + 1 + len(zone) > MAX_TEXT_NAME:
        return None
    return owner


def rpz_ip_owner(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """RPZ response-IP trigger owner for ``network``, relative to the zone.

    IPv4 ``192.0.2.0/24`` -> ``24.0.2.0.192.rpz-ip``. IPv6 uses 16-bit words in reverse
    order with the longest run of zero words written as ``zz`` (draft-vixie-dnsop-dns-rpz):
    ``2001:db8::/48`` -> ``48.zz.db8.2001.rpz-ip``.
    """
    plen = network.prefixlen
    if network.version == 4:
        octets = str(network.network_address).split(".")
        return f"{plen}.{'.'.join(reversed(octets))}.rpz-ip"
    # ipaddress' compressed form follows RFC 5952: the longest zero run (length >= 2) is
    # '::', words have no leading zeros and are lower case -- exactly what RPZ wants.
    text = network.network_address.compressed
    if "::" in text:
        left_s, right_s = text.split("::")
        left = left_s.split(":") if left_s else []
        right = right_s.split(":") if right_s else []
        words = [*reversed(right), "zz", *reversed(left)]
    else:
        words = list(reversed(text.split(":")))
    return f"{plen}.{'.'.join(words)}.rpz-ip"


def next_serial(previous: int | None) -> int:
    """The serial to publish after ``previous`` (counter form, RFC 1982 arithmetic).

    Adds one modulo 2**32. In serial-number arithmetic ``previous + 1`` is always
    "greater" than ``previous``, including across the wrap from 4294967295 to 0; secondaries
    and our lag check use :func:`serial_gt`, so the wrap is harmless. ``None`` (nothing
    published yet) starts at 1.
    """
    if previous is None:
        return 1
    return (previous + 1) % _SERIAL_MOD


def serial_gt(a: int, b: int) -> bool:
    """RFC 1982: is serial ``a`` newer than serial ``b``?"""
    return a != b and ((a - b) % _SERIAL_MOD) < _SERIAL_HALF


def serial_lag(current: int, served: int) -> int:
    """How many versions ``served`` is behind ``current`` (0 if equal or ahead)."""
    d = (current - served) % _SERIAL_MOD
    return d if d < _SERIAL_HALF else 0


def soa_line(mname: str, rname: str, serial: int, timers: tuple[int, int, int, int]) -> str:
    """The apex SOA record line (rdata names are absolute; the owner is ``@``)."""
    refresh, retry, expire, minimum = timers
    return (
        f"@ SOA {mname.rstrip('.')}. {rname.rstrip('.')}. {serial} "
        f"{refresh} {retry} {expire} {minimum}\n"
    )


def txt_rdata(text: str) -> str:
    """A TXT rdata holding ``text`` (ASCII without quotes or backslashes)."""
    if not text.isascii() or '"' in text or "\\" in text or len(text) > 255:
        raise ValueError("TXT text must be <= 255 ASCII characters without quotes")
    return f'"{text}"'
