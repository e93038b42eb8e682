"""``bind-update`` publisher: RFC 2136 UPDATE with TSIG to a BIND hidden primary.

The fleet path: the agent changes the policy zones on one hidden primary; the primary
serves them to any number of secondary resolvers by IXFR + NOTIFY. Per
:mod:`edgeagent.rpz.publishers.base`:

* validate (:meth:`BindUpdatePublisher.prepare`): the release is diffed against the release
  the publisher last made live. The diff is computed from the entries
  (:mod:`edgeagent.rpz.delta`: only changed entries are compiled, so one changed entry in a
  1M-entry policy costs milliseconds and O(1) records); when that path declines (many
  changes, settings changed, a release whose record stream is not the compiler's) both
  full record sets are compared (:func:`~edgeagent.rpz.compiler.diff_records`). Every *added* record
  is checked before anything is sent: a relative owner strictly inside the zone, a known
  type, rdata that parses, at most one CNAME per owner. The primary's SOA serial is read
  (TSIG-signed query); when it is not the serial this publisher last set (first publish,
  agent restart, someone else changed the zone) the live zone is fetched by AXFR (TSIG)
  and the diff is computed against it instead: a *full resync*, still carried as a diff.
* apply: the diff becomes UPDATE messages over TCP. Changes are grouped by owner (a
  CNAME is replaced in the same message that removes the old one), removals before
  additions, and split so that each message stays under the 64 KiB DNS limit. Every
  message carries the zone's SOA with an explicit serial (otherwise BIND increments it
  itself and the serial check compares the wrong numbers): a one-message diff carries the
  release serial; a diff of ``k`` messages uses ``serial .. serial+k-1`` (see
  :attr:`live_serial`), and the canary -- whose TXT names the release serial -- changes
  in the last message only, so no resolver reports the new version before it is whole.
  Every message also carries a *prerequisite*: the zone's SOA must be exactly the one the
  plan was made against (the SOA read from the primary, then the one the previous message
  set). An UPDATE from a writer whose view is stale (a deposed leader, say) is refused by
  the primary itself (NXRRSET), not retried, and the next publish resyncs from an AXFR.
  A refused or failed message (REFUSED, NOTAUTH, bad TSIG, timeout, primary down) is
  retried with exponential backoff; after the last retry ``PublishError`` is raised. An
  UPDATE is atomic at the primary, so a failed single-message publish leaves the old zone
  live; after a failure in the middle of a multi-message diff the in-memory copy is
  dropped and the next publish resyncs from an AXFR.
* verify: with a positive ``verify_timeout``, every target resolver (the secondaries) must
  answer the canary with the release serial within it; the agent uses 0 (the primary's
  NOERROR is the publish, the fleet is verified apart).
* keep old: a validated version that reached the primary is not withdrawn when a
  secondary is slow or down -- withdrawing would unblock names at the secondaries that
  did transfer it. ``PublishError`` still reports the laggard, and continuous
  verification keeps reporting it.

Messages and errors carry zone names and counts only, never owners (they are list data).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Self

from pydantic import model_validator

from edgeagent.configtypes import (
    DnsName,
    EnvName,
    Host,
    Port,
    Seconds,
    SecretFile,
    one_secret,
    read_secret,
)
from edgeagent.errors import PublishError
from edgeagent.plugins import own_config
from edgeagent.rpz.compiler import Record, RpzSettings, diff_records
from edgeagent.rpz.delta import Delta, exception_delta, policy_delta
from edgeagent.rpz.publishers.base import (
    CanaryResult,
    Publisher,
    PublisherConfig,
    PublisherContext,
    Reach,
    ResolverTarget,
    ZoneRelease,
    wait_for_serial,
)
from edgeagent.rpz.zonetext import MAX_TEXT_NAME, NAME_PATTERN, serial_gt

if TYPE_CHECKING:
    import dns.exception
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.tsig
    import dns.update
    from dns.rdtypes.ANY.SOA import SOA

# A DNS message is at most 65,535 octets; stay well below it, leaving room for the SOA,
# the TSIG record and the conservative per-record estimate below.
MAX_MESSAGE_BYTES = 60_000
_RECORD_OVERHEAD = 20  # type, class, TTL, rdlength, compression pointer, slack
ALLOWED_TYPES = frozenset({"CNAME", "A", "AAAA", "TXT"})
# TSIG algorithm names, as dnspython spells them (``dns.tsig.HMAC_SHA256`` is this name).
TSIG_ALGORITHMS = frozenset({"hmac-sha256", "hmac-sha384", "hmac-sha512"})


class BindUpdateConfig(PublisherConfig):
    """``kind = "bind-update"``: RFC 2136 UPDATE with TSIG to a BIND hidden primary."""

    kind: Literal["bind-update"]
    server: Host
    port: Port = 53
    tsig_key_name: DnsName
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512"] = "hmac-sha256"
    tsig_secret_file: SecretFile | None = None
    tsig_secret_env: EnvName | None = None
    timeout_seconds: Seconds = 5.0

    @model_validator(mode="after")
    def _secret(self) -> BindUpdateConfig:
        one_secret(self, "tsig_secret", required=True)
        return self

    def reach(self, resolver: ResolverTarget) -> Reach:
        # The primary's BIND secondaries; Unbound resolvers may transfer from it too
        # (the unbound-rpz-primary.conf template) when nothing else feeds them.
        if resolver.kind == "bind":
            return Reach.DIRECT
        return Reach.FALLBACK if resolver.kind == "unbound" else Reach.NONE


@dataclass(frozen=True, slots=True)
class ZonePlan:
    """The UPDATE messages for one zone and what they carry (for tests and the bench)."""

    zone: str
    messages: tuple[dns.update.UpdateMessage, ...]
    removed: int
    added: int
    final_serial: int
    release: ZoneRelease
    resynced: bool

    def wire_sizes(self) -> tuple[int, ...]:
        """Each message's size on the wire, TSIG record included."""
        return tuple(len(m.to_wire()) for m in self.messages)


@dataclass(slots=True)
class UpdatePlan:
    """What :meth:`BindUpdatePublisher.prepare` built: one :class:`ZonePlan` per zone."""

    serial: int
    zones: list[ZonePlan] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)

    @property
    def message_count(self) -> int:
        return sum(len(z.messages) for z in self.zones)

    @property
    def record_count(self) -> int:
        """Records changed (removed + added), SOA excluded."""
        return sum(z.removed + z.added for z in self.zones)


@dataclass(slots=True)
class _Live:
    """What this publisher knows is live at the primary for one zone."""

    serial: int
    release: ZoneRelease  # the version of the zone's content now live


class BindUpdatePublisher(Publisher[UpdatePlan]):
    """Publish both RPZ zones to a BIND hidden primary by TSIG-signed RFC 2136 UPDATE."""

    KIND = "bind-update"
    Config = BindUpdateConfig

    def __init__(
        self,
        name: str,
        *,
        server: str,
        port: int = 53,
        key_name: str,
        secret: str,
        algorithm: str = "hmac-sha256",
        targets: Sequence[ResolverTarget] = (),
        timeout: float = 5.0,
        retries: int = 5,
        backoff_base: float = 0.2,
        backoff_max: float = 5.0,
        verify_timeout: float = 10.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        import dns.name
        import dns.tsig

        super().__init__(name)
        if algorithm not in TSIG_ALGORITHMS:
            raise ValueError(f"unsupported TSIG algorithm {algorithm}")
        self.server = server
        self.port = port
        self.key_name = dns.name.from_text(key_name)
        self.keyring = {
            self.key_name: dns.tsig.Key(self.key_name, secret, dns.name.from_text(algorithm))
        }
        self.targets = tuple(targets)
        self.timeout = timeout
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.verify_timeout = verify_timeout
        self.max_message_bytes = max_message_bytes
        self._live: dict[str, _Live] = {}
        self.attempts = 0  # UPDATE messages sent, retries included (for tests and metrics)
        self.resyncs = 0
        self.full_diffs = 0  # diffs over full record sets (the O(change) path declined)
        self._seen_serial: int | None = None
        self.prerequisite_refusals = 0  # UPDATEs the primary refused on the SOA check

    @classmethod
    def from_config(cls, name: str, config: PublisherConfig, context: PublisherContext) -> Self:
        cfg = own_config(config, BindUpdateConfig)
        return cls(
            name,
            server=cfg.server,
            port=cfg.port,
            key_name=cfg.tsig_key_name,
            secret=read_secret(cfg.tsig_secret_file, cfg.tsig_secret_env),
            algorithm=cfg.tsig_algorithm,
            targets=context.targets,
            timeout=cfg.timeout_seconds,
            retries=cfg.retries,
            verify_timeout=context.verify_timeout,
        )

    # -- what is live -------------------------------------------------------------------
    @property
    def seen_serial(self) -> int | None:
        """Highest SOA serial read from the primary: the next release must exceed it."""
        return self._seen_serial

    @property
    def live_serial(self) -> int | None:
        """Highest SOA serial this publisher set on the primary (``None`` before any)."""
        serials = [z.serial for z in self._live.values()]
        best: int | None = None
        for s in serials:
            if best is None or serial_gt(s, best):
                best = s
        return best

    def assume_live(self, release: ZoneRelease) -> None:
        """Take ``release`` as what the primary serves, without asking it.

        For a primary bootstrapped from a zone file the agent wrote from this very release
        (e.g. a first load of a large policy): the next publish diffs against it. If the
        primary's serial turns out different, the normal resync still happens.
        """
        s = release.settings
        self._live[s.zone] = _Live(release.serial, release)
        self._live[s.exception_zone] = _Live(release.serial, release)

    def forget_live(self) -> None:
        """Drop the in-memory copy: the next publish resyncs from an AXFR."""
        self._live.clear()

    # -- validate -----------------------------------------------------------------------
    def prepare(self, release: ZoneRelease) -> UpdatePlan:
        import dns.exception

        s = release.settings
        plan = UpdatePlan(release.serial)
        try:
            # The exception zone first: the policy zone carries the canary, so when a
            # resolver shows the new serial, the allows of this version are in as well.
            for zone, policy, canary in (
                (s.exception_zone, False, None),
                (s.zone, True, _canary_owner(s)),
            ):
                zp = self._plan_zone(zone, policy, release, canary)
                if zp is not None:
                    plan.zones.append(zp)
        except PublishError:
            raise
        except (dns.exception.DNSException, ValueError) as exc:
            raise PublishError(self.name, f"cannot build UPDATE: {type(exc).__name__}") from exc
        return plan

    def _plan_zone(
        self,
        zone: str,
        policy: bool,
        release: ZoneRelease,
        canary: str | None,
    ) -> ZonePlan | None:
        import dns.name

        origin = dns.name.from_text(zone)
        live = self._live.get(zone)
        primary_soa = self._primary_soa(origin)
        primary_serial = int(primary_soa.serial)
        resynced = live is None or live.serial != primary_serial
        live_serial = primary_serial  # equal to live.serial unless resynced
        if not serial_gt(release.serial, live_serial):
            raise PublishError(
                self.name,
                f"zone {zone}: release serial {release.serial} is not newer than "
                f"the primary's {live_serial}",
            )
        if live is None or resynced:
            # Full resync: what the primary really serves, read back by AXFR.
            self.resyncs += 1
            removed, added = diff_records(self._axfr(origin), _records(release, policy))
        else:
            delta = _delta(live.release, release, policy)
            if delta is None:
                self.full_diffs += 1
                delta = diff_records(_records(live.release, policy), _records(release, policy))
            removed, added = delta
        if not removed and not added:
            self._live[zone] = _Live(live_serial, release)
            return None
        self._validate(zone, origin, added)
        messages = self._messages(
            origin=origin,
            removed=removed,
            added=added,
            settings=release.settings,
            serial=release.serial,
            canary=canary,
            expected=primary_soa,
        )
        return ZonePlan(
            zone,
            messages,
            len(removed),
            len(added),
            (release.serial + len(messages) - 1) % (1 << 32),
            release,
            resynced,
        )

    def _validate(self, zone: str, origin: dns.name.Name, added: Iterable[Record]) -> None:
        import dns.rdata
        import dns.rdataclass

        cname_owners: set[str] = set()
        for owner, rtype, rdata in added:
            if not _owner_ok(owner, zone):
                raise PublishError(self.name, f"zone {zone}: an added owner is not a relative name")
            if rtype not in ALLOWED_TYPES:
                raise PublishError(self.name, f"zone {zone}: record type {rtype} not allowed")
            if rtype == "CNAME":
                if owner in cname_owners:
                    raise PublishError(self.name, f"zone {zone}: two CNAMEs for one owner")
                cname_owners.add(owner)
            # Raises a DNSException (-> PublishError in prepare) if the rdata does not parse.
            dns.rdata.from_text(dns.rdataclass.IN, rtype, rdata, origin=origin)

    # -- messages -------------------------------------------------------------------------
    def _messages(
        self,
        *,
        origin: dns.name.Name,
        removed: frozenset[Record],
        added: frozenset[Record],
        settings: RpzSettings,
        serial: int,
        canary: str | None,
        expected: dns.rdata.Rdata,
    ) -> tuple[dns.update.UpdateMessage, ...]:
        import dns.name
        import dns.rdata
        import dns.rdataclass
        import dns.rdatatype
        import dns.update

        by_owner: dict[str, tuple[list[Record], list[Record]]] = defaultdict(lambda: ([], []))
        for r in removed:
            by_owner[r[0]][0].append(r)
        for r in added:
            by_owner[r[0]][1].append(r)
        owners = sorted(by_owner)
        if canary is not None and canary in by_owner:
            owners.remove(canary)
            owners.append(canary)  # the canary moves last: the version is whole by then
        batches: list[list[str]] = [[]]
        size = 0
        for owner in owners:
            dels, adds = by_owner[owner]
            cost = sum(len(o) + len(d) + _RECORD_OVERHEAD for o, _, d in (*dels, *adds))
            if batches[-1] and size + cost > self.max_message_bytes:
                batches.append([])
                size = 0
            batches[-1].append(owner)
            size += cost
        out: list[dns.update.UpdateMessage] = []
        for i, batch in enumerate(batches):
            m = dns.update.UpdateMessage(origin, keyring=self.keyring, keyname=self.key_name)
            # The fence at the primary: applied only while the zone's SOA is the one this
            # plan was made against (the one read, then the previous message's).
            m.present(origin, expected)
            soa = dns.rdata.from_text(
                dns.rdataclass.IN,
                dns.rdatatype.SOA,
                _soa_text(settings, serial + i),
            )
            m.add(origin, settings.ttl, soa)
            expected = soa
            for owner in batch:
                dels, adds = by_owner[owner]
                name = dns.name.from_text(owner, origin)
                for _, rtype, rdata in sorted(dels):
                    m.delete(name, dns.rdata.from_text(dns.rdataclass.IN, rtype, rdata, origin))
                for _, rtype, rdata in sorted(adds):
                    m.add(
                        name,
                        settings.ttl,
                        dns.rdata.from_text(dns.rdataclass.IN, rtype, rdata, origin),
                    )
            out.append(m)
        return tuple(out)

    # -- apply ----------------------------------------------------------------------------
    def apply(self, prepared: UpdatePlan) -> None:
        for zp in prepared.zones:
            for i, m in enumerate(zp.messages):
                try:
                    self._send(m, zp.zone)
                except PublishError:
                    if i > 0:
                        # Part of the diff is live: what the primary holds is no longer
                        # known exactly, so the next publish starts from an AXFR.
                        self._live.pop(zp.zone, None)
                    raise
            self._live[zp.zone] = _Live(zp.final_serial, zp.release)
            prepared.applied.append(zp.zone)

    def _send(self, m: dns.update.UpdateMessage, zone: str) -> None:
        import dns.exception
        import dns.query
        import dns.rcode

        # What a primary answers when an UPDATE's prerequisite (the expected SOA) fails.
        prerequisite_rcodes = {
            dns.rcode.NXRRSET,
            dns.rcode.YXRRSET,
            dns.rcode.NXDOMAIN,
            dns.rcode.YXDOMAIN,
        }
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep_backoff(attempt)
            self.attempts += 1
            try:
                r = dns.query.tcp(m, self.server, port=self.port, timeout=self.timeout)
            except (dns.exception.DNSException, OSError, EOFError) as exc:
                last = type(exc).__name__
                continue
            rcode = r.rcode()
            if rcode == dns.rcode.NOERROR:
                return
            if rcode in prerequisite_rcodes:
                # Not retried: someone else changed the zone since it was read (another
                # agent leads now, or a person); the next publish starts from an AXFR.
                self.prerequisite_refusals += 1
                raise PublishError(
                    self.name,
                    f"UPDATE of zone {zone} refused by the primary "
                    f"({dns.rcode.to_text(rcode)}): its SOA is not the one this update "
                    "expects (another writer changed the zone)",
                )
            last = dns.rcode.to_text(rcode)
        raise PublishError(
            self.name,
            f"UPDATE of zone {zone} failed after {self.retries + 1} attempt(s): {last}",
        )

    def _sleep_backoff(self, attempt: int) -> None:
        delay = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        # Jitter so that several agents do not retry in lock step.
        time.sleep(delay * (0.5 + random.random() / 2))

    # -- verify ---------------------------------------------------------------------------
    def verify(self, release: ZoneRelease) -> tuple[CanaryResult, ...]:
        return wait_for_serial(
            self.targets, release.settings.canary, release.serial, self.verify_timeout, self.name
        )

    # -- talking to the primary -----------------------------------------------------------
    def _primary_soa(self, origin: dns.name.Name) -> SOA:
        """The SOA the primary serves for ``origin`` (TSIG-signed query, retried)."""
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode
        import dns.rdatatype
        from dns.rdtypes.ANY.SOA import SOA

        q = dns.message.make_query(origin, dns.rdatatype.SOA)
        q.use_tsig(self.keyring, keyname=self.key_name)
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep_backoff(attempt)
            try:
                r = dns.query.tcp(q, self.server, port=self.port, timeout=self.timeout)
            except (dns.exception.DNSException, OSError, EOFError) as exc:
                last = type(exc).__name__
                continue
            if r.rcode() != dns.rcode.NOERROR:
                last = dns.rcode.to_text(r.rcode())
                continue
            for rrset in r.answer:
                if rrset.rdtype == dns.rdatatype.SOA and rrset.name == origin:
                    soa = rrset[0]
                    assert isinstance(soa, SOA)
                    serial = int(soa.serial)
                    seen = self._seen_serial
                    if seen is None or serial_gt(serial, seen):
                        self._seen_serial = serial
                    return soa
            last = "no SOA in answer"
        raise PublishError(
            self.name, f"cannot read the SOA of zone {origin.to_text()} at the primary: {last}"
        )

    def _axfr(self, origin: dns.name.Name) -> frozenset[Record]:
        """The live zone's records (apex SOA/NS excluded) in the compiler's text form."""
        import dns.exception
        import dns.query
        import dns.rdatatype

        out: set[Record] = set()
        try:
            for msg in dns.query.xfr(
                self.server,
                origin,
                port=self.port,
                keyring=self.keyring,
                keyname=self.key_name,
                relativize=False,
                lifetime=max(self.timeout * 12, 60.0),
                timeout=self.timeout,
            ):
                for rrset in msg.answer:
                    if rrset.name == origin and rrset.rdtype in (
                        dns.rdatatype.SOA,
                        dns.rdatatype.NS,
                    ):
                        continue
                    owner = rrset.name.relativize(origin).to_text().lower()
                    rtype = dns.rdatatype.to_text(rrset.rdtype)
                    for rd in rrset:
                        out.add((owner, rtype, rd.to_text()))
        except (dns.exception.DNSException, OSError, EOFError) as exc:
            raise PublishError(
                self.name, f"AXFR of zone {origin.to_text()} failed: {type(exc).__name__}"
            ) from exc
        return frozenset(out)


def _compiler_records(release: ZoneRelease) -> bool:
    """Is the release's record stream the compiler's (so entries determine it)?

    A release type that overrides it (a test injecting a broken record) is diffed in full,
    so whatever it yields is validated like any other record.
    """
    cls = type(release)
    return (
        cls.policy_records is ZoneRelease.policy_records
        and cls.exception_records is ZoneRelease.exception_records
    )


def _delta(old: ZoneRelease, new: ZoneRelease, policy: bool) -> Delta | None:
    if old.settings != new.settings or not (_compiler_records(old) and _compiler_records(new)):
        return None
    if policy:
        return policy_delta(old.state, old.serial, new.state, new.serial, new.settings)
    return exception_delta(old.state, new.state, new.settings)


def _records(release: ZoneRelease, policy: bool) -> frozenset[Record]:
    return frozenset(release.policy_records() if policy else release.exception_records())


def _canary_owner(settings: RpzSettings) -> str:
    return settings.canary


def _owner_ok(owner: str, zone: str) -> bool:
    """A relative owner, strictly inside ``zone``: plain labels, optionally ``*.`` first."""
    name = owner[2:] if owner.startswith("*.") else owner
    return NAME_PATTERN.fullmatch(name) is not None and len(owner) + 1 + len(zone) <= MAX_TEXT_NAME


def _soa_text(s: RpzSettings, serial: int) -> str:
    refresh, retry, expire, minimum = s.timers
    return (
        f"{s.mname.rstrip('.')}. {s.rname.rstrip('.')}. {serial % (1 << 32)} "
        f"{refresh} {retry} {expire} {minimum}"
    )
