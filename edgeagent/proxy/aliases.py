"""IP-literal aliases of listed pages: ``http://<address>/<same path>`` is listed too.

The index matches names: a ``url`` or ``url-prefix`` entry for ``http://site.example/p``
does not list ``http://192.0.2.7/p``, although a client that knows the site's address can
ask any proxy port for it that way (absolute-form, or ``Host: 192.0.2.7``). So the agent
resolves the host of every such block (through resolvers *without* the blocking policy,
which would answer with the proxy's own address) and lists, for each address, an *alias*:
the same entry with the address in place of the host, same scope, path, query and source.
Aliases are ordinary index entries, so every spelling :mod:`edgeagent.canon` reads as that
address (``0177.0.0.1``, ``0x7f000001``, ``2130706433``, ``[::ffff:127.0.0.1]``, a
compressed or full IPv6 literal) matches, the sibling pages on the address still pass, and
edges get them with the index.

:class:`AliasBook` is the bookkeeping, pure and thread-safe (no I/O): which hosts carry
url-level blocks (:meth:`~AliasBook.track`, from each desired state, at the cost of the
changed entries), which of them are due for resolution (:meth:`~AliasBook.due`: never
asked, or their answer's TTL ran out), what the resolver said
(:meth:`~AliasBook.learn`), and the alias entries that came and went since the index last
took them (:meth:`~AliasBook.take`). Rules:

- an answer holds for its TTL, clamped to ``[min_ttl, max_ttl]``; then the host is asked
  again, and the addresses it no longer has lose their aliases (a host that moved);
- NXDOMAIN or no address record is an answer: no addresses, no aliases;
- a failure (timeout, SERVFAIL, no resolver answering) keeps the last addresses and asks
  again after ``retry_seconds``: an outage of the resolver must not reopen the bypass;
- an entry that leaves the policy takes its aliases along, and a host without entries is
  forgotten;
- at most :data:`MAX_ADDRESSES` addresses per host (the lowest, IPv4 first), so one
  hostile name with a thousand records cannot grow the index a thousandfold.

An IP-literal request is refused when any listed page of any name on that address has the
path; allow entries are not aliased (an allow for one name must not open a page of another
name on a shared address). Names never leave this module in logs: only counts.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edgeagent import canon
from edgeagent.entrydiff import changed
from edgeagent.model import Action, Entry, Indicator

MAX_ADDRESSES = 16
"""Most addresses of one host that get aliases (IPv4 first, the lowest of each)."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """What the resolver said about one host: ``addresses`` (empty for NXDOMAIN or no
    record) with the lowest ``ttl`` among them, or ``failed`` (nothing learnt)."""

    addresses: tuple[str, ...] = ()
    ttl: int = 0
    failed: bool = False


@dataclass(frozen=True, slots=True)
class AliasCounts:
    """Counts only (metrics, status): nothing naming a host or an address."""

    hosts: int  # hosts with url-level blocks
    unresolved: int  # of them, never asked yet
    addresses: int  # addresses known, over all hosts
    aliases: int  # alias entries in force


@dataclass(slots=True)
class _Host:
    entries: dict[Entry, None]  # the url/url-prefix blocks on this host (an ordered set)
    addresses: tuple[str, ...] = ()
    expires: float = 0.0  # when to ask again (monotonic seconds); 0: never asked


def alias_entry(entry: Entry, address: str) -> Entry:
    """``entry`` (a url or url-prefix block on a name) with ``address`` as its host."""
    value = entry.indicator.value
    start = value.index("://") + 3
    host = canon.url_host(value)
    literal = f"[{address}]" if ":" in address else address
    aliased = value[:start] + literal + value[start + len(host) :]
    return Entry(Indicator(entry.indicator.scope, aliased), Action.BLOCK, entry.source)


def canonical_address(text: str) -> str | None:
    """An answer's address in the form the index uses (IPv4-mapped IPv6 as IPv4), or
    ``None`` for something that is not an address."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return addr.compressed


def _address_order(address: str) -> tuple[int, int]:
    """IPv4 before IPv6, each in numeric order."""
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


def aliased_host(entry: Entry) -> str | None:
    """The name whose addresses alias ``entry``, or ``None`` (not a url-level block on a
    name: allows, names, addresses, digests, URLs on an IP literal)."""
    if entry.action is not Action.BLOCK or not entry.indicator.scope.is_url:
        return None
    host = canon.url_host(entry.indicator.value)
    # IPv6 has a colon; a canonical name never ends in a numeric label, an IPv4 does.
    return None if ":" in host or host[host.rfind(".") + 1 :].isdigit() else host


class AliasBook:
    """See the module docstring. Every method may be called from any thread."""

    def __init__(self, *, min_ttl: float, max_ttl: float, retry_seconds: float) -> None:
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._blocks: tuple[Entry, ...] = ()
        self._hosts: dict[str, _Host] = {}
        self._aliases: dict[Indicator, tuple[Entry, int]] = {}  # alias -> (entry, holders)
        self._came: dict[Indicator, Entry] = {}
        self._gone: dict[Indicator, Entry] = {}
        self._unresolved = 0  # hosts never resolved (kept as counts: status reads them)
        self._addresses = 0
        self.failures = 0  # resolutions that failed, ever

    # -- the policy

    def track(self, blocks: tuple[Entry, ...]) -> None:
        """Follow the blocks of the next desired state (identity-diffed, as the index)."""
        with self._lock:
            gone, came = changed(self._blocks, blocks)
            self._blocks = blocks
            for entry in gone:
                host = aliased_host(entry)
                slot = self._hosts.get(host) if host is not None else None
                if slot is None or entry not in slot.entries:
                    continue
                del slot.entries[entry]
                for address in slot.addresses:
                    self._release(alias_entry(entry, address))
                if not slot.entries and host is not None:
                    del self._hosts[host]
                    self._unresolved -= slot.expires == 0.0
                    self._addresses -= len(slot.addresses)
            for entry in came:
                host = aliased_host(entry)
                if host is None:
                    continue
                slot = self._hosts.get(host)
                if slot is None:
                    slot = self._hosts[host] = _Host({})
                    self._unresolved += 1
                if entry in slot.entries:
                    continue
                slot.entries[entry] = None
                for address in slot.addresses:
                    self._hold(alias_entry(entry, address))

    # -- resolution

    def due(self, now: float, limit: int) -> list[str]:
        """Up to ``limit`` hosts to resolve now: never asked first, then expired."""
        with self._lock:
            fresh = [h for h, s in self._hosts.items() if s.expires == 0.0]
            if len(fresh) < limit:
                fresh += [h for h, s in self._hosts.items() if 0.0 < s.expires <= now]
            return fresh[:limit]

    def learn(self, answers: Mapping[str, Resolved], now: float) -> None:
        """Take the resolver's answers (hosts no longer tracked are ignored)."""
        with self._lock:
            for host, answer in answers.items():
                slot = self._hosts.get(host)
                if slot is None:
                    continue
                self._unresolved -= slot.expires == 0.0
                if answer.failed:
                    self.failures += 1
                    slot.expires = now + self.retry_seconds
                    continue
                slot.expires = now + min(self.max_ttl, max(self.min_ttl, answer.ttl))
                known = {a for a in map(canonical_address, answer.addresses) if a is not None}
                addresses = tuple(sorted(known, key=_address_order)[:MAX_ADDRESSES])
                old, new = set(slot.addresses), set(addresses)
                for entry in slot.entries:
                    for address in old - new:
                        self._release(alias_entry(entry, address))
                    for address in new - old:
                        self._hold(alias_entry(entry, address))
                self._addresses += len(addresses) - len(slot.addresses)
                slot.addresses = addresses

    # -- the index's side

    def take(self) -> tuple[tuple[Entry, ...], tuple[Entry, ...]]:
        """``(gone, came)``: the alias entries that left and entered since the last
        :meth:`take` (or :meth:`current`), for :meth:`IndexModel.change`."""
        with self._lock:
            gone, came = tuple(self._gone.values()), tuple(self._came.values())
            self._gone, self._came = {}, {}
            return gone, came

    def current(self) -> tuple[Entry, ...]:
        """Every alias entry in force (a whole index build); pending changes are taken."""
        with self._lock:
            self._gone, self._came = {}, {}
            return tuple(entry for entry, _ in self._aliases.values())

    def pending(self) -> bool:
        """Are there alias changes the index has not taken yet?"""
        with self._lock:
            return bool(self._gone or self._came)

    def counts(self) -> AliasCounts:
        with self._lock:
            return AliasCounts(
                hosts=len(self._hosts),
                unresolved=self._unresolved,
                addresses=self._addresses,
                aliases=len(self._aliases),
            )

    # -- alias reference counts (several entries x addresses may make one alias)

    def _hold(self, alias: Entry) -> None:
        ind = alias.indicator
        held = self._aliases.get(ind)
        if held is not None:
            self._aliases[ind] = (held[0], held[1] + 1)
            return
        self._aliases[ind] = (alias, 1)
        if self._gone.get(ind) == alias:
            del self._gone[ind]  # it went and came back before the index took either
        else:
            self._came[ind] = alias

    def _release(self, alias: Entry) -> None:
        ind = alias.indicator
        entry, holders = self._aliases[ind]
        if holders > 1:
            self._aliases[ind] = (entry, holders - 1)
            return
        del self._aliases[ind]
        if ind in self._came:
            del self._came[ind]  # came and went before the index took it
        else:
            self._gone[ind] = entry


def resolved_of(answers: Iterable[tuple[str, int]], error: str) -> Resolved:
    """A :class:`Resolved` from ``(address, ttl)`` answers and the resolver's error text:
    NXDOMAIN and "no address" are answers (none), any other error a failure."""
    found = tuple(answers)
    if found:
        return Resolved(tuple(a for a, _ in found), min(t for _, t in found))
    if error in ("", "NXDOMAIN", "no address"):
        return Resolved()
    return Resolved(failed=True)
