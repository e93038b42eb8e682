"""Pure policy merge: feed snapshots + decisions + overrides -> ``DesiredState``.

No I/O here. The service reads the live generations and active decisions from the store
and hands them over as iterables; this module decides what every enforcer must show.

Rules, in order:
1. Expired entries (``expires_at`` in the past) are dropped.
2. Entries the guardrails refuse outright (public suffixes, the root, IP prefixes shorter
   than the limit, reserved names; blocks and allows alike) are dropped and counted in
   ``DesiredState.refused`` by reason. Entries
   that needed a second person got that approval before they became live (a held feed
   generation approved, a pending decision approved), so they are not re-checked here.
3. An ``allow`` on an indicator removes a ``block`` on the *same* indicator and is kept in
   ``allows`` so DNS can answer ``rpz-passthru`` even when a wider block covers it.
4. An indicator listed by several sources appears once; ``sources`` names all of them.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from edgeagent import canon
from edgeagent.bulk import paced
from edgeagent.errors import InvalidTarget
from edgeagent.guard import GuardVerdict
from edgeagent.model import Action, BlockDelta, DesiredState, Entry, Indicator, Scope


class BlockGate(Protocol):
    """What the merge needs from the guardrails (``edgeagent.guard.Guard`` satisfies it)."""

    def check_indicator(self, indicator: Indicator, action: Action) -> GuardVerdict: ...


def merge(
    version: int,
    entries: Iterable[Entry],
    gate: BlockGate,
    *,
    now: datetime | None = None,
) -> DesiredState:
    """Build the desired state from every candidate entry (feeds and decisions alike)."""
    when = now or datetime.now(UTC)
    blocks: dict[Indicator, Entry] = {}
    allows: dict[Indicator, Entry] = {}
    # Only indicators listed by more than one source get a ``sources`` row: the common
    # single-source case costs no memory beyond the entry itself (1M-entry policies).
    # Blocks and allows count their sources apart: the surviving entry's sources are shown.
    block_sources: dict[Indicator, list[str]] = {}
    allow_sources: dict[Indicator, list[str]] = {}
    refused: dict[str, int] = {}
    for entry in entries:
        if entry.expires_at is not None and entry.expires_at <= when:
            continue
        ind = entry.indicator
        verdict = gate.check_indicator(ind, entry.action)
        if not verdict.allowed:
            refused[verdict.reason] = refused.get(verdict.reason, 0) + 1
            continue
        if entry.action is Action.BLOCK:
            first, extra = blocks.setdefault(ind, entry), block_sources
        else:
            first, extra = allows.setdefault(ind, entry), allow_sources
        if first is not entry and first.source != entry.source:
            known = extra.setdefault(ind, [first.source])
            if entry.source not in known:
                known.append(entry.source)
    for ind in allows:
        blocks.pop(ind, None)
        block_sources.pop(ind, None)
    extra_sources = {**block_sources, **allow_sources}
    return DesiredState(
        version=version,
        blocks=tuple(blocks[k] for k in sorted(blocks, key=sort_key)),
        allows=tuple(allows[k] for k in sorted(allows, key=sort_key)),
        sources={k: tuple(v) for k, v in extra_sources.items()},
        refused=refused,
    )


@dataclass(frozen=True, slots=True)
class AppliedEntry:
    """One entry that applies to a looked-up target, and how it applies."""

    entry: Entry
    layer: str  # "dns" or "proxy" or "routes"
    effect: str  # "block", "divert", "passthru", "stop-page", "pass"


@dataclass(frozen=True, slots=True)
class Treatment:
    """How a target is treated by the current desired state, and why."""

    target_kind: str  # "url", "name" or "address"
    canonical: str
    dns: str  # "block", "divert", "passthru" or "none"
    proxy: str  # "stop-page" or "pass" (URLs and names only)
    matches: tuple[AppliedEntry, ...]


class PolicyIndex:
    """Lookup structures over one ``DesiredState`` (built once per policy version)."""

    def __init__(self, state: DesiredState) -> None:
        self.state = state
        self._domains: dict[str, list[Entry]] = {}
        self._hosts: dict[str, list[Entry]] = {}
        # host + path -> (the entry's query parameters, entry), as the proxy index probes
        self._urls: dict[str, list[tuple[frozenset[str], Entry]]] = {}
        # host -> (host + path without trailing "/", entry) of url-prefix entries
        self._prefixes: dict[str, list[tuple[str, Entry]]] = {}
        self._url_hosts: dict[str, list[Entry]] = {}  # host -> url/url-prefix entries
        self._nets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Entry]] = []
        self._allow_names: dict[str, list[Entry]] = {}
        self._hashes: dict[str, list[Entry]] = {}  # hex digest of a lookup expression
        for e in state.blocks:
            self._add(e)
        for e in state.allows:
            if e.indicator.scope.is_name:
                self._allow_names.setdefault(e.indicator.value, []).append(e)

    def _add(self, e: Entry) -> None:
        ind = e.indicator
        if ind.scope is Scope.DOMAIN:
            self._domains.setdefault(ind.value, []).append(e)
        elif ind.scope is Scope.HOST:
            self._hosts.setdefault(ind.value, []).append(e)
        elif ind.scope is Scope.URL_HASH:
            self._hashes.setdefault(ind.value, []).append(e)
        elif ind.scope.is_url:
            host = canon.url_host(ind.value)
            self._url_hosts.setdefault(host, []).append(e)
            if ind.scope is Scope.URL:
                base, params = _split_expression(ind.value)
                self._urls.setdefault(base, []).append((params, e))
            else:
                prefix = canon.url_prefix_expression(ind.value).rstrip("/")
                self._prefixes.setdefault(host, []).append((prefix, e))
        else:
            self._nets.append((ipaddress.ip_network(ind.value), e))

    def explain(self, target: str) -> Treatment:
        """Classify ``target`` (URL, host name or address) and report what applies."""
        text = target.strip()
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            pass
        else:
            hits = tuple(AppliedEntry(e, "dns", "block") for net, e in self._nets if addr in net)
            return Treatment("address", str(addr), "block" if hits else "none", "pass", hits)
        if "/" in text or "://" in text:
            url = canon.canonical_url(text)
            host = canon.url_host(url)
            proxy_hits = self._url_matches(url)
            name_hits = self._name_matches(host)
            return self._treat("url", url, name_hits, proxy_hits, host)
        try:
            name = canon.canonical_name(text)
        except InvalidTarget:
            raise
        return self._treat("name", name, self._name_matches(name), (), name)

    def _treat(
        self,
        kind: str,
        canonical: str,
        name_hits: tuple[AppliedEntry, ...],
        proxy_hits: tuple[AppliedEntry, ...],
        host: str,
    ) -> Treatment:
        allowed = self._allowed(host)
        diverted = tuple(AppliedEntry(e, "dns", "divert") for e in self._url_hosts.get(host, ()))
        if allowed:
            dns = "passthru"
            matches = tuple(AppliedEntry(e, "dns", "passthru") for e in allowed)
            proxy = "pass"
        elif name_hits:
            dns, matches, proxy = "block", name_hits, "stop-page"
        elif diverted:
            dns, matches = "divert", diverted + proxy_hits
            proxy = "stop-page" if proxy_hits else "pass"
        else:
            # Hashed-list hits need no diversion where all port-80 traffic goes through
            # the proxy; they are the only way a non-diverted URL can still match.
            dns, matches = "none", proxy_hits
            proxy = "stop-page" if proxy_hits else "pass"
        return Treatment(kind, canonical, dns, proxy, matches)

    def lifted_by(self, indicator: Indicator) -> tuple[Entry, ...]:
        """The blocks an ``allow`` on ``indicator`` would lift (see the merge rules).

        Every allow lifts a block on the same indicator. A name allow also answers
        ``rpz-passthru`` for its name (a ``domain`` allow: and every name under it), which
        lifts the name blocks covering those names and the diversion that URL blocks on
        them need.
        """
        lifted: dict[int, Entry] = {}
        pos = entry_position(self.state.blocks, indicator)
        if pos is not None:
            lifted[id(self.state.blocks[pos])] = self.state.blocks[pos]
        if indicator.scope.is_name:
            name = indicator.value
            names = {name}
            if indicator.scope is Scope.DOMAIN:
                under = "." + name
                for table in (self._hosts, self._domains, self._url_hosts):
                    names.update(k for k in table if k.endswith(under))
            for host in names:
                for m in self._name_matches(host):
                    lifted[id(m.entry)] = m.entry
                for e in self._url_hosts.get(host, ()):
                    lifted[id(e)] = e
        return tuple(lifted.values())

    def _allowed(self, host: str) -> list[Entry]:
        return [
            e
            for name in _suffixes(host)
            for e in self._allow_names.get(name, ())
            if name == host or e.indicator.scope is Scope.DOMAIN
        ]

    def _name_matches(self, host: str) -> tuple[AppliedEntry, ...]:
        hits = [AppliedEntry(e, "dns", "block") for e in self._hosts.get(host, ())]
        for name in _suffixes(host):
            hits.extend(AppliedEntry(e, "dns", "block") for e in self._domains.get(name, ()))
        return tuple(hits)

    def _url_matches(self, url: str) -> tuple[AppliedEntry, ...]:
        """URL-level entries the proxy would match for ``url``, with its rules.

        Every reading of the request counts (:func:`edgeagent.canon.request_urls`: cut at a
        fragment, path parameters removed), a url entry matches when its parameters are
        among the request's (none: any query), a url-prefix entry when the path is the
        prefix or lies under it at a ``/`` boundary.
        """
        found: dict[int, Entry] = {}
        for reading in canon.request_urls(url):
            base, params = _split_expression(reading)
            for wanted, e in self._urls.get(base, ()):
                if wanted <= params:
                    found.setdefault(id(e), e)
            for prefix, e in self._prefixes.get(canon.url_host(reading), ()):
                if base == prefix or base.startswith(prefix + "/"):
                    found.setdefault(id(e), e)
            if self._hashes:
                for expr in canon.lookup_expressions(reading):
                    digest = canon.expression_hash(expr).hex()
                    for e in self._hashes.get(digest, ()):
                        found.setdefault(id(e), e)
        return tuple(AppliedEntry(e, "proxy", "stop-page") for e in found.values())


def _split_expression(url: str) -> tuple[str, frozenset[str]]:
    """Host + path of canonical ``url`` and its canonical query parameters."""
    base, _, query = canon.url_expression(url).partition("?")
    return base, frozenset(query.split("&")) if query else frozenset()


def _suffixes(name: str) -> Iterator[str]:
    """``a.b.example`` -> ``a.b.example``, ``b.example``, ``example``."""
    labels = name.split(".")
    for i in range(len(labels)):
        yield ".".join(labels[i:])


@dataclass(frozen=True, slots=True)
class BasePolicy:
    """A merged state (the feeds) that :func:`overlay` lays decisions over.

    Entries are found by binary search over the sorted tuples: no index to build or hold
    (a position map costs about 100 bytes an entry on a million-entry policy).
    """

    state: DesiredState

    @classmethod
    def of(cls, state: DesiredState) -> BasePolicy:
        return cls(state)

    def block_position(self, ind: Indicator) -> int | None:
        return entry_position(self.state.blocks, ind)

    def allow_position(self, ind: Indicator) -> int | None:
        return entry_position(self.state.allows, ind)


def entry_position(entries: tuple[Entry, ...], ind: Indicator) -> int | None:
    """Where ``ind`` is in ``entries`` (sorted, one entry per indicator), if it is."""
    i = _insertion(entries, ind)
    return i if i < len(entries) and entries[i].indicator == ind else None


def _insertion(entries: tuple[Entry, ...], ind: Indicator) -> int:
    """Where ``ind`` is or would go in ``entries`` (sorted)."""
    return bisect.bisect_left(entries, sort_key(ind), key=_entry_key)


def apply_changes(
    base_policy: BasePolicy,
    removed: Iterable[Entry],
    added: Iterable[Entry],
    gate: BlockGate,
    *,
    now: datetime | None = None,
) -> BasePolicy | None:
    """The merged feeds after one feed's generation changed, at the cost of the change.

    ``removed``/``added`` are what differs between the feed's old and new generation
    (:class:`edgeagent.store.base.GenerationChanges`). The result is the one a
    :func:`merge` of every live generation gives when each changed entry is a block that
    no other source lists and no allow covers, the common case; otherwise ``None`` and
    the caller merges in full. Unchanged entries stay the very same objects, and the
    result's ``delta`` names the blocks gone and come (:class:`~edgeagent.model.BlockDelta`),
    so the enforcers move by the change instead of comparing.
    """
    base = base_policy.state
    when = now or datetime.now(UTC)
    drop: set[int] = set()
    for entry in removed:
        pos = base_policy.block_position(entry.indicator)
        if (
            entry.action is not Action.BLOCK
            or pos is None
            or base.blocks[pos] != entry
            or entry.indicator in base.sources
        ):
            return None
        drop.add(pos)
    refused = dict(base.refused)
    new: dict[Indicator, Entry] = {}
    at: dict[Indicator, int] = {}  # where each goes: one search per entry, not two
    for entry in added:
        ind = entry.indicator
        if entry.action is not Action.BLOCK or ind in new:
            return None
        if entry.expires_at is not None and entry.expires_at <= when:
            continue
        verdict = gate.check_indicator(ind, entry.action)
        if not verdict.allowed:
            refused[verdict.reason] = refused.get(verdict.reason, 0) + 1
            continue
        i = _insertion(base.blocks, ind)
        held = i < len(base.blocks) and base.blocks[i].indicator == ind
        if (held and i not in drop) or base_policy.allow_position(ind) is not None:
            return None
        new[ind], at[ind] = entry, i
    came = sorted(new.values(), key=_entry_key)
    blocks = _spliced(base.blocks, drop, came, [at[e.indicator] for e in came])
    delta = BlockDelta(base.blocks, tuple(base.blocks[p] for p in sorted(drop)), tuple(came))
    return BasePolicy(
        DesiredState(base.version, blocks, base.allows, base.sources, refused, delta=delta)
    )


def _spliced(
    entries: tuple[Entry, ...],
    drop: set[int],
    add: list[Entry],
    at: list[int] | None = None,
) -> tuple[Entry, ...]:
    """``entries`` (sorted) without the positions in ``drop``, with ``add`` (sorted, none
    of them already kept) in place: slices of the old tuple, not a walk over it. ``at``:
    where each of ``add`` goes (:func:`_insertion`), when the caller knows it."""
    if at is None:
        at = [_insertion(entries, e.indicator) for e in add]
    # (position in entries, 0 = insert before it / 1 = drop it, order among inserts)
    # Both runs in order already: the sort below merges them, without a full sort under
    # the GIL (a new generation drops and adds tens of thousands).
    events: list[tuple[int, int, int]] = [(p, 1, 0) for p in sorted(drop)]
    events.extend((p, 0, i) for i, p in enumerate(at))
    if not events:
        return entries
    events.sort()
    out: list[Entry] = []
    start = 0
    for pos, kind, i in events:
        _extend(out, entries, start, pos)
        if kind == 1:
            start = pos + 1
        else:
            out.append(add[i])
            start = pos
    _extend(out, entries, start, len(entries))
    return tuple(out)


_RUN = 65536
"""Entries :func:`_spliced` copies at once: a C call of well under a millisecond, so the
event loop gets the GIL between them (a million-entry slice would hold it throughout)."""


def _extend(out: list[Entry], entries: tuple[Entry, ...], start: int, stop: int) -> None:
    for at in range(start, stop, _RUN):
        out.extend(entries[at : min(stop, at + _RUN)])


def overlay(
    base_policy: BasePolicy,
    entries: Iterable[Entry],
    gate: BlockGate,
    version: int,
    *,
    now: datetime | None = None,
) -> DesiredState:
    """The merged feeds with ``entries`` (decisions) on top, at ``version``.

    Same result as one :func:`merge` over the decisions followed by the feed entries, at
    the cost of the decisions only: base entries are found by position, not re-merged, so
    a decision on a 1M-entry policy costs milliseconds, not a full merge.
    """
    base = base_policy.state
    top = merge(version, entries, gate, now=now)
    if not top.blocks and not top.allows:
        return DesiredState(version, base.blocks, base.allows, base.sources, base.refused)
    block_pos, allow_pos = base_policy.block_position, base_policy.allow_position
    top_blocks = {e.indicator: e for e in top.blocks}
    top_allows = {e.indicator: e for e in top.allows}
    sources = {k: list(v) for k, v in top.sources.items()}

    def combine(ind: Indicator, mine: Entry, theirs: Entry) -> None:
        known = sources.setdefault(ind, [mine.source])
        for src in base.sources_of(theirs):
            if src not in known:
                known.append(src)

    drop_blocks: set[int] = set()
    for ind in paced(itertools.chain(top_blocks, top_allows)):
        pos = block_pos(ind)
        if pos is not None:
            drop_blocks.add(pos)
            if ind in top_blocks:
                combine(ind, top_blocks[ind], base.blocks[pos])
    drop_allows: set[int] = set()
    for ind, e in top_allows.items():
        pos = allow_pos(ind)
        if pos is not None:
            drop_allows.add(pos)
            combine(ind, e, base.allows[pos])
    # A base allow also cancels a decision's block on the same indicator (merge rule 3).
    for ind in [i for i in top_blocks if allow_pos(i) is not None]:
        del top_blocks[ind]
        sources.pop(ind, None)
    # Spliced, not inserted one by one: thousands of decisions over a million entries
    # would move the whole tail of the tuple once per decision.
    blocks = _spliced(base.blocks, drop_blocks, sorted(top_blocks.values(), key=_entry_key))
    allows = _spliced(base.allows, drop_allows, sorted(top_allows.values(), key=_entry_key))
    merged_sources = dict(base.sources)
    for pos in drop_blocks:
        merged_sources.pop(base.blocks[pos].indicator, None)
    for pos in drop_allows:
        merged_sources.pop(base.allows[pos].indicator, None)
    merged_sources.update({k: tuple(v) for k, v in sources.items() if len(v) > 1})
    refused = dict(base.refused)
    for reason, n in top.refused.items():
        refused[reason] = refused.get(reason, 0) + n
    return DesiredState(version, blocks, allows, merged_sources, refused)


def sort_key(ind: Indicator) -> tuple[str, str]:
    """The indicators' own order (scope, then value) as a plain tuple: sorting 1M
    indicators by it takes C-level tuple comparisons instead of the dataclass's Python
    ``__lt__`` (seconds, not minutes). The scope member itself, not its ``value``: a
    ``StrEnum`` member is its text and compares as it, and the ``value`` property is a
    Python call per key (every probe of a binary search takes one)."""
    return (ind.scope, ind.value)


def _entry_key(e: Entry) -> tuple[str, str]:
    ind = e.indicator
    return (ind.scope, ind.value)
