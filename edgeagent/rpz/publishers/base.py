"""The publisher contract: how one version of the RPZ reaches resolvers.

A publisher is a small lifecycle plug-in (in the style of certbot's ``Installer`` and
octoDNS providers). :meth:`Publisher.publish` runs, in this order, and every plug-in must
honour each step:

1. **validate** -- :meth:`Publisher.prepare` builds the artefact for ``release`` (a zone
   file, an UPDATE message, an HTTP body) and checks it *before any resolver can see it*:
   parse-checked zone text, no absolute or out-of-zone owner, the SOA serial of the
   release. A failure here raises :class:`~edgeagent.errors.PublishError` and changes
   nothing anywhere.
2. **apply** -- :meth:`Publisher.apply` makes the prepared artefact live (atomic rename +
   reload command, UPDATE, NOTIFY). It must be all-or-nothing from a resolver's point of
   view: a resolver sees the old version or the new one.
3. **verify** -- :meth:`Publisher.verify` proves the new version is served: it queries the
   canary at the publisher's resolvers and reads the serial each serves (never trust an
   exit code: ``rndc reload`` exits 0 on a broken zone). Only a publisher built with a
   positive ``verify_timeout`` waits for its resolvers (a test, a lab tool). The agent
   builds its publishers with ``verify_timeout = 0``: there the publish is the source
   accepting the change (the primary's UPDATE answer, the zone file renamed and reloaded,
   the HTTP server holding the new files), and fleet convergence is measured apart from
   it (:mod:`edgeagent.rpz.verify`), so a dead resolver never fails or delays a publish.
4. **keep old on failure** -- if apply or verify fails, :meth:`Publisher.rollback` puts the
   previous artefact back where the plug-in can (a renamed-away zone file) so that the last
   good version stays live, and ``publish`` raises ``PublishError``. :meth:`cleanup` always
   runs last and removes temporary material.

Plug-ins never log or put list entries in error messages (use short hashes), and never
need to be told about the previous release: what is live is their own business.

Around those steps:

* **config** -- each kind has ``KIND`` (the ``kind`` of ``[publishers.NAME]``), its own
  config model ``Config`` (a :class:`PublisherConfig`), and :meth:`Publisher.from_config`,
  which builds it from that model and a :class:`PublisherContext` (zone names, state
  directory, the resolvers it verifies). Building reads secrets but sends nothing.
* **which resolvers** -- the config model says how directly the publisher delivers the
  zones to a resolver (:meth:`PublisherConfig.reach`, a :class:`Reach`); each resolver is
  verified by the publishers that reach it most directly, so no kind needs to know
  another.
* **lifecycle** -- :meth:`Publisher.start` starts what the publisher serves itself (the
  HTTP zone server of ``http-notify``) and :meth:`Publisher.close` stops it; both default
  to nothing.
* **drift** -- a publisher whose artefact can be changed behind its back (a file) says
  so in :meth:`Publisher.drifted`; the RPZ enforcer's verify pass then publishes the
  current state again as a new release.
* **serials** -- a publisher that reads serials at its target says so:
  :attr:`Publisher.seen_serial` (the highest serial seen there; the next release must
  exceed it) and :attr:`Publisher.live_serial` (the highest serial it set itself, which
  may run ahead of the release's when a diff takes several messages). Both default to
  ``None``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import ClassVar, Generic, Self, TypeVar

from edgeagent.configtypes import Count
from edgeagent.errors import PublishError
from edgeagent.limits import DEFAULT_LIMITS, ConnectionLimits
from edgeagent.model import DesiredState
from edgeagent.plugins import PluginConfig
from edgeagent.rpz.compiler import (
    Record,
    RpzSettings,
    StatsCounter,
    exception_records,
    exception_zone_text,
    policy_records,
    policy_zone_text,
)


def zone_file_name(zone: str) -> str:
    """The file name of ``zone`` wherever it is written or served: ``<zone>.zone`` (the
    ``zonefile`` and ``http-notify`` publishers, and every rendered resolver config)."""
    return f"{zone}.zone"


@dataclass(frozen=True, slots=True)
class ZoneRelease:
    """One version of the policy and exception zones, ready to publish.

    The zone text and records are produced on demand (streams, never held whole);
    a test may subclass this to alter the text, e.g. to prove a broken zone is refused.
    """

    state: DesiredState
    settings: RpzSettings
    serial: int

    def policy_text(self, counter: StatsCounter | None = None) -> Iterator[str]:
        return policy_zone_text(self.state, self.settings, self.serial, counter)

    def exception_text(self, counter: StatsCounter | None = None) -> Iterator[str]:
        return exception_zone_text(self.state, self.settings, self.serial, counter)

    def policy_records(self) -> Iterator[Record]:
        return policy_records(self.state, self.settings, self.serial)

    def exception_records(self) -> Iterator[Record]:
        return exception_records(self.state, self.settings)


@dataclass(frozen=True, slots=True)
class ResolverTarget:
    """A resolver to verify against: where to send the canary query, and what it runs
    (``bind``, ``unbound`` or ``other``: how zones can reach it)."""

    name: str
    host: str
    port: int = 53
    kind: str = "other"
    region: str = ""  # "" when the fleet has no regions


@dataclass(frozen=True, slots=True)
class CanaryResult:
    """What one resolver answered for the canary (``answered`` false: no answer at all)."""

    target: ResolverTarget
    blocked: bool
    serial: int | None
    seconds: float
    answered: bool = True


@dataclass(frozen=True, slots=True)
class PublishResult:
    """A successful publish: the serial now live and each resolver's canary answer."""

    publisher: str
    serial: int
    canaries: tuple[CanaryResult, ...]
    seconds: float


class Reach(IntEnum):
    """How directly a publisher delivers the zones to one resolver (higher is more direct)."""

    NONE = 0  # never reaches it
    FALLBACK = 1  # only when no other publisher does (Unbound transferring from the primary)
    ANY = 2  # any resolver no publisher feeds directly (one that loads the zone files)
    DIRECT = 3  # configured to feed it (a NOTIFY target, a BIND secondary of the primary)


class PublisherConfig(PluginConfig):
    """``[publishers.NAME]``: the keys every kind has; each kind adds its own."""

    kind: str
    enabled: bool = True
    retries: Count = 5

    def reach(self, resolver: ResolverTarget) -> Reach:
        """How directly this publisher delivers the zones to ``resolver``."""
        return Reach.NONE


@dataclass(frozen=True, slots=True)
class PublisherContext:
    """What a publisher is built from besides its own config."""

    policy_zone: str
    exception_zone: str
    state_dir: Path
    targets: tuple[ResolverTarget, ...] = ()  # the resolvers it verifies
    verify_timeout: float = 10.0
    limits: ConnectionLimits = DEFAULT_LIMITS  # for a zone server it runs


P = TypeVar("P")


class Publisher(ABC, Generic[P]):
    """Base class; see the module docstring for the contract. ``P`` is the prepared artefact."""

    KIND: ClassVar[str]
    Config: ClassVar[type[PublisherConfig]]

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    @abstractmethod
    def from_config(cls, name: str, config: PublisherConfig, context: PublisherContext) -> Self:
        """Build the publisher ``[publishers.<name>]`` configures (reads its secrets)."""

    async def start(self) -> None:
        """Start what the publisher serves itself; nothing by default."""

    async def close(self) -> None:
        """Stop what :meth:`start` started; nothing by default."""

    @property
    def seen_serial(self) -> int | None:
        """The highest serial read at the target (the next release must exceed it)."""
        return None

    @property
    def live_serial(self) -> int | None:
        """The highest serial this publisher set at its target."""
        return None

    def drifted(self) -> bool:
        """True when what it made live was changed behind its back (an edited zone file);
        the caller then publishes the current state to it again. False by default."""
        return False

    def publish(
        self, release: ZoneRelease, fence: Callable[[str], None] | None = None
    ) -> PublishResult:
        """validate -> apply -> verify; on failure keep (or restore) the old version.

        ``fence(what)`` runs between the plan and its apply: it raises
        :class:`~edgeagent.errors.Fenced` when this agent no longer leads, and nothing is
        applied (a plan made against a zone read afresh is no fence of its own)."""
        started = time.monotonic()
        prepared = self.prepare(release)
        try:
            if fence is not None:
                fence(f"the RPZ zones of publisher {self.name}")
            try:
                self.apply(prepared)
                canaries = self.verify(release)
            except PublishError:
                self.rollback(prepared)
                raise
            except Exception as exc:
                self.rollback(prepared)
                raise PublishError(self.name, f"{type(exc).__name__} during apply") from exc
        finally:
            self.cleanup(prepared)
        return PublishResult(self.name, release.serial, canaries, time.monotonic() - started)

    @abstractmethod
    def prepare(self, release: ZoneRelease) -> P:
        """Build and validate the artefact; raise ``PublishError`` if it is not fit to serve."""

    @abstractmethod
    def apply(self, prepared: P) -> None:
        """Make the prepared artefact live (atomic from a resolver's point of view)."""

    @abstractmethod
    def verify(self, release: ZoneRelease) -> tuple[CanaryResult, ...]:
        """Prove every resolver serves ``release``; raise ``PublishError`` if one does not."""

    def rollback(self, prepared: P) -> None:
        """Restore the previous artefact after a failed apply/verify, where possible."""

    def cleanup(self, prepared: P) -> None:
        """Remove temporary material; runs after success and failure alike."""


CANARY_PREFIX = "edgeagent-canary serial="


def query_canary(target: ResolverTarget, canary: str, timeout: float = 2.0) -> CanaryResult:
    """Ask ``target`` for the canary's TXT record: is it blocked, and at which serial?

    The compiler gives the canary a TXT ``edgeagent-canary serial=N``; seeing it proves the
    policy zone is applied and says which version. Any other answer is ``blocked=False``.
    """
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    started = time.monotonic()
    q = dns.message.make_query(canary, dns.rdatatype.TXT)
    serial: int | None = None
    try:
        r = dns.query.udp(q, target.host, port=target.port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return CanaryResult(target, False, None, time.monotonic() - started, answered=False)
    if r.rcode() == dns.rcode.NOERROR:
        for rrset in r.answer:
            if rrset.rdtype != dns.rdatatype.TXT:
                continue
            for rd in rrset:
                text = b"".join(rd.strings).decode("ascii", "replace")
                if text.startswith(CANARY_PREFIX) and text[len(CANARY_PREFIX) :].isdigit():
                    serial = int(text[len(CANARY_PREFIX) :])
    return CanaryResult(target, serial is not None, serial, time.monotonic() - started)


def send_notify(zone: str, host: str, port: int, timeout: float = 1.0) -> bool:
    """Send one DNS NOTIFY for ``zone`` (RFC 1996); True once it is acknowledged.

    A secondary then asks its primary for the zone's SOA and transfers what it misses.
    It accepts a NOTIFY only from an address it allows (its primaries', Unbound's
    ``allow-notify``).
    """
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.opcode
    import dns.query
    import dns.rcode
    import dns.rdataclass
    import dns.rdatatype

    m = dns.message.Message()
    # The opcode lives inside ``flags``: set the flags first, then the opcode.
    m.flags = dns.flags.AA
    m.set_opcode(dns.opcode.NOTIFY)
    m.find_rrset(
        m.question,
        dns.name.from_text(zone),
        dns.rdataclass.IN,
        dns.rdatatype.SOA,
        create=True,
        force_unique=True,
    )
    try:
        r = dns.query.udp(m, host, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return False
    return r.rcode() == dns.rcode.NOERROR


QUERY_POOL = 64  # canary queries in flight at once: a dead resolver costs one timeout


CanaryQuery = Callable[[ResolverTarget, str, float], CanaryResult]


def query_all(
    targets: Sequence[ResolverTarget],
    canary: str,
    timeout: float,
    query: CanaryQuery | None = None,
) -> list[CanaryResult]:
    """Every target's canary at once (a bounded pool), in the order of ``targets``.

    One pass costs about one ``timeout`` however many targets are dead, as long as fewer
    than :data:`QUERY_POOL` are.
    """
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(QUERY_POOL, len(targets))) as pool:
        ask = query_canary if query is None else query
        return list(pool.map(lambda t: ask(t, canary, timeout), targets))


def wait_for_serial(
    targets: tuple[ResolverTarget, ...],
    canary: str,
    serial: int,
    timeout: float,
    publisher: str,
) -> tuple[CanaryResult, ...]:
    """Poll every target (in parallel) until its canary shows ``serial``;
    ``PublishError`` naming the laggards after ``timeout``. A ``timeout`` of 0 waits for
    nothing (the agent's publishers: the fleet is verified apart from publishing)."""
    if timeout <= 0:
        return ()
    deadline = time.monotonic() + timeout
    pending = list(targets)
    done: list[CanaryResult] = []
    delay = 0.02
    while pending:
        results = query_all(pending, canary, min(1.0, max(0.1, timeout)))
        done.extend(r for r in results if r.serial == serial)
        pending = [r.target for r in results if r.serial != serial]
        if not pending:
            break
        if time.monotonic() >= deadline:
            names = ", ".join(t.name for t in pending)
            raise PublishError(publisher, f"serial {serial} not served by: {names}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    return tuple(done)
