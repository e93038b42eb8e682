"""The feed contract: what a feed is, what an adapter must and must not do, and the values
that describe one sync.

A *feed* is a named, configured source of list entries (a hotline URL list, a police
domain list, an upstream RPZ zone, a local court-order file). One sync of a feed yields
either

- a **full snapshot**: every entry the source lists now (line lists, hashed lists, an RPZ
  AXFR), or
- a **delta since a checkpoint**: additions and deletions relative to the state the
  caller says it holds (an RPZ IXFR from the serial of the live generation). The sync
  engine applies a delta to the live generation and stores the result as a full
  generation, so everything downstream only ever sees snapshots.

The checkpoint of a feed is what the store kept in the live generation: ``serial`` (a
zone serial or the feed's own sequence number / timestamp) and ``meta`` (etag,
last-modified, digest). A source whose serial goes backwards is refused (rollback).

An adapter (one module per kind in ``edgeagent.feeds``) **must**:

- turn bytes (or a transfer) into :class:`Accepted` and :class:`Rejected` items, one per
  input line or record, running every value through :mod:`edgeagent.canon` (via
  ``Indicator.parse``);
- reject anything it does not fully understand with a short, stable reason (these become
  counter keys) and identify the line only by a short hash (``errors.short_hash``);
- map entries to the narrowest scope the source states: a URL stays ``url`` (or
  ``url-prefix`` when the source says it is a prefix), a whole-domain entry becomes
  ``domain`` only when the source marks it so explicitly;
- stream: keep memory proportional to the accepted entries, not to the input text.

An adapter **must not**:

- widen an entry (URL -> host, host -> domain, ``*.name`` alone -> ``name``);
- follow includes, fetch anything an entry names, or open the reported content;
- write to the store, decide about holding a generation, or log entry values: fetching,
  integrity, guardrails and storage belong to :mod:`edgeagent.feeds.sync`;
- raise for a bad *line*: only a bad *feed* (wrong format, undecodable) raises
  :class:`edgeagent.errors.FeedError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple, Protocol

from edgeagent.errors import short_hash
from edgeagent.model import Action, Indicator

__all__ = [
    "REJECT_SAMPLE_LIMIT",
    "Accepted",
    "BasicAuth",
    "BearerAuth",
    "ClientCert",
    "FeedFormat",
    "FeedKind",
    "FeedSpec",
    "FeedStatus",
    "HashedEntry",
    "Item",
    "Parser",
    "RejectCounter",
    "Rejected",
    "SyncOutcome",
    "SyncResult",
    "TsigKey",
]

REJECT_SAMPLE_LIMIT = 5  # how many rejected lines a result names (by short hash only)


class FeedKind(StrEnum):
    URL_LIST = "url-list"
    HASHED_LIST = "hashed-list"
    DOMAIN_LIST = "domain-list"
    RPZ = "rpz"  # upstream RPZ zone by AXFR/IXFR
    LOCAL_FILE = "local-file"  # a file on disk; ``content`` says which list format it holds


class FeedFormat(StrEnum):
    LINES = "lines"  # one entry per line, ``#`` comments
    CSV = "csv"  # header row; url-list: id,url,category,added[,scope]
    JSONL = "jsonl"  # one JSON object per line with the CSV field names


@dataclass(frozen=True, slots=True)
class BasicAuth:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class BearerAuth:
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ClientCert:
    cert_file: Path
    key_file: Path | None = None
    key_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class TsigKey:
    name: str
    secret: str = field(repr=False)  # base64, as in named.conf
    algorithm: str = "hmac-sha256"


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """Everything one feed needs; config maps its TOML table onto this (secrets already read).

    Sizes are bytes, times seconds. ``url`` is http(s) for list feeds; for ``rpz`` feeds
    ``server``/``port``/``zone`` name the primary. ``content`` is the list kind a
    ``local-file`` feed holds. ``max_removal_share``/``max_addition_share``/``limit_floor``
    override the guard's change limits for this feed when set. ``public_key`` is a raw
    32-byte Ed25519 key or a PEM public key.
    """

    name: str
    kind: FeedKind
    url: str = ""
    path: Path | None = None
    format: FeedFormat = FeedFormat.LINES
    content: FeedKind = FeedKind.DOMAIN_LIST
    category: str = ""
    enabled: bool = True
    # schedule
    interval: float | None = 43200.0
    cron: str | None = None
    jitter: float = 60.0
    misfire_grace_time: float = 300.0
    # transport
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    deadline: float = 300.0  # whole fetch, including retries' attempts (not their sleeps)
    min_rate: float = 0.0  # bytes/s averaged since the first byte; 0 disables
    min_rate_grace: float = 5.0  # seconds before the minimum rate applies
    max_bytes: int = 256 * 1024 * 1024  # on the wire (compressed)
    max_decompressed_bytes: int = 1024 * 1024 * 1024
    retries: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    auth: BasicAuth | BearerAuth | None = None
    client_cert: ClientCert | None = None
    ca_file: Path | None = None
    # integrity
    digest_url: str = ""
    signature_url: str = ""
    public_key: bytes = field(default=b"", repr=False)
    # rpz
    server: str = ""
    port: int = 53
    zone: str = ""
    tsig: TsigKey | None = None
    ixfr: bool = True
    # guardrail overrides (None: the guard's defaults)
    max_removal_share: float | None = None
    max_addition_share: float | None = None
    limit_floor: int | None = None

    @property
    def list_kind(self) -> FeedKind:
        """The parser this feed's bytes go through."""
        return self.content if self.kind is FeedKind.LOCAL_FILE else self.kind


class Accepted(NamedTuple):
    """One valid entry from a feed line.

    A named tuple rather than a frozen dataclass: parsers make one per line of lists with
    millions of lines, and a tuple is built in half the time (immutable all the same).
    """

    indicator: Indicator
    action: Action = Action.BLOCK
    category: str = ""
    reference: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class HashedEntry:
    """One SHA-256 of a canonical lookup expression from a hashed list (no plain URL)."""

    digest: bytes
    category: str = ""
    line: int = 0

    @property
    def hex(self) -> str:
        return self.digest.hex()


@dataclass(frozen=True, slots=True)
class Rejected:
    """One line that is not a valid entry: ``reason`` is stable, ``ref`` a short hash."""

    reason: str
    ref: str
    line: int = 0

    @classmethod
    def of(cls, reason: str, text: str, line: int = 0) -> Rejected:
        return cls(reason, short_hash(text), line)


Item = Accepted | HashedEntry | Rejected


class Parser(Protocol):
    """A list adapter's parse function: bytes in, one item per entry line out."""

    def __call__(self, data: bytes, spec: FeedSpec) -> Iterator[Item]: ...


class RejectCounter:
    """Counts rejects by reason and keeps the first few short hashes (never plain text)."""

    __slots__ = ("counts", "samples")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.samples: list[str] = []

    def add(self, reason: str, ref: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if len(self.samples) < REJECT_SAMPLE_LIMIT:
            self.samples.append(ref)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class SyncOutcome(StrEnum):
    LIVE = "live"  # a new generation is live
    HELD = "held"  # a new generation waits for approval; the live one stays
    UNCHANGED = "unchanged"  # 304, same digest or same serial: nothing stored
    FAILED = "failed"  # fetch/verify/parse failed; the live one stays


def _frozen(d: Mapping[str, int] | None = None) -> Mapping[str, int]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """Per-feed health, kept in memory by the engine and copied into generation meta."""

    feed: str
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_outcome: SyncOutcome | None = None
    last_reason: str = ""
    entries: int = 0  # in the live generation
    rejects: Mapping[str, int] = field(default_factory=_frozen)
    bytes: int = 0  # decoded bytes of the last fetch
    duration: float = 0.0  # seconds of the last attempt
    held_generation: int | None = None
    consecutive_failures: int = 0

    def age(self, now: datetime) -> float | None:
        """Seconds since the last success (``None`` if it never succeeded)."""
        if self.last_success is None:
            return None
        return (now - self.last_success).total_seconds()


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one sync did. ``reason`` names the failure or the hold (no entries in it)."""

    feed: str
    outcome: SyncOutcome
    reason: str = ""
    generation_id: int | None = None
    entries: int = 0  # in the generation stored (or the live one when nothing was stored)
    added: int = 0
    removed: int = 0
    rejects: Mapping[str, int] = field(default_factory=_frozen)
    reject_samples: tuple[str, ...] = ()
    refused: Mapping[str, int] = field(default_factory=_frozen)
    bytes_wire: int = 0
    bytes_decoded: int = 0
    duration: float = 0.0
    serial: str = ""
    status: FeedStatus | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is not SyncOutcome.FAILED
