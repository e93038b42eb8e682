"""Route diversion, planning: which destinations may be diverted to the proxy (pure).

:func:`plan_routes` takes the addresses of hosts that have ``url`` or ``url-prefix``
entries (the caller resolves the names; a name maps to its addresses or, for
``ip``/``cidr`` entries, networks) and returns a :class:`RoutePlan`: one route per
destination in the dedicated policy table toward the proxy next hop of its family, plus
every destination it refused and why. Guardrails, in the order they are checked:

- ``invalid-address``: not an address or a network with host bits set;
- ``not-routable``: overlaps loopback, link-local, multicast, unspecified, reserved or
  IPv4-mapped space (a route there would break the host itself);
- ``not-global``: private, shared (CGNAT) or documentation space, refused unless
  ``allow_non_global`` (labs and tests) — a listed name pointing at the ISP's own
  internal addresses must not divert internal traffic;
- ``prefix-too-short``: a network broader than ``min_prefix_v4``/``min_prefix_v6``;
- ``no-next-hop``: no proxy next hop configured for the family;
- ``next-hop``: the destination covers the proxy next hop (the proxy's own traffic
  would loop);
- ``protected-address``: an address that a protected name resolves to. Addresses come
  from DNS, and a listed site can point its name at a popular third party's address;
  diverting it would route that third party's users through the proxy;
- ``protected-range`` / ``cdn-range``: overlaps a configured protected or CDN range
  (shared front ends serve thousands of sites).

A host with some addresses refused keeps its other routes: diversion by route is an
optional second layer behind DNS diversion, and a partial one still filters the
addresses it covers. More routes than ``max_routes`` refuses the **whole** plan with
:class:`RouteLimitExceeded`; the caller keeps the routes already installed.

Confidentiality: a host name never leaves :func:`plan_routes` in plain text; refusals and
routes carry ``errors.short_hash`` of it. Destinations are kept as addresses (they are
what the kernel table shows anyway) but log lines use their short hash too, because for
``ip``/``cidr`` entries the address *is* the list entry.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import netaddr

from edgeagent.errors import GuardrailViolation, short_hash

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
AddressLike = str | IPAddress | IPNetwork

# Route protocol numbers 0-4 are the kernel's own (unspec, redirect, kernel, boot,
# static: `ip route add` by hand uses boot). 200 is free in /etc/iproute2/rt_protos and
# far from the routing daemons' numbers (zebra 11, bird 12, ...).
DEFAULT_RT_PROTO: Final = 200
_KERNEL_PROTOS: Final = frozenset({0, 1, 2, 3, 4})

REASON_INVALID: Final = "invalid-address"
REASON_NOT_ROUTABLE: Final = "not-routable"
REASON_NOT_GLOBAL: Final = "not-global"
REASON_PREFIX_TOO_SHORT: Final = "prefix-too-short"
REASON_NO_NEXT_HOP: Final = "no-next-hop"
REASON_NEXT_HOP: Final = "next-hop"
REASON_PROTECTED_ADDRESS: Final = "protected-address"
REASON_PROTECTED_RANGE: Final = "protected-range"
REASON_CDN_RANGE: Final = "cdn-range"
REASONS: Final = (
    REASON_INVALID,
    REASON_NOT_ROUTABLE,
    REASON_NOT_GLOBAL,
    REASON_PREFIX_TOO_SHORT,
    REASON_NO_NEXT_HOP,
    REASON_NEXT_HOP,
    REASON_PROTECTED_ADDRESS,
    REASON_PROTECTED_RANGE,
    REASON_CDN_RANGE,
)


class _RangeSet:
    """Address ranges merged by a netaddr ``IPSet``, probed by bisection.

    ``IPSet.__contains__`` tries every prefix length (128 for IPv6) per probe, about
    100 us each; a plan of 10,000 routes probes several sets per destination, so probes go
    to sorted disjoint ``(first, last)`` integer intervals instead.
    """

    __slots__ = ("_firsts", "_lasts")

    def __init__(self, nets: Iterable[object]) -> None:
        merged = netaddr.IPSet([str(n) for n in nets])
        self._firsts: dict[int, list[int]] = {4: [], 6: []}
        self._lasts: dict[int, list[int]] = {4: [], 6: []}
        # iter_ipranges yields disjoint ranges in ascending order, IPv4 first.
        for rng in merged.iter_ipranges():
            self._firsts[rng.version].append(int(rng.first))
            self._lasts[rng.version].append(int(rng.last))

    def overlaps(self, net: IPNetwork) -> bool:
        """True if any address of ``net`` is in the set."""
        first = int(net.network_address)
        last = int(net.broadcast_address)
        i = bisect.bisect_right(self._firsts[net.version], last) - 1
        return i >= 0 and self._lasts[net.version][i] >= first


# Space a route must never cover, whatever the configuration says.
_NEVER: Final = _RangeSet(
    [
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "fe80::/10",
        "ff00::/8",
    ]
)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """Everything the planner and the reconciler need (from ``[routes]``).

    ``next_hop_v4``/``next_hop_v6``: the proxy's address on a directly connected network,
    per family; a family without one gets neither rules nor routes. ``rt_proto`` marks our
    routes and rules. ``allow_non_global`` admits private and documentation space (labs).
    """

    table: int = 100
    rule_priority: int = 1000
    ports: tuple[int, ...] = (80,)
    next_hop_v4: ipaddress.IPv4Address | None = None
    next_hop_v6: ipaddress.IPv6Address | None = None
    max_routes: int = 10_000
    min_prefix_v4: int = 24
    min_prefix_v6: int = 48
    protected_ranges: tuple[IPNetwork, ...] = ()
    cdn_ranges: tuple[IPNetwork, ...] = ()
    allow_non_global: bool = False
    rt_proto: int = DEFAULT_RT_PROTO
    dry_run: bool = False

    def __post_init__(self) -> None:
        # The kernel's own tables are 253 (default), 254 (main), 255 (local); 0 is "unspec".
        if not 1 <= self.table <= 252:
            raise ValueError("routes table must be 1..252")
        if not 1 <= self.rule_priority <= 32765:
            raise ValueError("routes rule_priority must be 1..32765")
        if not self.ports or any(not 1 <= p <= 65535 for p in self.ports):
            raise ValueError("routes ports must be 1..65535, at least one")
        if self.max_routes < 1:
            raise ValueError("routes max_routes must be >= 1")
        if not 0 <= self.min_prefix_v4 <= 32 or not 0 <= self.min_prefix_v6 <= 128:
            raise ValueError("routes min_prefix out of range")
        if self.rt_proto in _KERNEL_PROTOS or not 5 <= self.rt_proto <= 255:
            raise ValueError("routes rt_proto must be 5..255 (0-4 belong to the kernel)")

    def next_hop(self, version: int) -> IPAddress | None:
        """The proxy next hop for IP ``version`` (4 or 6), if any."""
        return self.next_hop_v4 if version == 4 else self.next_hop_v6

    def families(self) -> tuple[int, ...]:
        """Address families (``socket.AF_*``) that have a next hop, v4 first."""
        out: list[int] = []
        if self.next_hop_v4 is not None:
            out.append(socket.AF_INET)
        if self.next_hop_v6 is not None:
            out.append(socket.AF_INET6)
        return tuple(out)


# --------------------------------------------------------------------------- plan values


@dataclass(frozen=True, slots=True)
class Refusal:
    """A destination the guardrails kept out. ``destination`` is None for unparseable input.

    ``host_ref`` is the short hash of the host that asked for it; :meth:`describe` is the
    only text meant for logs (hashes only).
    """

    host_ref: str
    destination: IPNetwork | None
    reason: str

    def describe(self) -> str:
        dest = short_hash(str(self.destination)) if self.destination is not None else "-"
        return f"host {self.host_ref} destination {dest}: {self.reason}"


@dataclass(frozen=True, slots=True)
class PlannedRoute:
    """One route of the plan: ``destination`` via ``next_hop``, wanted by ``host_refs``."""

    destination: IPNetwork
    next_hop: IPAddress
    host_refs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """Routes to install (sorted, v4 first, one per destination) and what was refused."""

    routes: tuple[PlannedRoute, ...]
    refused: tuple[Refusal, ...] = ()

    def destinations(self) -> frozenset[IPNetwork]:
        return frozenset(r.destination for r in self.routes)

    def refused_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.refused:
            counts[r.reason] = counts.get(r.reason, 0) + 1
        return counts


class RouteLimitExceeded(GuardrailViolation):
    """The plan has more routes than ``max_routes``: refused whole, current routes stay."""

    def __init__(self, planned: int, limit: int) -> None:
        self.planned = planned
        self.limit = limit
        super().__init__(
            f"route plan refused: {planned} routes exceed max_routes={limit}; "
            "the installed routes are kept"
        )


# --------------------------------------------------------------------------- planning


def as_network(item: AddressLike) -> IPNetwork:
    """Parse an address (-> host network) or a network; host bits set is an error."""
    if isinstance(item, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return ipaddress.ip_network(item)
    if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return item
    return ipaddress.ip_network(item.strip(), strict=True)


def net_key(net: IPNetwork) -> tuple[int, int, int]:
    """Sort key: IPv4 before IPv6, then by address and prefix length."""
    return (net.version, int(net.network_address), net.prefixlen)


def _is_global(net: IPNetwork) -> bool:
    # ipaddress's is_global on a network looks at both ends; check the ends explicitly so a
    # network straddling private and public space counts as not global.
    return net.network_address.is_global and net.broadcast_address.is_global


def _unmap(net: IPNetwork) -> IPNetwork:
    """``::ffff:a.b.c.d`` -> ``a.b.c.d/32``: a mapped address is an IPv4 destination."""
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen == 128:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.ip_network(mapped)
    return net


def plan_routes(
    addresses: Mapping[str, Iterable[AddressLike]],
    settings: RouteSettings,
    *,
    protected_addresses: Iterable[AddressLike] = (),
) -> RoutePlan:
    """Plan diversion routes for ``addresses`` (host -> its addresses or networks).

    ``protected_addresses`` are the current addresses of protected names (the caller
    resolves them); any destination covering one is refused. Pure: no I/O, no logging.
    Raises :class:`RouteLimitExceeded` when more than ``settings.max_routes`` routes
    survive the guardrails. See the module docstring for the order of the checks.
    """
    third_party: list[IPNetwork] = []
    for item in protected_addresses:
        try:
            third_party.append(_unmap(as_network(item)))
        except (ValueError, TypeError):
            continue  # an unparseable protected address protects nothing
    protected_addr_set = _RangeSet(third_party)
    protected_set = _RangeSet(settings.protected_ranges)
    cdn_set = _RangeSet(settings.cdn_ranges)

    wanted: dict[IPNetwork, set[str]] = {}
    refused: dict[tuple[str, str, str], Refusal] = {}
    verdicts: dict[IPNetwork, str | None] = {}

    def refuse(ref: str, net: IPNetwork | None, reason: str) -> None:
        refused.setdefault((ref, str(net), reason), Refusal(ref, net, reason))

    for host, items in addresses.items():
        ref = short_hash(host)
        for item in items:
            try:
                net = _unmap(as_network(item))
            except (ValueError, TypeError):
                refuse(ref, None, REASON_INVALID)
                continue
            if net in verdicts:  # shared front ends: many hosts, one address
                reason = verdicts[net]
            else:
                reason = _check(net, settings, protected_addr_set, protected_set, cdn_set)
                verdicts[net] = reason
            if reason is not None:
                refuse(ref, net, reason)
            else:
                wanted.setdefault(net, set()).add(ref)

    if len(wanted) > settings.max_routes:
        raise RouteLimitExceeded(len(wanted), settings.max_routes)

    routes: list[PlannedRoute] = []
    for net in sorted(wanted, key=net_key):
        hop = settings.next_hop(net.version)
        assert hop is not None  # _check refused families without a next hop
        routes.append(PlannedRoute(net, hop, tuple(sorted(wanted[net]))))
    ordered = sorted(refused.values(), key=lambda r: (r.host_ref, str(r.destination), r.reason))
    return RoutePlan(routes=tuple(routes), refused=tuple(ordered))


def _check(
    net: IPNetwork,
    settings: RouteSettings,
    protected_addrs: _RangeSet,
    protected: _RangeSet,
    cdn: _RangeSet,
) -> str | None:
    """The first guardrail ``net`` fails, or None if it may be diverted."""
    if _NEVER.overlaps(net) or net.is_reserved:
        return REASON_NOT_ROUTABLE
    if not settings.allow_non_global and not _is_global(net):
        return REASON_NOT_GLOBAL
    min_prefix = settings.min_prefix_v4 if net.version == 4 else settings.min_prefix_v6
    if net.prefixlen < min_prefix:
        return REASON_PREFIX_TOO_SHORT
    hop = settings.next_hop(net.version)
    if hop is None:
        return REASON_NO_NEXT_HOP
    if hop in net:
        return REASON_NEXT_HOP
    if protected_addrs.overlaps(net):
        return REASON_PROTECTED_ADDRESS
    if protected.overlaps(net):
        return REASON_PROTECTED_RANGE
    if cdn.overlaps(net):
        return REASON_CDN_RANGE
    return None
