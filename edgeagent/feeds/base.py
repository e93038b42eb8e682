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

A *feed kind* (the ``kind`` key of ``[feeds.NAME]``) is a :class:`Feed` subclass registered
in :mod:`edgeagent.feeds.kinds`: ``KIND``, its own config model ``Config`` (a
:class:`FeedConfig`; list kinds read over HTTP or from a file extend
:class:`FetchedListConfig`) and ``from_config(name, config)``, which maps the validated
table onto a :class:`FeedSpec`. ``from_config`` reads the secrets the config names (so a
rotated secret is used on the next reload) and raises
:class:`edgeagent.errors.ConfigError` when one cannot be read; it does nothing else (no
network, no store). Adding a kind is one module and one line in ``kinds.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, ClassVar, Generic, Literal, NamedTuple, Protocol, TypeVar

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edgeagent.configtypes import (
    ConfigModel,
    Count,
    Cron,
    DnsAction,
    EnvName,
    HttpUrl,
    InputFile,
    Jurisdiction,
    OutputPath,
    Seconds,
    SecretFile,
    Share,
    Source,
    one_secret,
    read_secret,
)
from edgeagent.errors import short_hash
from edgeagent.model import Action, Indicator, NoticeSource
from edgeagent.plugins import PluginConfig

__all__ = [
    "REJECT_SAMPLE_LIMIT",
    "Accepted",
    "BasicAuth",
    "BasicAuthConfig",
    "BearerAuth",
    "BearerAuthConfig",
    "ClientCert",
    "ClientCertAuthConfig",
    "Feed",
    "FeedConfig",
    "FeedFormat",
    "FeedKind",
    "FeedSpec",
    "FeedStatus",
    "FetchedListConfig",
    "FetchedListFeed",
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
    """What a spec's bytes are; the values are the config file's ``kind`` names."""

    URL_LIST = "url-list"
    HASHED_URL_LIST = "hashed-url-list"
    DOMAIN_LIST = "domain-list"
    RPZ_AXFR = "rpz-axfr"  # upstream RPZ zone by AXFR/IXFR
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
    """Everything one feed needs, built by its kind's ``from_config`` (secrets already read).

    Sizes are bytes, times seconds. ``url`` is http(s) for list feeds; for ``rpz-axfr`` feeds
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


# ------------------------------------------------------------------------ configuration


class FeedConfig(PluginConfig):
    """``[feeds.NAME]``: the keys every feed kind has; each kind's model adds its own."""

    kind: str
    enabled: bool = True
    source: Source = NoticeSource.HOTLINE
    # Takedown cases opened for this feed's entries: the jurisdiction whose law governs
    # them, and the law-enforcement hold (None: as [takedown] hold_for says for source).
    jurisdiction: Jurisdiction | None = None
    hold: bool | None = None
    authority: str = ""  # shown on the stop page, e.g. "Example Hotline"
    category: str = "csam"
    action: DnsAction | None = None  # None: [rpz] default_action
    interval_seconds: Annotated[int, Field(ge=10)] | None = None
    cron: Cron | None = None
    jitter_seconds: Count = 60
    misfire_grace_seconds: Annotated[int, Field(ge=1)] = 300
    # Per-feed change limits; None: the [guard] values.
    max_removal_share: Annotated[float, Field(ge=0, le=1)] | None = None
    max_addition_share: Share | None = None
    change_floor: Count | None = None

    @model_validator(mode="after")
    def _schedule(self) -> FeedConfig:
        if self.interval_seconds is not None and self.cron is not None:
            raise ValueError("set interval_seconds or cron, not both")
        return self

    @property
    def schedule_interval(self) -> int | None:
        """Seconds between syncs; ``None`` when ``cron`` is used. Default one hour."""
        if self.cron is not None:
            return None
        return self.interval_seconds if self.interval_seconds is not None else 3600

    @property
    def origin(self) -> str:
        """How the list arrives, for ``check-config``: ``file``, ``http``, ``axfr``."""
        return "file"

    def summary_line(self, name: str, action: str) -> str:
        """This feed's line in ``check-config``'s summary (no secrets)."""
        every = f"every {self.schedule_interval}s" if self.cron is None else f"cron {self.cron}"
        state = "" if self.enabled else " (disabled)"
        return (
            f"  {name:<16} {self.kind:<16} {self.origin:<5} {every}, {self.source.value}, "
            f"action {action}{state}"
        )

    def common_spec(self, name: str, kind: FeedKind) -> FeedSpec:
        """A spec with the keys every kind has; kinds add theirs with ``replace``."""
        interval = self.schedule_interval
        return FeedSpec(
            name=name,
            kind=kind,
            category=self.category,
            enabled=self.enabled,
            interval=float(interval) if interval else None,
            cron=self.cron,
            jitter=float(self.jitter_seconds),
            misfire_grace_time=float(self.misfire_grace_seconds),
            max_removal_share=self.max_removal_share,
            max_addition_share=self.max_addition_share,
            limit_floor=self.change_floor,
        )


class BasicAuthConfig(ConfigModel):
    """``auth = { kind = "basic", ... }``: HTTP basic authentication."""

    kind: Literal["basic"]
    username: str
    password_file: SecretFile | None = None
    password_env: EnvName | None = None

    @model_validator(mode="after")
    def _secret(self) -> BasicAuthConfig:
        one_secret(self, "password", required=True)
        return self

    def with_credentials(self, spec: FeedSpec) -> FeedSpec:
        """``spec`` with these credentials (the secret read now)."""
        password = read_secret(self.password_file, self.password_env)
        return replace(spec, auth=BasicAuth(self.username, password))


class BearerAuthConfig(ConfigModel):
    """``auth = { kind = "bearer", ... }``: an ``Authorization: Bearer`` token."""

    kind: Literal["bearer"]
    token_file: SecretFile | None = None
    token_env: EnvName | None = None

    @model_validator(mode="after")
    def _secret(self) -> BearerAuthConfig:
        one_secret(self, "token", required=True)
        return self

    def with_credentials(self, spec: FeedSpec) -> FeedSpec:
        return replace(spec, auth=BearerAuth(read_secret(self.token_file, self.token_env)))


class ClientCertAuthConfig(ConfigModel):
    """``auth = { kind = "client-cert", ... }``: a TLS client certificate."""

    kind: Literal["client-cert"]
    cert_file: InputFile
    key_file: SecretFile
    key_password_file: SecretFile | None = None  # only for an encrypted key
    key_password_env: EnvName | None = None

    @model_validator(mode="after")
    def _secret(self) -> ClientCertAuthConfig:
        one_secret(self, "key_password", required=False)
        return self

    def with_credentials(self, spec: FeedSpec) -> FeedSpec:
        encrypted = self.key_password_file is not None or self.key_password_env is not None
        password = read_secret(self.key_password_file, self.key_password_env) if encrypted else None
        cert = ClientCert(Path(self.cert_file), Path(self.key_file), password)
        return replace(spec, client_cert=cert)


ListFormat = Literal["lines", "csv", "jsonl"]


def list_format(content: str, format: ListFormat) -> ListFormat:
    """``format`` if a list of kind ``content`` is parsed in it: only a ``url-list`` has
    column formats; the others would read a CSV or JSONL file as plain lines."""
    if format != "lines" and content != FeedKind.URL_LIST:
        raise ValueError(
            f'a {content} is read one entry per line: "lines" only '
            "(csv and jsonl are url-list formats)"
        )
    return format


FeedAuthConfig = Annotated[
    BasicAuthConfig | BearerAuthConfig | ClientCertAuthConfig, Field(discriminator="kind")
]


class FetchedListConfig(FeedConfig):
    """A list read from ``url`` (HTTP with the transport options) or a local ``path``."""

    url: HttpUrl | None = None
    path: OutputPath | None = None  # may appear later (e.g. dropped in by another job)
    format: ListFormat = "lines"
    auth: FeedAuthConfig | None = None
    ca_file: InputFile | None = None
    connect_timeout_seconds: Seconds = 10.0
    read_timeout_seconds: Seconds = 30.0
    total_deadline_seconds: Seconds = 300.0
    min_rate_bytes_per_second: Count = 0
    max_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024 * 1024
    max_decompressed_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024 * 1024
    retries: Count = 3
    backoff_base_seconds: Seconds = 1.0
    backoff_max_seconds: Seconds = 60.0
    digest_url: HttpUrl | None = None
    signature_url: HttpUrl | None = None
    public_key_file: InputFile | None = None

    @field_validator("format")
    @classmethod
    def _format_of_kind(cls, value: ListFormat, info: ValidationInfo) -> ListFormat:
        kind = info.data.get("kind")
        return value if kind is None else list_format(kind, value)

    @model_validator(mode="after")
    def _source_consistent(self) -> FetchedListConfig:
        if (self.url is None) == (self.path is None):
            raise ValueError("set url or path (exactly one)")
        if self.path is not None:
            http_only = ("auth", "ca_file", "digest_url", "signature_url")
            used = [k for k in http_only if getattr(self, k) is not None]
            if used:
                raise ValueError(f"{', '.join(used)} only apply to a feed with url")
        if (self.signature_url is None) != (self.public_key_file is None):
            raise ValueError("signature_url and public_key_file go together")
        return self

    @property
    def origin(self) -> str:
        return "file" if self.url is None else "http"

    def fetched_spec(self, name: str, content: FeedKind) -> FeedSpec:
        """The spec of a list of ``content``; reads the auth secrets and the public key.

        A list configured with ``path`` is read as a ``local-file`` feed of that content.
        """
        spec = replace(
            self.common_spec(name, content),
            format=FeedFormat(self.format),
            connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.read_timeout_seconds,
            deadline=self.total_deadline_seconds,
            min_rate=float(self.min_rate_bytes_per_second),
            max_bytes=self.max_bytes,
            max_decompressed_bytes=self.max_decompressed_bytes,
            retries=self.retries,
            backoff_base=self.backoff_base_seconds,
            backoff_max=self.backoff_max_seconds,
        )
        if self.path is not None:
            return replace(spec, kind=FeedKind.LOCAL_FILE, path=Path(self.path), content=content)
        public_key = Path(self.public_key_file).read_bytes() if self.public_key_file else b""
        spec = replace(
            spec,
            url=str(self.url),
            ca_file=Path(self.ca_file) if self.ca_file else None,
            digest_url=self.digest_url or "",
            signature_url=self.signature_url or "",
            public_key=public_key,
        )
        return spec if self.auth is None else self.auth.with_credentials(spec)


# ----------------------------------------------------------------------------- plug-ins

ConfigT = TypeVar("ConfigT", bound=FeedConfig)
ListConfigT = TypeVar("ListConfigT", bound=FetchedListConfig)


class Feed(ABC, Generic[ConfigT]):
    """A feed kind: ``KIND`` selects it, ``Config`` validates its table,
    :meth:`from_config` turns a validated table into the :class:`FeedSpec` the sync runs."""

    KIND: ClassVar[str]
    Config: ClassVar[type[FeedConfig]]

    @classmethod
    @abstractmethod
    def from_config(cls, name: str, config: ConfigT) -> FeedSpec:
        """The spec of feed ``name``; reads its secrets (``ConfigError`` if one cannot be)."""


class FetchedListFeed(Feed[ListConfigT]):
    """A list kind whose ``KIND`` is also the list format its bytes are parsed as."""

    @classmethod
    def from_config(cls, name: str, config: ListConfigT) -> FeedSpec:
        return config.fetched_spec(name, FeedKind(cls.KIND))
