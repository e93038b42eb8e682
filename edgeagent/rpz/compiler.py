"""Pure compiler: :class:`~edgeagent.model.DesiredState` -> RPZ zone text and records.

No I/O. Output follows the granularity rule (``docs/architecture.md``, "Granularity rule"):

=============  =============================================================
block scope    policy-zone owners
=============  =============================================================
domain         ``name`` and ``*.name``, with the source's action
host           ``name``, with the source's action
url, url-pfx   ``host`` diverted (local A/AAAA of the filtering proxy) if a
               proxy is configured; otherwise counted ``not_enforceable_at_dns``
               -- a URL entry is never widened to a block of its host
ip, cidr       ``<len>.<reversed address>.rpz-ip`` within the prefix limits;
               wider prefixes are counted ``refused_ip_prefix``
=============  =============================================================

Allows go to the *exception zone* (listed first by resolvers) as ``CNAME rpz-passthru.``:
domain -> ``name`` + ``*.name``, host -> ``name``, ip/cidr -> rpz-ip. URL allows are
proxy-only (``allows_not_at_dns``): passing a whole host at DNS would widen them.

Precedence inside the policy zone (RPZ prefers an exact owner over a wildcard, so the
compiler must decide, not the resolver):

* a block beats a diversion: a URL host that is also host-blocked, or lies at or under a
  domain-blocked name, is not diverted (``divert_shadowed``);
* a name both domain- and host-blocked gets the domain's records once (no duplicate owner);
* the canary is always present: TXT ``edgeagent-canary serial=N`` plus an A record, so one
  query proves both that blocking works and which version the resolver serves.

Actions: ``nxdomain`` = ``CNAME .``, ``nodata`` = ``CNAME *.``, ``stop-page`` =
``CNAME <stop_page_host>.``, ``divert`` = ``A``/``AAAA`` of the proxy. An owner of
address records must be a host name (BIND's check-names refuses the whole zone
otherwise): a name with ``_`` is never diverted, and is counted (``refused_name`` for a
domain or host block, ``not_enforceable_at_dns`` for a URL's host).

Performance: the zone is generated as text chunks straight from the entries (no per-record
objects for the text path); memory beyond the ``DesiredState`` is one set of referenced
domain names plus the (usually small) set of diverted hosts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from edgeagent.canon import url_host as canon_url_host
from edgeagent.model import DesiredState, Scope
from edgeagent.rpz import defaults
from edgeagent.rpz.zonetext import (
    MAX_TEXT_NAME,
    NAME_PATTERN,
    rpz_ip_owner,
    safe_owner,
    soa_line,
    txt_rdata,
)

Record = tuple[str, str, str]
"""(relative owner, rtype, rdata) -- the unit of :func:`diff_records`."""

_NAME_FULLMATCH = NAME_PATTERN.fullmatch
_CHUNK = 4096  # owners per text chunk: big enough to amortise joins, small in memory


class RpzAction(StrEnum):
    """What the resolver answers for a triggered name or address."""

    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    STOP_PAGE = "stop-page"
    DIVERT = "divert"


@dataclass(frozen=True, slots=True)
class RpzSettings:
    """Everything the compiler needs besides the desired state. Validated on creation.

    ``source_actions`` maps a source to its action: an exact source (``"iwf"``) or the
    part before ``:`` (``"decision"`` covers every ``decision:<id>``); otherwise
    ``default_action``.
    """

    zone: str = defaults.ZONE
    exception_zone: str = defaults.EXCEPTION_ZONE
    mname: str = defaults.SOA_MNAME
    rname: str = defaults.SOA_RNAME
    ns: str = defaults.SOA_MNAME
    ttl: int = defaults.TTL
    timers: tuple[int, int, int, int] = (  # refresh retry expire minimum
        defaults.SOA_REFRESH,
        defaults.SOA_RETRY,
        defaults.SOA_EXPIRE,
        defaults.SOA_MINIMUM,
    )
    stop_page_host: str | None = None  # needed by the action stop-page
    proxy_ipv4: str | None = None
    proxy_ipv6: str | None = None
    canary: str = defaults.CANARY
    canary_ipv4: str = "192.0.2.1"
    default_action: RpzAction = RpzAction.NXDOMAIN
    source_actions: Mapping[str, RpzAction] = field(default_factory=dict)
    min_prefix_v4: int = 24
    min_prefix_v6: int = 48

    def __post_init__(self) -> None:
        # Accept plain strings (from config) for actions; store the enum.
        object.__setattr__(self, "default_action", RpzAction(self.default_action))
        object.__setattr__(
            self,
            "source_actions",
            MappingProxyType({k: RpzAction(v) for k, v in self.source_actions.items()}),
        )
        for label, name in (
            ("zone", self.zone),
            ("exception_zone", self.exception_zone),
            ("stop_page_host", self.stop_page_host),
            ("canary", self.canary),
        ):
            if name is not None and safe_owner(name, "") is None:
                raise ValueError(f"rpz.{label}: not a valid lower-case host name")
        if self.zone == self.exception_zone:
            raise ValueError("rpz.exception_zone: must differ from rpz.zone")
        for label, addr, version in (
            ("proxy_ipv4", self.proxy_ipv4, 4),
            ("proxy_ipv6", self.proxy_ipv6, 6),
            ("canary_ipv4", self.canary_ipv4, 4),
        ):
            if addr is not None and ipaddress.ip_address(addr).version != version:
                raise ValueError(f"rpz.{label}: not an IPv{version} address")
        uses_divert = self.default_action is RpzAction.DIVERT or any(
            a is RpzAction.DIVERT for a in self.source_actions.values()
        )
        if uses_divert and not self.has_proxy:
            raise ValueError("rpz: action 'divert' needs proxy_ipv4 or proxy_ipv6")
        if self.stop_page_host is None and RpzAction.STOP_PAGE in (
            self.default_action,
            *self.source_actions.values(),
        ):
            raise ValueError("rpz: action 'stop-page' needs stop_page_host")
        if not 0 <= self.min_prefix_v4 <= 32 or not 0 <= self.min_prefix_v6 <= 128:
            raise ValueError("rpz.min_prefix_v4/v6: out of range")

    @property
    def has_proxy(self) -> bool:
        return self.proxy_ipv4 is not None or self.proxy_ipv6 is not None

    def action_for(self, source: str) -> RpzAction:
        """The action for entries from ``source`` (exact, then prefix before ``:``)."""
        found = self.source_actions.get(source)
        if found is None:
            found = self.source_actions.get(source.partition(":")[0], self.default_action)
        return found

    def rdatas(self, action: RpzAction) -> tuple[tuple[str, str], ...]:
        """(rtype, rdata) pairs an owner gets for ``action``."""
        if action is RpzAction.NXDOMAIN:
            return (("CNAME", "."),)
        if action is RpzAction.NODATA:
            return (("CNAME", "*."),)
        if action is RpzAction.STOP_PAGE:
            return (("CNAME", f"{self.stop_page_host}."),)
        return self._divert_rdatas()

    def _divert_rdatas(self) -> tuple[tuple[str, str], ...]:
        out: list[tuple[str, str]] = []
        if self.proxy_ipv4 is not None:
            out.append(("A", self.proxy_ipv4))
        if self.proxy_ipv6 is not None:
            out.append(("AAAA", ipaddress.IPv6Address(self.proxy_ipv6).compressed))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class CompileStats:
    """What one compilation did.

    ``by_scope`` counts block entries that became triggers (``url`` covers ``url`` and
    ``url-prefix`` entries whose host is diverted).
    """

    by_scope: Mapping[str, int]
    allows: int
    records: int
    not_enforceable_at_dns: int
    refused_ip_prefix: int
    refused_name: int
    divert_shadowed: int
    allows_not_at_dns: int


class StatsCounter:
    """Mutable tally filled while a record stream is consumed; :meth:`freeze` at the end."""

    __slots__ = (
        "allows",
        "allows_not_at_dns",
        "by_scope",
        "divert_shadowed",
        "not_enforceable_at_dns",
        "records",
        "refused_ip_prefix",
        "refused_name",
    )

    def __init__(self) -> None:
        self.by_scope: dict[str, int] = {}
        self.allows = 0
        self.records = 0
        self.not_enforceable_at_dns = 0
        self.refused_ip_prefix = 0
        self.refused_name = 0
        self.divert_shadowed = 0
        self.allows_not_at_dns = 0

    def freeze(self) -> CompileStats:
        return CompileStats(
            by_scope=dict(self.by_scope),
            allows=self.allows,
            records=self.records,
            not_enforceable_at_dns=self.not_enforceable_at_dns,
            refused_ip_prefix=self.refused_ip_prefix,
            refused_name=self.refused_name,
            divert_shadowed=self.divert_shadowed,
            allows_not_at_dns=self.allows_not_at_dns,
        )


# An owner's records, pre-formatted once per action: the text path appends ``suffix`` to
# the owner, the record path pairs the owner with ``pairs``.
@dataclass(frozen=True, slots=True)
class _RRs:
    pairs: tuple[tuple[str, str], ...]
    suffixes: tuple[str, ...]
    single: str | None  # the only suffix, when there is exactly one (the common case)
    # Address records (a diversion): their owner must be a host name, "_" not allowed.
    addresses: bool

    @classmethod
    def of(cls, pairs: tuple[tuple[str, str], ...]) -> _RRs:
        suffixes = tuple(f" {t} {d}\n" for t, d in pairs)
        single = suffixes[0] if len(suffixes) == 1 else None
        return cls(pairs, suffixes, single, has_address_records(pairs))


_Owner = tuple[str, _RRs]


def has_address_records(pairs: Iterable[tuple[str, str]]) -> bool:
    """Do these (rtype, rdata) pairs hold ``A``/``AAAA`` records (a diversion)?"""
    return any(rtype in ("A", "AAAA") for rtype, _ in pairs)


def owner_ok(name: str, extra: int, addresses: bool = False) -> bool:
    """Hot-path twin of :func:`safe_owner`: may ``name`` (plus ``extra`` chars) be an owner
    (of address records, if ``addresses``)?

    Address records need a host-name owner: BIND's check-names (as ``named-checkzone -k
    fail`` in the publishers, and the hidden primary for an UPDATE) refuses the whole zone
    for one address owner with a ``_`` (``_dmarc.example``).
    """
    return (
        _NAME_FULLMATCH(name) is not None
        and len(name) + extra <= MAX_TEXT_NAME
        and ("rpz-" not in name or safe_owner(name, "") is not None)
        and not (addresses and "_" in name)
    )


def ip_trigger(value: str, scope: Scope, settings: RpzSettings) -> str | None:
    """The rpz-ip owner of an ``ip``/``cidr`` block value; ``None`` if the prefix is too wide."""
    if ":" not in value:
        # IPv4 fast path: the value is canonical dotted quad, optionally with /len.
        addr, _, plen_s = value.partition("/")
        plen = int(plen_s) if plen_s else 32
        if scope is Scope.CIDR and plen < settings.min_prefix_v4:
            return None
        a, b, cc, d = addr.split(".")
        return f"{plen}.{d}.{cc}.{b}.{a}.rpz-ip"
    net = ipaddress.ip_network(value, strict=False)
    limit = settings.min_prefix_v4 if net.version == 4 else settings.min_prefix_v6
    if scope is Scope.CIDR and net.prefixlen < limit:
        return None
    return rpz_ip_owner(net)


def _canary_owners(settings: RpzSettings, serial: int) -> Iterator[_Owner]:
    owner = safe_owner(settings.canary, settings.zone)
    if owner is None:
        raise ValueError("rpz.canary: too long for the zone")
    yield (
        owner,
        _RRs.of(
            (("A", settings.canary_ipv4), ("TXT", txt_rdata(f"edgeagent-canary serial={serial}")))
        ),
    )


def canary_records(settings: RpzSettings, serial: int) -> tuple[Record, ...]:
    """The canary's records at ``serial`` (part of every policy-zone version)."""
    return tuple((o, t, d) for o, rrs in _canary_owners(settings, serial) for t, d in rrs.pairs)


def _under_blocked_domain(host: str, domains: set[str]) -> bool:
    name = host
    while True:
        if name in domains:
            return True
        dot = name.find(".")
        if dot < 0:
            return False
        name = name[dot + 1 :]


def _policy_owners(
    state: DesiredState, settings: RpzSettings, serial: int, c: StatsCounter
) -> Iterator[_Owner]:
    """Every owner of the policy zone except the apex, with its records.

    Relies on ``state.blocks`` being sorted by indicator (the ``DesiredState`` contract):
    every ``domain`` entry then comes before the ``host`` and ``url`` entries it must
    shadow. A violation raises ``ValueError`` rather than emit a wrong precedence.
    """
    yield from _canary_owners(settings, serial)
    zone = settings.zone
    rr_cache: dict[str, _RRs] = {}
    action_for, rdatas = settings.action_for, settings.rdatas

    # Names blocked as a whole domain / as one host: to drop duplicate owners and to let
    # blocks beat diversions. They hold references to strings the state already owns.
    domains: set[str] = set()
    host_blocks: set[str] = set()
    url_hosts: list[str] = []
    ip_owners: set[str] = set()
    n_domain = n_host = n_ip = n_cidr = 0
    past_domains = False
    S_DOMAIN, S_HOST, S_URL, S_PREFIX = Scope.DOMAIN, Scope.HOST, Scope.URL, Scope.URL_PREFIX
    name_ok = owner_ok
    wild_extra = 3 + len(zone)  # "*." + name + "." + zone
    host_extra = 1 + len(zone)
    for e in state.blocks:
        ind = e.indicator
        scope = ind.scope
        name = ind.value
        source = e.source
        rrs = rr_cache.get(source)
        if rrs is None:
            rrs = rr_cache[source] = _RRs.of(rdatas(action_for(source)))
        if scope is S_DOMAIN:
            if past_domains:
                raise ValueError("DesiredState.blocks is not sorted by indicator")
            if name in domains:
                continue
            if not name_ok(name, wild_extra, rrs.addresses):
                c.refused_name += 1
                continue
            domains.add(name)
            n_domain += 1
            yield name, rrs
            yield "*." + name, rrs
        elif scope is S_HOST:
            past_domains = True
            if name in domains or name in host_blocks:
                continue  # the domain's (or first host entry's) records already cover it
            if not name_ok(name, host_extra, rrs.addresses):
                c.refused_name += 1
                continue
            host_blocks.add(name)
            n_host += 1
            yield name, rrs
        elif scope is S_URL or scope is S_PREFIX:
            past_domains = True
            url_hosts.append(canon_url_host(name))
        elif scope is Scope.URL_HASH:
            # Hashed-list entries name no host: the proxy index enforces them, DNS cannot
            # divert for them (such feeds name their hosts separately, or the deployment
            # diverts all port-80 traffic).
            past_domains = True
            c.not_enforceable_at_dns += 1
        else:
            trigger = ip_trigger(name, scope, settings)
            if trigger is None:
                c.refused_ip_prefix += 1
                continue
            if trigger in ip_owners:
                continue  # e.g. ip 192.0.2.1 and cidr 192.0.2.1/32: one owner, first wins
            ip_owners.add(trigger)
            if scope is Scope.IP:
                n_ip += 1
            else:
                n_cidr += 1
            yield trigger, rrs
    by_scope = c.by_scope
    for key, n in (("domain", n_domain), ("host", n_host), ("ip", n_ip), ("cidr", n_cidr)):
        if n:
            by_scope[key] = by_scope.get(key, 0) + n

    if not url_hosts:
        return
    if not settings.has_proxy:
        c.not_enforceable_at_dns += len(url_hosts)
        return
    divert = _RRs.of(settings.rdatas(RpzAction.DIVERT))
    diverted: set[str] = set()
    for host in url_hosts:
        if host in host_blocks or _under_blocked_domain(host, domains):
            c.divert_shadowed += 1
            continue
        if host in diverted:
            _count_url(by_scope)
            continue
        if not name_ok(host, host_extra, True) or is_ip_literal(host):
            # An address literal or unusual host cannot be diverted by name.
            c.not_enforceable_at_dns += 1
            continue
        diverted.add(host)
        _count_url(by_scope)
        yield host, divert


def _count_url(by_scope: dict[str, int]) -> None:
    by_scope["url"] = by_scope.get("url", 0) + 1


def is_ip_literal(host: str) -> bool:
    """Is the URL host an address literal (it cannot be diverted by name)?"""
    # Numeric last label: an IPv4 literal (DNS names never end in an all-digit label).
    return host.rpartition(".")[2].isdigit()


def _exception_owners(
    state: DesiredState, settings: RpzSettings, c: StatsCounter
) -> Iterator[_Owner]:
    zone = settings.exception_zone
    passthru = _RRs.of((("CNAME", "rpz-passthru."),))
    seen: set[str] = set()
    for e in state.allows:
        ind = e.indicator
        scope = ind.scope
        name = ind.value
        owners: tuple[str | None, ...]
        if scope is Scope.DOMAIN:
            owners = (safe_owner(name, zone), safe_owner(name, zone, wildcard=True))
        elif scope is Scope.HOST:
            owners = (safe_owner(name, zone),)
        elif scope.is_url or scope is Scope.URL_HASH:
            # A hashed allow names no host either: proxy-only, like URL allows.
            c.allows_not_at_dns += 1
            continue
        else:
            # The guard already refused allows wider than the minimum prefix.
            owners = (rpz_ip_owner(ipaddress.ip_network(name, strict=False)),)
        if any(o is None for o in owners):
            c.refused_name += 1
            continue
        c.allows += 1
        for o in owners:
            if o is not None and o not in seen:
                seen.add(o)
                yield o, passthru


def _apex(zone_settings: RpzSettings, serial: int) -> str:
    s = zone_settings
    return (
        f"$TTL {s.ttl}\n"
        + soa_line(s.mname, s.rname, serial, s.timers)
        + f"@ NS {s.ns.rstrip('.')}.\n"
    )


def _text(owners: Iterable[_Owner], header: str, c: StatsCounter) -> Iterator[str]:
    yield header
    buf: list[str] = []
    append = buf.append
    n = 0
    for owner, rrs in owners:
        one = rrs.single
        if one is not None:
            append(owner + one)
            n += 1
        else:
            for suffix in rrs.suffixes:
                append(owner + suffix)
            n += len(rrs.suffixes)
        if len(buf) >= _CHUNK:
            yield "".join(buf)
            buf.clear()
    c.records += n
    if buf:
        yield "".join(buf)


def _records(owners: Iterable[_Owner], c: StatsCounter) -> Iterator[Record]:
    for owner, rrs in owners:
        for rtype, rdata in rrs.pairs:
            c.records += 1
            yield owner, rtype, rdata


def policy_zone_text(
    state: DesiredState,
    settings: RpzSettings,
    serial: int,
    counter: StatsCounter | None = None,
) -> Iterator[str]:
    """Stream the policy zone as text chunks, each one or more complete lines.

    The first chunk is the apex (``$TTL``, SOA with ``serial``, NS). ``counter``, if given,
    holds the :class:`CompileStats` figures once the stream is exhausted.
    """
    c = counter if counter is not None else StatsCounter()
    return _text(_policy_owners(state, settings, serial, c), _apex(settings, serial), c)


def exception_zone_text(
    state: DesiredState,
    settings: RpzSettings,
    serial: int,
    counter: StatsCounter | None = None,
) -> Iterator[str]:
    """Stream the exception (passthru) zone as text chunks; same shape as the policy zone."""
    c = counter if counter is not None else StatsCounter()
    return _text(_exception_owners(state, settings, c), _apex(settings, serial), c)


def policy_records(
    state: DesiredState,
    settings: RpzSettings,
    serial: int,
    counter: StatsCounter | None = None,
) -> Iterator[Record]:
    """The policy zone's records without the apex (SOA/NS), for :func:`diff_records`."""
    c = counter if counter is not None else StatsCounter()
    return _records(_policy_owners(state, settings, serial, c), c)


def exception_records(
    state: DesiredState, settings: RpzSettings, counter: StatsCounter | None = None
) -> Iterator[Record]:
    """The exception zone's records without the apex."""
    c = counter if counter is not None else StatsCounter()
    return _records(_exception_owners(state, settings, c), c)


def compile_stats(state: DesiredState, settings: RpzSettings) -> CompileStats:
    """Run the policy and exception compilation for its figures only (no text kept)."""
    c = StatsCounter()
    for _, rrs in _policy_owners(state, settings, 0, c):
        c.records += len(rrs.pairs)
    for _, rrs in _exception_owners(state, settings, c):
        c.records += len(rrs.pairs)
    return c.freeze()


def diff_records(
    old: Iterable[Record], new: Iterable[Record]
) -> tuple[frozenset[Record], frozenset[Record]]:
    """(removed, added) between two record sets: what an incremental push must carry.

    Set difference, so the result (and an RFC 2136 UPDATE built from it) is proportional to
    the change, not to the zone.
    """
    old_set = old if isinstance(old, frozenset | set) else frozenset(old)
    new_set = new if isinstance(new, frozenset | set) else frozenset(new)
    return frozenset(old_set - new_set), frozenset(new_set - old_set)
