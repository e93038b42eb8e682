"""Addresses and prefixes: parsing, a longest-prefix index, and the ISP's own space.

* :func:`parse_address` / :func:`parse_block` read addresses, CIDRs and ``first - last``
  ranges; their ``ValueError`` reasons never echo the input.
* :class:`PrefixIndex`: longest-prefix match on integers (a handful of dict probes).
* :class:`OwnSpace`: the own prefixes as a netaddr ``IPSet`` (for set arithmetic and
  display) plus a :class:`PrefixIndex` for the hot path: ``IPSet.__contains__`` costs about
  30 µs with 50k prefixes, the index about 2 µs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import netaddr


class PrefixIndex:
    """Longest-prefix match over CIDR blocks, keyed by ``(version, length, network)``.

    Lookups try each prefix length present (longest first) with one dict probe: at most
    33 (IPv4) or 129 (IPv6) probes, in practice a handful, all on integers.
    """

    def __init__(self) -> None:
        self._tables: dict[tuple[int, int], dict[int, list[int]]] = {}
        self._lengths: dict[int, list[int]] = {4: [], 6: []}

    def add(self, network: netaddr.IPNetwork, value: int) -> None:
        key = (network.version, network.prefixlen)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = {}
            lengths = self._lengths[network.version]
            lengths.append(network.prefixlen)
            lengths.sort(reverse=True)
        table.setdefault(int(network.first), []).append(value)

    def matches(self, version: int, address: int) -> list[int]:
        """Values of every block containing ``address``, most specific first."""
        bits = 32 if version == 4 else 128
        found: list[int] = []
        for length in self._lengths[version]:
            mask = ((1 << length) - 1) << (bits - length) if length else 0
            hit = self._tables[(version, length)].get(address & mask)
            if hit:
                found.extend(hit)
        return found

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())


def parse_address(text: str) -> netaddr.IPAddress:
    """An address from text; raises ``ValueError``."""
    try:
        return netaddr.IPAddress(text.strip(), flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ValueError("not an IP address") from None


def parse_block(text: str) -> list[netaddr.IPNetwork]:
    """CIDR blocks covering ``text``: a CIDR, one address, or ``first - last``."""
    raw = text.strip()
    try:
        if "-" in raw and "/" not in raw:
            lo, hi = (p.strip() for p in raw.split("-", 1))
            first, last = parse_address(lo), parse_address(hi)
            if first.version != last.version or first > last:
                raise ValueError("range ends out of order or of different families")
            return list(netaddr.IPRange(first, last).cidrs())
        net = netaddr.IPNetwork(raw)
    except (netaddr.AddrFormatError, ValueError, TypeError, IndexError) as exc:
        if isinstance(exc, ValueError) and "range" in str(exc):
            raise
        raise ValueError("not a prefix, address or range") from None
    if net.ip != net.network:
        raise ValueError("prefix has host bits set")
    return [net.cidr]


class OwnSpace:
    """The ISP's own prefixes: ``ipset`` for display/arithmetic, ``__contains__`` fast."""

    def __init__(self, prefixes: Iterable[str | netaddr.IPNetwork | Any]) -> None:
        self.ipset = netaddr.IPSet(str(p) for p in prefixes)
        self._index = PrefixIndex()
        for cidr in self.ipset.iter_cidrs():
            self._index.add(cidr, 1)

    def __contains__(self, address: object) -> bool:
        try:
            ip = address if isinstance(address, netaddr.IPAddress) else parse_address(str(address))
        except ValueError:
            return False
        return bool(self._index.matches(ip.version, int(ip)))

    def __len__(self) -> int:
        return len(self._index)
