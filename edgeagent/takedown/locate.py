"""Where a listed target is hosted: resolve it, match the answers to own customers.

Contract:

* :meth:`Locator.locate` takes every indicator but ``url-hash`` (which names no host;
  :func:`locatable`) and returns one :class:`Location` per indicator with every answer
  (address, TTL, time) and, per own address, which :class:`Assignment` held it at the
  notice time:

  - ``url``, ``url-prefix``, ``host``: the host's A and AAAA records;
  - ``domain``: the records of its apex, of ``www.`` under it, and of the names the same
    notice lists under it (``names``) — the names a whole-domain block covers that are
    known to be in use;
  - ``ip``: the address itself, no query;
  - ``cidr``: no query; each assignment the prefix overlaps is a match, named by the
    overlap (a prefix), and own space in it that nobody holds is one unassigned match.

  Queries go through the configured resolvers with dnspython.
* The resolvers must be ones that do **not** apply the blocking policy: a filtering
  resolver would answer with the stop page's or the proxy's address.
* Content is never fetched: only DNS queries leave this module. URLs with an IP literal
  host are matched without any query.
* Failures (timeout, SERVFAIL, NXDOMAIN) leave ``Location.error`` set and no matches;
  they never raise.

Where an own address sits on the agent's own segments is
:mod:`edgeagent.takedown.segment`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import netaddr

from edgeagent import canon
from edgeagent.model import Indicator, Scope
from edgeagent.takedown.customers.base import Assignment
from edgeagent.takedown.customers.directory import CustomerDirectory
from edgeagent.takedown.space import OwnSpace, parse_address

if TYPE_CHECKING:
    import dns.asyncquery
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.rcode
    import dns.rdatatype


@dataclass(frozen=True, slots=True)
class Answer:
    """One resolved address with its TTL, the time it was seen and the resolver asked."""

    address: str
    rdtype: str
    ttl: int
    resolved_at: datetime
    resolver: str


@dataclass(frozen=True, slots=True)
class LocatedAddress:
    """An answer address, whether it is ours, and the assignment at the notice time."""

    address: str
    own: bool
    assignment: Assignment | None


@dataclass(frozen=True, slots=True)
class Location:
    """Where one indicator is hosted. ``matches`` lists own addresses only."""

    indicator: Indicator
    host: str
    answers: tuple[Answer, ...]
    matches: tuple[LocatedAddress, ...]
    error: str = ""

    @property
    def customers(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for m in self.matches:
            if m.assignment is not None:
                seen.setdefault(m.assignment.customer_id, None)
        return tuple(seen)

    def by_customer(self) -> list[tuple[Assignment | None, tuple[str, ...]]]:
        """The own addresses grouped by assignment (``None``: own but unassigned)."""
        out: dict[str, tuple[Assignment | None, list[str]]] = {}
        for m in self.matches:
            key = m.assignment.customer_id if m.assignment is not None else ""
            slot = out.setdefault(key, (m.assignment, []))
            slot[1].append(m.address)
        return [(a, tuple(addrs)) for a, addrs in out.values()]


def locatable(indicator: Indicator) -> bool:
    """True for the scopes the locator handles: all but ``url-hash`` (no host known)."""
    return indicator.scope is not Scope.URL_HASH


def names_to_resolve(indicator: Indicator, names: Iterable[str] = ()) -> tuple[str, ...]:
    """The host names whose records locate ``indicator`` (none for addresses): a
    domain's apex, ``www.`` under it and those of ``names`` under it; else its host."""
    if indicator.scope is Scope.DOMAIN:
        apex = indicator.value
        under = (n for n in names if n == apex or n.endswith(f".{apex}"))
        return tuple(dict.fromkeys((apex, f"www.{apex}", *under)))
    host = indicator.host
    return (host,) if host else ()


class HostResolver:
    """Resolve many host names (A and AAAA) through ``resolvers`` (``(address, port)``).

    Used by the locator and by route diversion; both need resolvers that do not apply
    the blocking policy. ``concurrency`` bounds queries in flight; ``timeout`` is per
    query and resolver.
    """

    def __init__(
        self,
        resolvers: Sequence[tuple[str, int]],
        *,
        timeout: float = 2.0,
        concurrency: int = 64,
    ) -> None:
        if not resolvers:
            raise ValueError("resolution needs at least one non-filtering resolver")
        self.resolvers = tuple(resolvers)
        self.timeout = timeout
        self._sem = asyncio.Semaphore(concurrency)

    async def resolve_many(self, hosts: Iterable[str]) -> dict[str, tuple[tuple[Answer, ...], str]]:
        """``host -> (answers, error)`` for every distinct host."""
        unique = list(dict.fromkeys(hosts))
        async with _Mux.open(self.resolvers) as muxes:
            results = await asyncio.gather(*(self._resolve(h, muxes) for h in unique))
        return dict(zip(unique, results, strict=True))

    async def resolve(self, host: str) -> tuple[tuple[Answer, ...], str]:
        """``(answers, error)`` for ``host``; an IP literal answers itself."""
        async with _Mux.open(self.resolvers) as muxes:
            return await self._resolve(host, muxes)

    async def _resolve(self, host: str, muxes: Sequence[_Mux]) -> tuple[tuple[Answer, ...], str]:
        import dns.name
        import dns.rdatatype

        literal = _literal(host)
        if literal is not None:
            return (Answer(literal, "literal", 0, datetime.now(UTC), ""),), ""
        qname = dns.name.from_text(host)  # once for both types: it is not cheap
        v4, v6 = await asyncio.gather(
            self._query(qname, dns.rdatatype.A, muxes),
            self._query(qname, dns.rdatatype.AAAA, muxes),
        )
        answers = v4[0] + v6[0]
        error = "" if answers else (v4[1] or v6[1] or "no address")
        return answers, error

    async def _query(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, muxes: Sequence[_Mux]
    ) -> tuple[tuple[Answer, ...], str]:
        import dns.exception
        import dns.rcode
        import dns.rdatatype

        error = "no resolver answered"
        async with self._sem:
            for mux in muxes:
                label = f"{mux.address}:{mux.port}"
                try:
                    rcode, records = await mux.query(qname, rdtype, self.timeout)
                    if rcode < 0:  # truncated: ask again over TCP
                        rcode, records = await _tcp_query(mux, qname, rdtype, self.timeout)
                except (dns.exception.DNSException, OSError, TimeoutError, ValueError) as exc:
                    error = f"resolver {label}: {type(exc).__name__}"
                    continue
                if rcode == dns.rcode.NXDOMAIN:
                    return (), "NXDOMAIN"
                if rcode != dns.rcode.NOERROR:
                    error = f"resolver {label}: {dns.rcode.to_text(dns.rcode.Rcode(rcode))}"
                    continue
                when = datetime.now(UTC)
                kind = dns.rdatatype.to_text(rdtype)
                return tuple(Answer(a, kind, ttl, when, label) for a, ttl in records), ""
        return (), error


class Locator:
    """Resolve hosts through ``resolvers`` (``(address, port)``) and match the answers.

    ``concurrency`` bounds queries in flight; ``timeout`` is per query and resolver.
    """

    def __init__(
        self,
        own: OwnSpace,
        customers: CustomerDirectory,
        resolvers: Sequence[tuple[str, int]],
        *,
        timeout: float = 2.0,
        concurrency: int = 64,
    ) -> None:
        if not resolvers:
            raise ValueError("the locator needs at least one non-filtering resolver")
        self.own = own
        self.customers = customers
        self.resolver = HostResolver(resolvers, timeout=timeout, concurrency=concurrency)
        self.resolvers = self.resolver.resolvers

    async def locate(
        self,
        indicators: Iterable[Indicator],
        at: datetime | None = None,
        *,
        names: Iterable[str] = (),
    ) -> list[Location]:
        """One :class:`Location` per locatable indicator, in input order.

        ``at`` is the notice time used to pick the assignment (default: now); ``names``
        are host names the notice lists, resolved for the domains they are under.
        """
        when = at or datetime.now(UTC)
        listed = tuple(names)
        wanted = [(i, names_to_resolve(i, listed)) for i in indicators if locatable(i)]
        by_host = await self.resolver.resolve_many(h for _, hosts in wanted for h in hosts)
        out: list[Location] = []
        for ind, hosts in wanted:
            if ind.scope is Scope.CIDR:
                out.append(self._locate_prefix(ind, when))
                continue
            if ind.scope is Scope.IP:
                answer = Answer(ind.value, "literal", 0, when, "")
                out.append(Location(ind, "", (answer,), self.match([ind.value], when)))
                continue
            results = [by_host.get(h, ((), "no host")) for h in hosts]
            answers = tuple(a for found, _ in results for a in found)
            error = "" if answers else next((e for _, e in results if e), "no address")
            matches = self.match((a.address for a in answers), when)
            out.append(Location(ind, hosts[0], answers, matches, error))
        return out

    def _locate_prefix(self, ind: Indicator, at: datetime) -> Location:
        """A ``cidr`` entry: the assignments it overlaps, and own space nobody holds."""
        block = netaddr.IPNetwork(ind.value)
        own = self.own.ipset & netaddr.IPSet([block])
        answer = Answer(ind.value, "prefix", 0, at, "")
        if not own:
            return Location(ind, "", (answer,), ())
        matches: list[LocatedAddress] = []
        held = netaddr.IPSet()
        for a in self.customers.index.overlapping(block, at):  # most specific first wins
            span = netaddr.IPRange(
                netaddr.IPAddress(a.first, a.version), netaddr.IPAddress(a.last, a.version)
            )
            part = (own & netaddr.IPSet(span)) - held
            held |= part
            for cidr in part.iter_cidrs():
                matches.append(LocatedAddress(_prefix_text(cidr), True, a))
        for cidr in (own - held).iter_cidrs():
            matches.append(LocatedAddress(_prefix_text(cidr), True, None))
        return Location(ind, "", (answer,), tuple(matches))

    def match(
        self, addresses: Iterable[str], at: datetime | None = None
    ) -> tuple[LocatedAddress, ...]:
        """Own addresses among ``addresses`` with their assignment at ``at``."""
        when = at or datetime.now(UTC)
        found: list[LocatedAddress] = []
        for text in dict.fromkeys(addresses):
            ip = parse_address(text)
            if ip in self.own:
                found.append(LocatedAddress(str(ip), True, self.customers.lookup(ip, when)))
        return tuple(found)

    async def resolve(self, host: str) -> tuple[tuple[Answer, ...], str]:
        """``(answers, error)`` for ``host``; an IP literal answers itself."""
        return await self.resolver.resolve(host)


class _Mux(asyncio.DatagramProtocol):
    """Many UDP queries in flight over one socket to one resolver, matched by ID.

    dnspython's ``asyncquery.udp`` opens a socket per query, which caps a locate run at
    about 1,500 queries/s here; one connected socket with an ID table does ~10x that.
    Answers are accepted only from the connected resolver (the kernel filters others) and
    only with the question we asked (ID, name and type all checked).
    """

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[dns.name.Name, int, asyncio.Future[bytes]]] = {}
        self.closed_error: Exception | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, resolvers: Sequence[tuple[str, int]]) -> AsyncIterator[list[_Mux]]:
        loop = asyncio.get_running_loop()
        muxes: list[_Mux] = []
        try:
            for address, port in resolvers:
                mux = cls(address, port)
                await loop.create_datagram_endpoint(
                    partial(_same, mux), remote_addr=(address, port)
                )
                muxes.append(mux)
            yield muxes
        finally:
            for mux in muxes:
                if mux.transport is not None:
                    mux.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 12:
            return
        entry = self.pending.get(int.from_bytes(data[:2], "big"))
        if entry is not None and not entry[2].done():
            entry[2].set_result(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: fail every waiter now, not at the timeout.
        for _, _, fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionRefusedError(str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.error_received(exc or ConnectionResetError("closed"))

    def _resend(self, wire: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(wire)

    async def query(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, timeout: float
    ) -> tuple[int, list[tuple[str, int]]]:
        """``(rcode, [(address, ttl)])`` for ``qname``/``rdtype``; rcode -1 = truncated."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("resolver socket closed")
        loop = asyncio.get_running_loop()
        qid = random.randrange(65536)
        while qid in self.pending:
            qid = random.randrange(65536)
        wire = _query_wire(qid, qname, int(rdtype))
        fut: asyncio.Future[bytes] = loop.create_future()
        self.pending[qid] = (qname, int(rdtype), fut)
        # One resend at half the timeout (UDP loss); a timer, not a task per query.
        resend = loop.call_later(timeout / 2, self._resend, wire)
        try:
            self.transport.sendto(wire)
            async with asyncio.timeout(timeout):
                data = await fut
            return parse_reply(data, wire[12:], int(rdtype))
        finally:
            resend.cancel()
            del self.pending[qid]
            if not fut.done():
                fut.cancel()


def parse_reply(data: bytes, question: bytes, rdtype: int) -> tuple[int, list[tuple[str, int]]]:
    """``(rcode, [(address, ttl)])`` from a reply to ``question`` (its wire form).

    Hand-parsed because ``dns.message.from_wire`` was a third of the locate time; only
    what is needed is read: header, the echoed question (must equal ours, names compared
    case-insensitively), and the A/AAAA records of the asked type in the answer section
    (a CNAME chain's final records included). Raises ``ValueError`` on anything malformed.
    """
    if len(data) < 12:
        raise ValueError("short reply")
    _, flags, qd, an = struct.unpack_from("!HHHH", data, 0)
    if not flags & 0x8000 or qd != 1:
        raise ValueError("not a reply to one question")
    if flags & 0x0200:
        return -1, []
    end = 12 + len(question)
    if data[12:end].lower() != question.lower():
        raise ValueError("answer to a different question")
    rcode = flags & 0x000F
    size = 4 if rdtype == 1 else 16
    family = socket.AF_INET if rdtype == 1 else socket.AF_INET6
    pos, out = end, []
    for _ in range(an):
        pos = _skip_name(data, pos)
        if pos + 10 > len(data):
            raise ValueError("truncated record")
        rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
        pos += 10
        if pos + rdlen > len(data):
            raise ValueError("truncated record data")
        if rtype == rdtype and rclass == 1:
            if rdlen != size:
                raise ValueError("bad address length")
            out.append((socket.inet_ntop(family, data[pos : pos + rdlen]), ttl))
        pos += rdlen
    return rcode, out


def _skip_name(data: bytes, pos: int) -> int:
    while True:
        if pos >= len(data):
            raise ValueError("name runs past the end")
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length & 0xC0:
            raise ValueError("bad label type")
        pos += 1 + length


async def _tcp_query(
    mux: _Mux, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, timeout: float
) -> tuple[int, list[tuple[str, int]]]:
    import dns.asyncquery
    import dns.message

    q = dns.message.make_query(qname, rdtype)
    r = await dns.asyncquery.tcp(q, mux.address, timeout=timeout, port=mux.port)
    records = [
        (rd.to_text(), rrset.ttl) for rrset in r.answer if rrset.rdtype == rdtype for rd in rrset
    ]
    return int(r.rcode()), records


def _query_wire(qid: int, qname: dns.name.Name, rdtype: int) -> bytes:
    """A minimal recursive query (RD set, class IN, no EDNS) in wire format."""
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    return header + (qname.to_wire() or b"") + struct.pack("!HH", rdtype, 1)


def _same(mux: _Mux) -> _Mux:
    return mux


def _literal(host: str) -> str | None:
    try:
        return str(parse_address(host))
    except ValueError:
        return None


def _prefix_text(cidr: netaddr.IPNetwork) -> str:
    """A single address as itself, a larger block as ``address/len``."""
    return str(cidr.ip) if cidr.size == 1 else str(cidr.cidr)


def indicator_for_url(text: str) -> Indicator:
    """Convenience for tests and the CLI: a ``url`` indicator from text."""
    return Indicator(Scope.URL, canon.canonical_url(text))
