"""TOML configuration -> validated, frozen :class:`Settings`.

Contract:

* :func:`load_config` reads a TOML file with :mod:`tomllib`, validates it against the
  pydantic models below (unknown keys are errors, types are strict: TOML already has
  integers, booleans and arrays, so ``"60"`` for a number is a mistake, not a hint) and
  returns frozen settings. On failure it raises :class:`edgeagent.errors.ConfigError`
  listing *every* problem found, each with the dotted key path (``feeds.iwf.url``,
  ``resolvers[0].port``) and a plain reason. Values never appear in reasons (a URL may
  carry a token, a value may be a list entry); only the kind of value does.
* Relative paths in a file are relative to that file's directory, so a config can point
  at files next to it. Paths in the embedded defaults are absolute.
* Every ``*_file`` key names a file that must exist and be readable when the config is
  checked; these checks run in the same pass as the schema checks. Secrets come from a
  ``*_file`` key or from a ``*_env`` key naming an environment variable (which must be
  set); they are never inline. Read them with :func:`read_secret` when needed, so a
  rotated secret is picked up without a reload and secrets never sit in ``Settings``.
* :func:`default_settings` gives a working single-host setup without any file: store
  under the state directory, API and metrics on loopback, the bundled synthetic feeds.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, Field, PrivateAttr, ValidationError, model_validator

import edgeagent
from edgeagent.configtypes import (
    ConfigModel,
    Count,
    Cron,
    DnsAction,
    DnsName,
    Email,
    Endpoint,
    EnvName,
    Host,
    HttpUrl,
    InputFile,
    InputPath,
    IpNetwork,
    Items,
    ListenHost,
    ListenPort,
    Name,
    OutputPath,
    Port,
    Seconds,
    SecretFile,
    Share,
    Source,
    one_secret,
    toml_type,
)
from edgeagent.enforcement.base import owned_sections
from edgeagent.enforcement.kinds import ENFORCERS
from edgeagent.errors import ConfigError, ConfigProblem
from edgeagent.model import NoticeSource
from edgeagent.plugins import concrete_model, rename_old_kinds

DEFAULT_CONFIG_PATH = Path("/etc/edgeagent/edgeagent.toml")
BUNDLED_LISTS_DIR = Path(edgeagent.__file__).resolve().parent.parent / "blocklists"
STORE_FILE_NAME = "edgeagent.sqlite3"
G = TypeVar("G", bound=BaseModel)


def config_path_from_env() -> Path:
    """``$EDGEAGENT_CONFIG`` if set and non-empty, else :data:`DEFAULT_CONFIG_PATH`."""
    value = os.environ.get("EDGEAGENT_CONFIG", "")
    return Path(value) if value else DEFAULT_CONFIG_PATH


def default_state_dir() -> Path:
    """State directory when the config names none.

    ``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``; first entry if several),
    else ``$EDGEAGENT_STATE_DIR``, else ``./var/edgeagent`` under the working directory.
    """
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    chosen = systemd or os.environ.get("EDGEAGENT_STATE_DIR", "") or "var/edgeagent"
    return (Path.cwd() / chosen).resolve()


# ------------------------------------------------------------------------------- sections


class AgentSettings(ConfigModel):
    """``[agent]``: process-wide settings."""

    state_dir: OutputPath = Field(default_factory=default_state_dir)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"


class StoreSettings(ConfigModel):
    """``[store]``: where decisions, feed generations and the audit log live."""

    backend: Literal["sqlite"] = "sqlite"
    path: OutputPath | None = None  # None: <state_dir>/edgeagent.sqlite3


class ApiSettings(ConfigModel):
    """``[api]``: the control API."""

    enabled: bool = True
    host: ListenHost = "127.0.0.1"
    port: ListenPort = 8640
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    tls_cert_file: InputFile | None = None
    tls_key_file: SecretFile | None = None
    client_ca_file: InputFile | None = None
    require_client_cert: bool = False
    public_reports_need_approval: bool = True
    lookup_rate_per_minute: Annotated[int, Field(ge=1)] = 30

    @model_validator(mode="after")
    def _tls_consistent(self) -> ApiSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both tls_cert_file and tls_key_file, or neither")
        if self.require_client_cert and (self.client_ca_file is None or not self.tls_cert_file):
            raise ValueError("require_client_cert needs client_ca_file and TLS")
        return self


class MetricsSettings(ConfigModel):
    """``[metrics]``: Prometheus ``/metrics``, ``/healthz``, ``/readyz``."""

    enabled: bool = True
    host: ListenHost = "127.0.0.1"
    port: ListenPort = 9640


def _bundled_protected() -> tuple[Path, ...]:
    return (BUNDLED_LISTS_DIR / "protected",)


def _expand_lists(paths: tuple[Path, ...]) -> tuple[Path, ...]:
    """Replace each directory by its ``*.txt`` files (sorted), so consumers get files."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.glob("*.txt") if p.is_file())
            if not found:
                raise ValueError(f"directory {path} holds no *.txt list")
            files.extend(found)
        else:
            files.append(path)
    return tuple(files)


class GuardSettings(ConfigModel):
    """``[guard]``: what may never be blocked and how much a feed may change unattended."""

    # Files, or directories standing for their *.txt files; holds files once validated.
    protected_lists: Annotated[Items[InputPath], AfterValidator(_expand_lists)] = Field(
        default_factory=_bundled_protected, validate_default=True
    )
    max_removal_share: Annotated[float, Field(ge=0, le=1)] = 0.25
    max_addition_share: Share = 1.0
    change_floor: Count = 50
    cidr_min_prefix_v4: Annotated[int, Field(ge=0, le=32)] = 24
    cidr_min_prefix_v6: Annotated[int, Field(ge=0, le=128)] = 48


# --- feeds


class BasicAuth(ConfigModel):
    kind: Literal["basic"]
    username: str
    password_file: SecretFile | None = None
    password_env: EnvName | None = None

    @model_validator(mode="after")
    def _secret(self) -> BasicAuth:
        one_secret(self, "password", required=True)
        return self


class BearerAuth(ConfigModel):
    kind: Literal["bearer"]
    token_file: SecretFile | None = None
    token_env: EnvName | None = None

    @model_validator(mode="after")
    def _secret(self) -> BearerAuth:
        one_secret(self, "token", required=True)
        return self


class ClientCertAuth(ConfigModel):
    kind: Literal["client-cert"]
    cert_file: InputFile
    key_file: SecretFile
    key_password_file: SecretFile | None = None  # only for an encrypted key
    key_password_env: EnvName | None = None

    @model_validator(mode="after")
    def _secret(self) -> ClientCertAuth:
        one_secret(self, "key_password", required=False)
        return self


FeedAuth = Annotated[BasicAuth | BearerAuth | ClientCertAuth, Field(discriminator="kind")]


class _FeedCommon(ConfigModel):
    """Keys every feed kind has."""

    enabled: bool = True
    source: Source = NoticeSource.HOTLINE
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
    def _schedule(self) -> _FeedCommon:
        if self.interval_seconds is not None and self.cron is not None:
            raise ValueError("set interval_seconds or cron, not both")
        return self

    @property
    def schedule_interval(self) -> int | None:
        """Seconds between syncs; ``None`` when ``cron`` is used. Default one hour."""
        if self.cron is not None:
            return None
        return self.interval_seconds if self.interval_seconds is not None else 3600


class _Fetched(_FeedCommon):
    """A list read from ``url`` (HTTP with the transport options) or a local ``path``."""

    url: HttpUrl | None = None
    path: OutputPath | None = None  # may appear later (e.g. dropped in by another job)
    auth: FeedAuth | None = None
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

    @model_validator(mode="after")
    def _source_consistent(self) -> _Fetched:
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


class UrlListFeed(_Fetched):
    """Hotline page list: one URL per line, or CSV / JSON lines with id, url, category."""

    kind: Literal["url-list"]
    format: Literal["lines", "csv", "jsonl"] = "lines"


class HashedUrlListFeed(_Fetched):
    """Hex SHA-256 of canonical lookup expressions (feeds the proxy index only)."""

    kind: Literal["hashed-url-list"]
    format: Literal["lines", "csv"] = "lines"


class DomainListFeed(_Fetched):
    """One domain per line (comments allowed): whole-domain entries."""

    kind: Literal["domain-list"]
    format: Literal["lines", "csv"] = "lines"


class LocalFileFeed(_FeedCommon):
    """A list the ISP keeps itself (e.g. a court order), in the format of ``content``."""

    kind: Literal["local-file"]
    path: OutputPath
    content: Literal["url-list", "hashed-url-list", "domain-list"] = "domain-list"
    format: Literal["lines", "csv", "jsonl"] = "lines"


class RpzAxfrFeed(_FeedCommon):
    """An upstream RPZ zone pulled by AXFR/IXFR, optionally with TSIG."""

    kind: Literal["rpz-axfr"]
    server: Host
    port: Port = 53
    zone: DnsName
    tsig_key_name: DnsName | None = None
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512"] = "hmac-sha256"
    tsig_secret_file: SecretFile | None = None
    tsig_secret_env: EnvName | None = None
    timeout_seconds: Seconds = 30.0
    use_ixfr: bool = True

    @model_validator(mode="after")
    def _tsig(self) -> RpzAxfrFeed:
        one_secret(self, "tsig_secret", required=self.tsig_key_name is not None)
        if self.tsig_key_name is None and (self.tsig_secret_file or self.tsig_secret_env):
            raise ValueError("a TSIG secret needs tsig_key_name")
        return self


Feed = Annotated[
    UrlListFeed | HashedUrlListFeed | DomainListFeed | LocalFileFeed | RpzAxfrFeed,
    Field(discriminator="kind"),
]


# --- takedown


class CustomerSource(ConfigModel):
    """``[[takedown.customers]]``: where customer address assignments come from."""

    kind: Literal["csv", "json", "ripe", "http"]
    path: InputFile | None = None
    url: HttpUrl | None = None
    token_file: SecretFile | None = None
    token_env: EnvName | None = None

    @model_validator(mode="after")
    def _where(self) -> CustomerSource:
        if self.kind == "http" and (self.url is None or self.path is not None):
            raise ValueError("kind http needs url (and no path)")
        if self.kind != "http" and (self.path is None or self.url is not None):
            raise ValueError(f"kind {self.kind} needs path (and no url)")
        one_secret(self, "token", required=False)
        return self


class SmtpSettings(ConfigModel):
    """``[takedown.smtp]``: e-mail notices to the hosting team (STARTTLS)."""

    host: Host
    port: Port = 587
    starttls: bool = True
    username: str | None = None
    password_file: SecretFile | None = None
    password_env: EnvName | None = None
    sender: Email
    recipients: Annotated[Items[Email], Field(min_length=1)]
    timeout_seconds: Seconds = 30.0

    @model_validator(mode="after")
    def _secret(self) -> SmtpSettings:
        one_secret(self, "password", required=self.username is not None)
        return self


class WebhookSettings(ConfigModel):
    """``[takedown.webhook]``: HMAC-signed JSON notices."""

    url: HttpUrl
    secret_file: SecretFile | None = None
    secret_env: EnvName | None = None
    timeout_seconds: Seconds = 10.0

    @model_validator(mode="after")
    def _secret(self) -> WebhookSettings:
        one_secret(self, "secret", required=True)
        return self


class TakedownSettings(ConfigModel):
    """``[takedown]``: locate listed URLs in the ISP's own space and drive tickets."""

    enabled: bool = False
    own_prefixes: Items[IpNetwork] = ()
    customers: Items[CustomerSource] = ()
    resolvers: Items[Endpoint] = ()  # must NOT apply the blocking policy
    sla_minutes: Annotated[int, Field(ge=1)] = 60
    sla_minutes_by_source: dict[Source, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    renotify_minutes: Annotated[int, Field(ge=1)] = 240
    require_authorisation_for: Items[Source] = ()
    retention_days: Annotated[int, Field(ge=1)] = 365
    probe: bool = False
    smtp: SmtpSettings | None = None
    webhook: WebhookSettings | None = None

    @model_validator(mode="after")
    def _usable(self) -> TakedownSettings:
        if self.enabled and not self.own_prefixes:
            raise ValueError("enabled takedown needs own_prefixes")
        return self


# --------------------------------------------------------------------------------- root


class Settings(ConfigModel):
    """The whole validated configuration. Build it with :func:`load_config`.

    The enforcers' sections (``[rpz]``, ``[publishers.*]``, ``[[resolvers]]``,
    ``[proxy]``, ``[routes]``) are declared by the enforcers themselves
    (:mod:`edgeagent.enforcement`) and added by :func:`settings_model`; read them with
    :meth:`sections`.
    """

    agent: AgentSettings = Field(default_factory=AgentSettings)
    store: StoreSettings = StoreSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    guard: GuardSettings = Field(default_factory=GuardSettings)
    feeds: dict[Name, Feed] = Field(default_factory=dict)
    takedown: TakedownSettings = TakedownSettings()

    _warnings: tuple[ConfigProblem, ...] = PrivateAttr(default=())

    @property
    def warnings(self) -> tuple[ConfigProblem, ...]:
        """Deprecations found while loading (old kind names): log or show them."""
        return self._warnings

    @property
    def store_path(self) -> Path:
        return self.store.path or self.agent.state_dir / STORE_FILE_NAME

    def sections(self, group: type[G]) -> G:
        """The top-level sections that ``group`` declares as its fields (an enforcer's
        ``Config``), as one typed value."""
        return group.model_construct(**{key: getattr(self, key) for key in group.model_fields})

    def feed_action(self, name: str) -> DnsAction:
        """The DNS action for name-level entries of feed ``name``: its own ``action``, else
        the default of the enforcer that decides it (``[rpz] default_action``)."""
        own = self.feeds[name].action
        if own is not None:
            return own
        for enforcer in ENFORCERS:
            default = self.sections(enforcer.Config).default_feed_action()
            if default is not None:
                return default
        return "nxdomain"


def _cross_checks(s: Settings) -> list[ConfigProblem]:
    """Rules spanning sections, with the key path that should change."""
    problems: list[ConfigProblem] = []
    for enforcer in ENFORCERS:
        problems.extend(s.sections(enforcer.Config).cross_checks(s.feeds))
    return problems


# ---------------------------------------------------------------------- error conversion

_EXPECTED = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean (true or false)",
    "string_type": "a string",
    "list_type": "an array",
    "tuple_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "path_type": "a path (string)",
    "literal_error": "one of {expected}",
    "enum": "one of {expected}",
}
_BOUNDS = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "string_too_short": "must not be empty",
    "ip_v4_address": "not a valid IPv4 address",
    "ip_v6_address": "not a valid IPv6 address",
    "ip_any_network": "not a valid IP network (address/prefix length, host bits zero)",
}


def _quoted_choices(expected: str) -> str:
    """``"'a', 'b' or 'c'"`` -> ``"a, b, c"`` (pydantic's list of allowed values)."""
    found = re.findall(r"'([^']*)'", expected)
    return ", ".join(found) if found else expected.replace(" or ", ", ")


def _key_path(loc: Sequence[int | str], data: object, missing: bool) -> str:
    """Dotted key path of ``loc``, following the TOML data.

    pydantic inserts segments that are not keys (the tag of a union member); they are
    dropped by walking the input alongside. Only a ``missing`` error may name a key that
    is not in the input.
    """
    out = ""
    node = data
    for i, seg in enumerate(loc):
        if isinstance(node, Mapping) and isinstance(seg, str) and seg in node:
            out += f".{seg}"
            node = node[seg]
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            out += f"[{seg}]"
            node = node[seg]
        elif missing and i == len(loc) - 1 and isinstance(seg, str):
            out += f".{seg}"
    return out.lstrip(".")


def _problem(err: Mapping[str, Any], data: object) -> ConfigProblem:
    kind = str(err["type"])
    ctx = err.get("ctx") or {}
    path = _key_path(err["loc"], data, missing=kind == "missing")
    if kind == "extra_forbidden":
        return ConfigProblem(path, "unknown key")
    if kind == "missing":
        return ConfigProblem(path, "required key missing")
    if kind == "union_tag_invalid":
        allowed = _quoted_choices(str(ctx.get("expected_tags", "")))
        return ConfigProblem(f"{path}.kind", f"unknown kind; allowed: {allowed}")
    if kind == "union_tag_not_found":
        return ConfigProblem(f"{path}.kind", "required key missing")
    if kind == "value_error":
        return ConfigProblem(path, str(ctx.get("error", err["msg"])))
    if kind == "string_pattern_mismatch" and err["loc"][-1] == "[key]":
        return ConfigProblem(
            path, "invalid name: use lower-case letters, digits, '-' and '_' (max 63)"
        )
    if kind in _BOUNDS:
        return ConfigProblem(path, _BOUNDS[kind].format(**ctx))
    if kind in _EXPECTED:
        expected = _EXPECTED[kind].format(expected=_quoted_choices(str(ctx.get("expected", ""))))
        got = toml_type(err.get("input"))
        if kind in ("literal_error", "enum"):
            return ConfigProblem(path, f"must be {expected}")
        return ConfigProblem(path, f"expected {expected}, got {got}")
    # Fallback: pydantic's short message, without the echoed input.
    return ConfigProblem(path, str(err["msg"]).rstrip(".").lower())


def settings_model() -> type[Settings]:
    """The root model as the plug-in registries stand now (see :mod:`edgeagent.plugins`),
    with the sections the enforcers own."""
    return concrete_model(Settings, owned_sections(ENFORCERS))


def _validate(data: Mapping[str, Any], source: str, base_dir: Path) -> Settings:
    raw: dict[str, Any] = copy.deepcopy(dict(data))
    model = settings_model()
    warnings = rename_old_kinds(model, raw)
    # Section validators may append deprecations (ConfigProblem) to context["warnings"].
    context: dict[str, Any] = {"base_dir": base_dir, "warnings": warnings}
    try:
        settings = model.model_validate(raw, context=context)
    except ValidationError as exc:
        problems = [_problem(e, raw) for e in exc.errors(include_url=False)]
        raise ConfigError(source, problems) from None
    cross = _cross_checks(settings)
    if cross:
        raise ConfigError(source, cross)
    settings._warnings = tuple(warnings)
    return settings


# ---------------------------------------------------------------------------- public API


def load_config(path: Path | None) -> Settings:
    """Read and validate the TOML file at ``path``; ``None`` gives :func:`default_settings`.

    Raises :class:`ConfigError` with every problem found (syntax errors stop at the first,
    as TOML parsing cannot go on past one).
    """
    if path is None:
        return default_settings()
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(source, [ConfigProblem("", f"cannot read file: {reason}")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        problem = ConfigProblem("", f"not UTF-8 text (byte {exc.start})")
        raise ConfigError(source, [problem]) from None
    except tomllib.TOMLDecodeError as exc:
        problem = ConfigProblem("", f"TOML syntax error: {exc}")
        raise ConfigError(source, [problem]) from None
    return _validate(data, source, path.resolve().parent)


def default_settings(state_dir: Path | None = None) -> Settings:
    """Embedded defaults: a working single-host agent on loopback with the sample feeds.

    Store under ``state_dir`` (default :func:`default_state_dir`), API on
    127.0.0.1:8640, metrics on 127.0.0.1:9640, the synthetic feeds and protected names
    bundled in the repository's ``blocklists/``.
    """
    samples = BUNDLED_LISTS_DIR / "samples"
    data: dict[str, Any] = {
        "agent": {"state_dir": str(state_dir or default_state_dir())},
        "feeds": {
            "hotline-sample": {
                "kind": "url-list",
                "path": str(samples / "hotline-urls.csv"),
                "format": "csv",
                "source": "hotline",
                "authority": "Example Hotline (synthetic sample)",
                "interval_seconds": 300,
            },
            "police-sample": {
                "kind": "domain-list",
                "path": str(samples / "police-domains.txt"),
                "source": "law-enforcement",
                "authority": "Example Police (synthetic sample)",
                "interval_seconds": 300,
            },
        },
    }
    return _validate(data, "<embedded defaults>", Path.cwd())


def summary(settings: Settings) -> list[str]:
    """A one-screen human summary for ``edgeagent check-config`` (no secrets, no entries)."""
    s = settings

    def onoff(flag: bool) -> str:
        return "on" if flag else "off"

    lines = [
        f"state dir   {s.agent.state_dir}",
        f"store       {s.store.backend} {s.store_path}",
        f"api         {_listen(s.api.host, s.api.port, s.api.enabled)}"
        + (" (TLS" + (", client certs required)" if s.api.require_client_cert else ")"))
        * (s.api.tls_cert_file is not None),
        f"metrics     {_listen(s.metrics.host, s.metrics.port, s.metrics.enabled)}",
        f"guard       removals <= {s.guard.max_removal_share:.0%}, additions <= "
        f"{s.guard.max_addition_share:.0%}, floor {s.guard.change_floor}, "
        f"{len(s.guard.protected_lists)} protected list(s)",
        f"feeds       {len(s.feeds)}",
    ]
    for name, feed in sorted(s.feeds.items()):
        every = f"every {feed.schedule_interval}s" if feed.cron is None else f"cron {feed.cron}"
        where = "file" if getattr(feed, "url", None) is None else "http"
        if feed.kind == "rpz-axfr":
            where = "axfr"
        state = "" if feed.enabled else " (disabled)"
        lines.append(
            f"  {name:<16} {feed.kind:<16} {where:<5} {every}, {feed.source.value}, "
            f"action {s.feed_action(name)}{state}"
        )
    for enforcer in ENFORCERS:
        lines.extend(s.sections(enforcer.Config).summary_lines())
    lines.append(
        f"takedown    {onoff(s.takedown.enabled)}"
        + (
            f", {len(s.takedown.own_prefixes)} own prefix(es), SLA {s.takedown.sla_minutes} min"
            if s.takedown.enabled
            else ""
        )
    )
    return lines


def _listen(host: str, port: int, enabled: bool) -> str:
    if not enabled:
        return "off"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
