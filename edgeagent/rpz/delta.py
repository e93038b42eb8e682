"""O(change) record diff between two versions of the policy: what an incremental push carries.

:func:`~edgeagent.rpz.compiler.diff_records` compares two *full* record sets: correct, but
O(zone) in time and memory (2M tuples for one changed entry in a 1M-entry policy). This
module gets the same answer from the entries instead:

1. :func:`changed_indicators` merge-walks the two sorted ``DesiredState`` tuples. The
   policy engine shares most :class:`~edgeagent.model.Entry` objects between versions, so
   long equal runs are skipped with tuple-slice comparisons (galloping, in C, identity
   first); only the differing positions cost Python work.
2. The changed indicators give the *affected owners*: a domain ``name`` and ``*.name``
   (plus every diverted URL host at or under it, since a domain block shadows them), a
   host's name, a URL's host, an address's ``rpz-ip`` trigger (with its twin: ``ip v``
   and ``cidr v/32`` share one owner), an allow's exception-zone owners.
3. For each affected owner, its records are computed in the old and in the new state by
   point look-ups (binary search in the sorted tuples), following exactly the precedence
   of :mod:`edgeagent.rpz.compiler` (domain > host > diversion; first ``rpz-ip`` twin in
   sort order wins; refused names give no owner). The canary's records change with the
   serial and are always part of the policy-zone delta.

Whenever the cheap path cannot be sure it is exact it returns ``None`` and the caller
falls back to the full diff: different settings, more than ``limit`` changed indicators,
an affected owner equal to the canary (the full compile would emit that owner twice), or
many changed names with URL entries present (the URL-host scan would be O(changes x URLs)).
The unit tests check the result against the full diff on random policies.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from operator import attrgetter

from edgeagent.canon import url_host as canon_url_host
from edgeagent.model import DesiredState, Entry, Indicator, Scope
from edgeagent.rpz.compiler import (
    Record,
    RpzAction,
    RpzSettings,
    canary_records,
    has_address_records,
    ip_trigger,
    is_ip_literal,
    owner_ok,
)
from edgeagent.rpz.zonetext import rpz_ip_owner, safe_owner

Delta = tuple[frozenset[Record], frozenset[Record]]
"""(removed, added) records, as :func:`~edgeagent.rpz.compiler.diff_records` returns."""

DEFAULT_LIMIT = 10_000  # changed indicators above which the full diff is as cheap
_URL_SCAN_NAMES = 256  # changed names above which a URL-host scan is not worth it
_GALLOP_START = 32
_IND = attrgetter("indicator")
_PASSTHRU = (("CNAME", "rpz-passthru."),)


def changed_indicators(
    old: Sequence[Entry], new: Sequence[Entry], limit: int = DEFAULT_LIMIT
) -> list[Indicator] | None:
    """Indicators whose entry was added, removed or changed; ``None`` past ``limit``.

    Both sequences must be sorted by indicator without duplicates (``DesiredState``).
    """
    if old is new:
        return []
    out: list[Indicator] = []
    i = j = 0
    n_old, n_new = len(old), len(new)
    while True:
        k = _common_run(old, i, new, j)
        i += k
        j += k
        if i >= n_old or j >= n_new:
            tail = old[i:] if i < n_old else new[j:]
            if len(out) + len(tail) > limit:
                return None
            out.extend(e.indicator for e in tail)
            return out
        a, b = old[i].indicator, new[j].indicator
        if a == b:
            out.append(a)
            i += 1
            j += 1
        elif a < b:
            out.append(a)
            i += 1
        else:
            out.append(b)
            j += 1
        if len(out) > limit:
            return None


def _common_run(a: Sequence[Entry], i: int, b: Sequence[Entry], j: int) -> int:
    """How many entries from ``a[i]`` and ``b[j]`` on are equal (galloping slice compares)."""
    n = min(len(a) - i, len(b) - j)
    k = 0
    step = _GALLOP_START
    while k < n:
        s = min(step, n - k)
        if a[i + k : i + k + s] == b[j + k : j + k + s]:
            k += s
            step *= 2
            continue
        # The first mismatch lies in [k, k + s): [k, lo) is equal, a mismatch is in [lo, hi).
        lo, hi = k, k + s
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if a[i + lo : i + mid] == b[j + lo : j + mid]:
                lo = mid
            else:
                hi = mid
        return lo
    return n


def _find(entries: Sequence[Entry], ind: Indicator) -> Entry | None:
    k = bisect_left(entries, ind, key=_IND)
    if k < len(entries) and entries[k].indicator == ind:
        return entries[k]
    return None


def _ip_twins(ind: Indicator) -> tuple[Indicator, ...]:
    """The indicators sharing ``ind``'s rpz-ip owner, in sort order (cidr before ip)."""
    if ind.scope is Scope.IP:
        net = ipaddress.ip_network(ind.value, strict=False)
        return (Indicator(Scope.CIDR, str(net)), ind)
    net = ipaddress.ip_network(ind.value, strict=False)
    if net.prefixlen == net.max_prefixlen:
        return (ind, Indicator(Scope.IP, str(net.network_address)))
    return (ind,)


class _PolicyView:
    """Point look-ups of one state's policy-zone records (see the module docstring)."""

    def __init__(
        self, state: DesiredState, settings: RpzSettings, url_hosts: frozenset[str]
    ) -> None:
        self.blocks = state.blocks
        self.s = settings
        self.url_hosts = url_hosts
        self.wild_extra = 3 + len(settings.zone)
        self.host_extra = 1 + len(settings.zone)

    def _rrs(self, source: str) -> tuple[tuple[str, str], ...]:
        return self.s.rdatas(self.s.action_for(source))

    def _owner_of(self, e: Entry | None, name: str, extra: int) -> Entry | None:
        """``e`` if its name may be an owner of its records (as the compiler decides)."""
        if e is None or not owner_ok(name, extra, has_address_records(self._rrs(e.source))):
            return None
        return e

    def _domain(self, name: str) -> Entry | None:
        e = _find(self.blocks, Indicator(Scope.DOMAIN, name))
        return self._owner_of(e, name, self.wild_extra)

    def _under_domain(self, name: str) -> bool:
        while True:
            if self._domain(name) is not None:
                return True
            dot = name.find(".")
            if dot < 0:
                return False
            name = name[dot + 1 :]

    def name_rrs(self, owner: str) -> tuple[tuple[str, str], ...]:
        if owner.startswith("*."):
            d = self._domain(owner[2:])
            return self._rrs(d.source) if d is not None else ()
        d = self._domain(owner)
        if d is not None:
            return self._rrs(d.source)
        h = self._owner_of(_find(self.blocks, Indicator(Scope.HOST, owner)), owner, self.host_extra)
        if h is not None:
            return self._rrs(h.source)
        if (
            owner in self.url_hosts
            and not self._under_domain(owner)
            and owner_ok(owner, self.host_extra, addresses=True)
            and not is_ip_literal(owner)
        ):
            return self.s.rdatas(RpzAction.DIVERT)
        return ()

    def ip_rrs(self, owner: str, twins: tuple[Indicator, ...]) -> tuple[tuple[str, str], ...]:
        for ind in twins:
            e = _find(self.blocks, ind)
            if e is not None and ip_trigger(ind.value, ind.scope, self.s) == owner:
                return self._rrs(e.source)
        return ()


def _url_slices(blocks: Sequence[Entry]) -> Iterable[Sequence[Entry]]:
    """The ``url`` and ``url-prefix`` runs of a sorted block tuple (url-hash excluded)."""
    start = bisect_left(blocks, Indicator(Scope.URL, ""), key=_IND)
    stop = bisect_left(blocks, Indicator(Scope.URL_HASH, ""), key=_IND)
    prefix = bisect_left(blocks, Indicator(Scope.URL_PREFIX, ""), key=_IND)
    return (blocks[start:stop], blocks[prefix:])


def _url_hosts(blocks: Sequence[Entry], names: set[str], domains: set[str]) -> set[str] | None:
    """Hosts of URL entries equal to one of ``names`` or at/under one of ``domains``."""
    wanted = names | domains
    if not wanted:
        return set()
    slices = [s for s in _url_slices(blocks) if s]
    if not slices:
        return set()
    if len(wanted) > _URL_SCAN_NAMES:
        return None
    out: set[str] = set()
    for run in slices:
        for e in run:
            v = e.indicator.value
            if not any(w in v for w in wanted):  # cheap C pre-filter
                continue
            host = canon_url_host(v)
            if host in names or any(host == d or host.endswith("." + d) for d in domains):
                out.add(host)
    return out


def policy_delta(
    old: DesiredState,
    old_serial: int,
    new: DesiredState,
    new_serial: int,
    settings: RpzSettings,
    *,
    limit: int = DEFAULT_LIMIT,
) -> Delta | None:
    """(removed, added) policy-zone records between two versions, or ``None`` (full diff)."""
    changed = changed_indicators(old.blocks, new.blocks, limit)
    if changed is None:
        return None
    names: set[str] = set()
    domains: set[str] = set()
    ips: dict[str, tuple[Indicator, ...]] = {}
    for ind in changed:
        scope = ind.scope
        if scope is Scope.DOMAIN:
            names.add(ind.value)
            names.add("*." + ind.value)
            domains.add(ind.value)
        elif scope is Scope.HOST:
            names.add(ind.value)
        elif scope.is_url:
            names.add(canon_url_host(ind.value))
        elif scope is Scope.IP or scope is Scope.CIDR:
            trigger = ip_trigger(ind.value, scope, settings)
            if trigger is not None:
                ips[trigger] = _ip_twins(ind)
    hosts_old: frozenset[str] = frozenset()
    hosts_new: frozenset[str] = frozenset()
    if settings.has_proxy:
        plain = {n for n in names if not n.startswith("*.")}
        found_old = _url_hosts(old.blocks, plain, domains)
        found_new = _url_hosts(new.blocks, plain, domains)
        if found_old is None or found_new is None:
            return None
        hosts_old, hosts_new = frozenset(found_old), frozenset(found_new)
        names |= hosts_old | hosts_new
    if settings.canary in names:
        return None
    views = (_PolicyView(old, settings, hosts_old), _PolicyView(new, settings, hosts_new))
    removed: set[Record] = set()
    added: set[Record] = set()
    for owner in names:
        _owner_delta(owner, views[0].name_rrs(owner), views[1].name_rrs(owner), removed, added)
    for owner, twins in ips.items():
        before, after = views[0].ip_rrs(owner, twins), views[1].ip_rrs(owner, twins)
        _owner_delta(owner, before, after, removed, added)
    old_canary = set(canary_records(settings, old_serial))
    new_canary = set(canary_records(settings, new_serial))
    removed |= old_canary - new_canary
    added |= new_canary - old_canary
    return frozenset(removed), frozenset(added)


def _owner_delta(
    owner: str,
    before: tuple[tuple[str, str], ...],
    after: tuple[tuple[str, str], ...],
    removed: set[Record],
    added: set[Record],
) -> None:
    if before == after:
        return
    b = {(owner, t, d) for t, d in before}
    a = {(owner, t, d) for t, d in after}
    removed |= b - a
    added |= a - b


def _allow_name_rrs(allows: Sequence[Entry], owner: str, zone: str) -> tuple[tuple[str, str], ...]:
    name = owner[2:] if owner.startswith("*.") else owner
    d = _find(allows, Indicator(Scope.DOMAIN, name))
    if (
        d is not None
        and safe_owner(name, zone) is not None
        and safe_owner(name, zone, wildcard=True) is not None
    ):
        return _PASSTHRU
    if owner.startswith("*."):
        return ()
    h = _find(allows, Indicator(Scope.HOST, name))
    if h is not None and safe_owner(name, zone) is not None:
        return _PASSTHRU
    return ()


def exception_delta(
    old: DesiredState, new: DesiredState, settings: RpzSettings, limit: int = DEFAULT_LIMIT
) -> Delta | None:
    """(removed, added) exception-zone records between two versions, or ``None``."""
    changed = changed_indicators(old.allows, new.allows, limit)
    if changed is None:
        return None
    names: set[str] = set()
    ips: dict[str, tuple[Indicator, ...]] = {}
    for ind in changed:
        if ind.scope is Scope.DOMAIN:
            names.update((ind.value, "*." + ind.value))
        elif ind.scope is Scope.HOST:
            names.add(ind.value)
        elif ind.scope is Scope.IP or ind.scope is Scope.CIDR:
            owner = rpz_ip_owner(ipaddress.ip_network(ind.value, strict=False))
            ips[owner] = _ip_twins(ind)
    zone = settings.exception_zone
    removed: set[Record] = set()
    added: set[Record] = set()
    for owner in names:
        before = _allow_name_rrs(old.allows, owner, zone)
        after = _allow_name_rrs(new.allows, owner, zone)
        _owner_delta(owner, before, after, removed, added)
    for owner, twins in ips.items():
        before = _PASSTHRU if any(_find(old.allows, t) for t in twins) else ()
        after = _PASSTHRU if any(_find(new.allows, t) for t in twins) else ()
        _owner_delta(owner, before, after, removed, added)
    return frozenset(removed), frozenset(added)
