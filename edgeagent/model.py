"""Frozen values that flow through edgeagent: indicators, entries, decisions, desired state.

Values here are already canonical: build an :class:`Indicator` with
:meth:`Indicator.parse`, which runs the input through :mod:`edgeagent.canon` and raises
:class:`edgeagent.errors.InvalidTarget` for anything that cannot be a list entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from edgeagent import canon


class Scope(StrEnum):
    """How much an indicator covers (``docs/architecture.md``, "Granularity rule")."""

    DOMAIN = "domain"  # the name and every subdomain
    HOST = "host"  # exactly one FQDN
    URL = "url"  # exactly one page
    URL_PREFIX = "url-prefix"  # every URL under a path prefix on one host
    IP = "ip"  # one address
    CIDR = "cidr"  # a prefix
    # SHA-256 (hex) of a canonical lookup expression, from a hashed list: the agent never
    # holds the plain URL, so it feeds the proxy index only (no DNS diversion, no
    # takedown location: the host is unknown).
    URL_HASH = "url-hash"

    @property
    def is_name(self) -> bool:
        return self in (Scope.DOMAIN, Scope.HOST)

    @property
    def is_url(self) -> bool:
        return self in (Scope.URL, Scope.URL_PREFIX)

    @property
    def is_address(self) -> bool:
        return self in (Scope.IP, Scope.CIDR)


class Action(StrEnum):
    BLOCK = "block"
    ALLOW = "allow"


class NoticeSource(StrEnum):
    """Who reported the material (GSMA/UNICEF NTD practice)."""

    PUBLIC = "public"
    HOTLINE = "hotline"
    LAW_ENFORCEMENT = "law-enforcement"
    INTERNAL = "internal"


class DecisionStatus(StrEnum):
    ACTIVE = "active"
    PENDING_APPROVAL = "pending-approval"
    REVOKED = "revoked"
    EXPIRED = "expired"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True, order=True)
class Indicator:
    """A canonical list target: ``scope`` plus its canonical ``value``.

    Values by scope: ``domain``/``host`` a lower-case A-label name without trailing dot;
    ``url``/``url-prefix`` the output of :func:`edgeagent.canon.canonical_url`; ``ip`` a
    compressed address; ``cidr`` a network in ``address/len`` form with host bits zero.
    """

    scope: Scope
    value: str

    def __hash__(self) -> int:
        # Explicit (dataclass keeps it): hashing the value alone is about twice as fast as
        # the generated tuple hash, and policies hash millions of indicators. Equal
        # indicators have equal values, so the contract holds.
        return hash(self.value)

    @classmethod
    def parse(cls, scope: Scope | str, text: str) -> Indicator:
        """Canonicalise ``text`` for ``scope``; raise ``InvalidTarget`` with the reason."""
        sc = Scope(scope)
        if sc.is_name:
            return cls(sc, canon.canonical_name(text))
        if sc.is_url:
            return cls(sc, canon.canonical_url(text))
        if sc is Scope.IP:
            return cls(sc, canon.canonical_ip(text))
        if sc is Scope.URL_HASH:
            return cls(sc, canon.canonical_digest(text))
        return cls(sc, canon.canonical_cidr(text))

    @property
    def host(self) -> str | None:
        """The host name this indicator lives on (``None`` for addresses and hashes)."""
        if self.scope.is_name:
            return self.value
        if self.scope.is_url:
            return canon.url_host(self.value)
        return None

    @property
    def ref(self) -> str:
        """Short hash: how this indicator is named in logs, metrics and errors."""
        return canon.short_ref(f"{self.scope}:{self.value}")


@dataclass(frozen=True, slots=True)
class Entry:
    """One effective list line: an indicator, what to do with it and where it came from.

    ``source`` is a feed name, or ``decision:<id>`` for a person's decision.
    """

    indicator: Indicator
    action: Action
    source: str
    category: str = ""
    reference: str = ""
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DecisionEvent:
    """One step in a decision's history."""

    at: datetime
    actor: str
    status: DecisionStatus
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """A block or allow made by a person, with the case it belongs to.

    ``hold`` (law-enforcement hold): takedown notices for this case reach the ISP's
    hosting team only, never the customer. ``jurisdiction`` (an ISO 3166 code, or empty)
    is where the law governing the case applies; per-jurisdiction takedown rules
    (authorisation first, retention) match on it.
    """

    id: int
    indicator: Indicator
    action: Action
    actor: str
    reason: str
    reference: str
    notice_source: NoticeSource
    notice_received_at: datetime
    created_at: datetime
    status: DecisionStatus
    expires_at: datetime | None = None
    category: str = ""
    approved_by: str | None = None
    history: tuple[DecisionEvent, ...] = ()
    hold: bool = False
    jurisdiction: str = ""

    @property
    def source(self) -> str:
        return f"decision:{self.id}"

    def as_entry(self) -> Entry:
        return Entry(
            indicator=self.indicator,
            action=self.action,
            source=self.source,
            category=self.category,
            reference=self.reference,
            first_seen=self.created_at,
            last_seen=self.created_at,
            expires_at=self.expires_at,
        )


@dataclass(frozen=True, slots=True)
class BlockDelta:
    """How a state's blocks were made from ``base`` (another state's blocks tuple): the
    entries of ``base`` that left (``gone``) and the new ones (``came``); every other
    entry is the same object in both. Set by the policy engine when it knows the change
    (:func:`edgeagent.policy.apply_changes`), so the enforcers and the tally move by it
    instead of comparing a million-entry window (:func:`edgeagent.entrydiff.blocks_changed`).
    Holding ``base`` keeps the previous tuple alive as long as the state."""

    base: tuple[Entry, ...]
    gone: tuple[Entry, ...]
    came: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class DesiredState:
    """What every enforcer must show at ``version``: blocks and allows after policy merge.

    ``blocks`` and ``allows`` are sorted by indicator and free of duplicates: an indicator
    listed by several sources appears once; ``sources`` names all of them for indicators
    with more than one source (use :meth:`sources_of`).
    ``refused`` counts entries the guardrails kept out, by reason.
    """

    version: int
    blocks: tuple[Entry, ...]
    allows: tuple[Entry, ...]
    sources: dict[Indicator, tuple[str, ...]] = field(default_factory=dict, compare=False)
    refused: dict[str, int] = field(default_factory=dict, compare=False)
    # What changed from the blocks of the state before, when known (``BlockDelta``).
    delta: BlockDelta | None = field(default=None, compare=False, repr=False)

    def sources_of(self, entry: Entry) -> tuple[str, ...]:
        return self.sources.get(entry.indicator, (entry.source,))

    def count_by_scope(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.blocks:
            counts[e.indicator.scope.value] = counts.get(e.indicator.scope.value, 0) + 1
        return counts
