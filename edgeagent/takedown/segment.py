"""Where an address sits on the segments of the host the agent runs on (kernel I/O only).

* :class:`SegmentDetail`: the outgoing interface, the next hop when the address is not
  on a directly connected segment, the MAC with how it was learned (the kernel's
  neighbour cache or a probe) and when, and what happened to a probe.
* :func:`read_route`: the kernel's route and neighbour entry for an address (pyroute2,
  netlink). Sends nothing on the wire.
* :func:`probe_mac`: one ARP who-has (IPv4) or neighbour solicitation (IPv6) with scapy,
  imported only then (it costs about a second and needs CAP_NET_RAW).

Both are blocking and run in the caller's network namespace; when and whether to probe
is decided by :class:`edgeagent.takedown.segment_locator.SegmentLocator`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import netaddr

from edgeagent.takedown.space import parse_address

# ``[takedown] probe``: when an ARP/ND probe may be sent for an on-segment address.
ProbeMode = Literal["never", "when-not-cached", "always"]

# What became of a probe: "" (none was due), "answered", "timed-out", or not sent:
# "refused" (outside own prefixes), "rate-limited", "failed" (could not be sent).
ProbeOutcome = Literal["", "answered", "timed-out", "refused", "rate-limited", "failed"]

_NUD = {
    0x01: "incomplete",
    0x02: "reachable",
    0x04: "stale",
    0x08: "delay",
    0x10: "probe",
    0x20: "failed",
    0x40: "noarp",
    0x80: "permanent",
}
_NUD_WITHOUT_MAC = (0x01, 0x20)
_RTN_LOCAL = 2


@dataclass(frozen=True, slots=True)
class SegmentDetail:
    """Where ``address`` sits, seen from the agent's host at ``checked_at``.

    ``next_hop`` is the route's gateway: set when the address is *not* on a directly
    connected segment (then no MAC is looked for). ``learned_from`` is ``"cache"`` (the
    kernel's neighbour entry, in state ``neighbour_state``, last confirmed at
    ``learned_at``) or ``"probe"`` (answered at ``learned_at``), or ``""`` when no MAC is
    known. ``error`` says why there is no detail (no route, an address of this host).
    """

    address: str
    checked_at: datetime
    interface: str = ""
    next_hop: str = ""
    mac: str = ""
    neighbour_state: str = ""
    learned_from: Literal["", "cache", "probe"] = ""
    learned_at: datetime | None = None
    probe: ProbeOutcome = ""
    error: str = ""

    @property
    def on_segment(self) -> bool:
        """True when the address is on a directly connected segment of this host."""
        return bool(self.interface) and not self.next_hop and not self.error

    def with_probe(
        self, outcome: ProbeOutcome, mac: str = "", at: datetime | None = None
    ) -> SegmentDetail:
        """This detail after a probe: an answer replaces what the cache said."""
        if mac:
            return replace(self, mac=mac, learned_from="probe", learned_at=at, probe=outcome)
        return replace(self, probe=outcome)

    def describe(self) -> str:
        """One line for a person (the e-mail notice)."""
        if self.error:
            return f"{self.address}: {self.error}"
        if not self.on_segment:
            hop = f"next hop {self.next_hop} via {self.interface}"
            return f"{self.address}: not on a local segment; {hop}"
        where = f"{self.address}: on the segment of {self.interface}"
        when = self.learned_at.isoformat() if self.learned_at else "?"
        if self.learned_from == "probe":
            return f"{where}, MAC {self.mac} (probe answered {when})"
        if self.learned_from == "cache":
            state = f", {self.neighbour_state}" if self.neighbour_state else ""
            return f"{where}, MAC {self.mac} (neighbour cache{state}, confirmed {when})"
        why = {
            "": "no probe sent",
            "timed-out": "probe not answered",
            "refused": "probe refused: outside own prefixes",
            "rate-limited": "probe skipped: rate limit",
            "failed": "probe could not be sent",
        }.get(self.probe, self.probe)
        return f"{where}, MAC unknown ({why})"

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "on_segment": self.on_segment,
            "interface": self.interface,
            "next_hop": self.next_hop,
            "mac": self.mac,
            "neighbour_state": self.neighbour_state,
            "learned_from": self.learned_from,
            "learned_at": self.learned_at.isoformat() if self.learned_at else None,
            "checked_at": self.checked_at.isoformat(),
            "probe": self.probe,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SegmentDetail:
        learned = d.get("learned_at")
        return cls(
            address=str(d["address"]),
            checked_at=datetime.fromisoformat(str(d["checked_at"])),
            interface=str(d["interface"]),
            next_hop=str(d["next_hop"]),
            mac=str(d["mac"]),
            neighbour_state=str(d["neighbour_state"]),
            learned_from=d["learned_from"],
            learned_at=datetime.fromisoformat(str(learned)) if learned else None,
            probe=d["probe"],
            error=str(d["error"]),
        )


def load_route_reader() -> None:
    """Import what :func:`read_route` needs now (the daemon, at start): pyroute2 takes a
    second or more of CPU to import, which would otherwise come out of the first lookup's
    timeout, in a worker thread competing with the event loop for the GIL."""
    import pyroute2
    import pyroute2.netlink.exceptions  # noqa: F401


def read_route(address: str) -> SegmentDetail:
    """The kernel's route to ``address`` and, on a connected segment, its neighbour entry.

    Blocking (netlink); sends nothing on the wire.
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    ip = parse_address(address)
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    now = datetime.now(UTC)
    with IPRoute() as ipr:
        try:
            route = ipr.route("get", dst=str(ip), family=family)[0]
        except NetlinkError as exc:
            return SegmentDetail(str(ip), now, error=f"no route ({os.strerror(exc.code)})")
        oif = int(route.get_attr("RTA_OIF") or 0)
        links = ipr.get_links(oif) if oif else []
        ifname = str(links[0].get_attr("IFLA_IFNAME")) if links else ""
        if int(route["type"]) == _RTN_LOCAL:
            return SegmentDetail(str(ip), now, ifname, error="an address of this host")
        gateway = str(route.get_attr("RTA_GATEWAY") or "")
        detail = SegmentDetail(str(ip), now, ifname, gateway)
        if gateway or not oif:
            return detail
        for n in ipr.get_neighbours(family=family, ifindex=oif):
            if n.get_attr("NDA_DST") == str(ip):
                return _with_neighbour(detail, n, now)
    return detail


def _with_neighbour(detail: SegmentDetail, entry: Any, now: datetime) -> SegmentDetail:
    nud = int(entry["state"])
    state = _NUD.get(nud, str(nud))
    lladdr = entry.get_attr("NDA_LLADDR")
    if not lladdr or nud in _NUD_WITHOUT_MAC:
        return replace(detail, neighbour_state=state)
    # The kernel reports ages in clock ticks (USER_HZ).
    info = entry.get_attr("NDA_CACHEINFO") or {}
    age = int(info.get("ndm_confirmed", 0)) / os.sysconf("SC_CLK_TCK")
    return replace(
        detail,
        mac=str(lladdr),
        neighbour_state=state,
        learned_from="cache",
        learned_at=now - timedelta(seconds=age),
    )


def probe_mac(address: str, interface: str, timeout: float) -> str:
    """One ARP who-has (IPv4) or neighbour solicitation (IPv6) on ``interface``; the
    answering MAC, or ``""`` when nothing answered within ``timeout`` seconds.

    Blocking; needs CAP_NET_RAW (raises ``OSError`` without it).
    """
    # Imported here only: scapy costs about a second to import and needs raw sockets.
    from scapy.layers.l2 import ARP, Ether
    from scapy.sendrecv import srp1

    ip = parse_address(address)
    if ip.version == 4:
        pkt: Any = Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=str(ip))
        reply = srp1(pkt, iface=interface, timeout=timeout, verbose=False)
        return str(reply[ARP].hwsrc) if reply is not None and ARP in reply else ""
    from scapy.arch import get_if_hwaddr
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6

    solicited = netaddr.IPAddress("ff02::1:ff00:0") + (int(ip) & 0xFFFFFF)
    low = int(ip) & 0xFFFFFF
    mcast_mac = f"33:33:ff:{low >> 16:02x}:{(low >> 8) & 0xFF:02x}:{low & 0xFF:02x}"
    own_mac = get_if_hwaddr(interface)
    # Hop limit 255 and a source link-layer option, or the kernel ignores the solicitation
    # (RFC 4861 7.1.1).
    pkt = (
        Ether(src=own_mac, dst=mcast_mac)
        / IPv6(dst=str(solicited), hlim=255)
        / ICMPv6ND_NS(tgt=str(ip))
        / ICMPv6NDOptSrcLLAddr(lladdr=own_mac)
    )
    reply = srp1(pkt, iface=interface, timeout=timeout, verbose=False)
    return str(reply[Ether].src) if reply is not None and ICMPv6ND_NA in reply else ""
