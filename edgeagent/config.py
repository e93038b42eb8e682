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
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, Field, PrivateAttr, ValidationError, model_validator

from edgeagent.bundled import bundled_path
from edgeagent.configtypes import (
    ConfigModel,
    Count,
    DnsAction,
    InputFile,
    InputPath,
    Items,
    ListenHost,
    ListenPort,
    Name,
    OutputPath,
    Seconds,
    SecretFile,
    Share,
    TimeZoneName,
    toml_type,
)
from edgeagent.console.settings import ConsoleSettings
from edgeagent.dates import time_zone
from edgeagent.enforcement.base import owned_sections
from edgeagent.enforcement.kinds import ENFORCERS
from edgeagent.errors import ConfigError, ConfigProblem, StoreError
from edgeagent.feeds.base import FeedConfig
from edgeagent.feeds.kinds import FEED_KINDS
from edgeagent.intake.settings import IntakeSettings
from edgeagent.limits import ConnectionLimits
from edgeagent.plugins import PluginField, concrete_model, rename_old_kinds
from edgeagent.store.base import StoreConfig
from edgeagent.store.kinds import STORE_BACKENDS
from edgeagent.store.sqlite import SqliteStore, SqliteStoreConfig
from edgeagent.takedown.notifiers.smtp import SmtpNotifierConfig
from edgeagent.takedown.settings import TakedownSettings

DEFAULT_CONFIG_PATH = Path("/etc/edgeagent/edgeagent.toml")
BUNDLED_LISTS_DIR = bundled_path("blocklists")
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
    # Where the NTD team works: dates and times given without a zone are read in it, and
    # the takedown business hours are in it.
    time_zone: TimeZoneName = "UTC"
    # "edge": the proxy index follows a central agent over HTTP ([edge]) instead of this
    # agent's own feeds and decisions.
    role: Literal["standalone", "edge"] = "standalone"

    @property
    def zone(self) -> ZoneInfo:
        return time_zone(self.time_zone)


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


class ListenerSettings(ConfigModel):
    """``[listeners]``: limits every listener enforces (control API, metrics, stop page,
    zone server, public report and appeal pages, the LMTP listener of mailed notices),
    each on its own connections."""

    header_timeout_seconds: Seconds = 10.0
    idle_timeout_seconds: Seconds = 30.0
    max_connections: Annotated[int, Field(ge=16)] = 256

    def limits(self) -> ConnectionLimits:
        return ConnectionLimits(
            self.header_timeout_seconds, self.idle_timeout_seconds, self.max_connections
        )


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


# --------------------------------------------------------------------------------- root


class Settings(ConfigModel):
    """The whole validated configuration. Build it with :func:`load_config`.

    The enforcers' sections (``[rpz]``, ``[publishers.*]``, ``[[resolvers]]``,
    ``[proxy]``, ``[routes]``) are declared by the enforcers themselves
    (:mod:`edgeagent.enforcement`) and added by :func:`settings_model`; read them with
    :meth:`sections`.
    """

    agent: AgentSettings = Field(default_factory=AgentSettings)
    # Where decisions, feed generations and the audit log live.
    store: Annotated[StoreConfig, PluginField(STORE_BACKENDS, "one")] = SqliteStoreConfig()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    listeners: ListenerSettings = ListenerSettings()
    guard: GuardSettings = Field(default_factory=GuardSettings)
    feeds: Annotated[dict[Name, FeedConfig], PluginField(FEED_KINDS, "dict")] = Field(
        default_factory=dict
    )
    takedown: TakedownSettings = TakedownSettings()
    intake: IntakeSettings = IntakeSettings()
    console: ConsoleSettings = ConsoleSettings()

    _warnings: tuple[ConfigProblem, ...] = PrivateAttr(default=())

    @property
    def warnings(self) -> tuple[ConfigProblem, ...]:
        """Deprecations found while loading (old kind names): log or show them."""
        return self._warnings

    @model_validator(mode="before")
    @classmethod
    def _sqlite_by_default(cls, data: Any) -> Any:
        """A ``[store]`` without ``backend`` is the embedded SQLite store (as it always was)."""
        store = data.get("store") if isinstance(data, Mapping) else None
        if isinstance(store, Mapping) and STORE_BACKENDS.key not in store:
            return {**data, "store": {STORE_BACKENDS.key: SqliteStore.KIND, **store}}
        return data

    @property
    def store_path(self) -> Path:
        """The database file of the SQLite backend (other backends keep no file here)."""
        if not isinstance(self.store, SqliteStoreConfig):
            raise StoreError(f"store backend {self.store.backend} has no store file")
        return self.store.file(self.agent.state_dir)

    @property
    def store_location(self) -> str:
        """Where the configured store lives (for people; no secrets)."""
        return self.store.location(self.agent.state_dir)

    def sections(self, group: type[G]) -> G:
        """The top-level sections that ``group`` declares as its fields (an enforcer's
        ``Config``), as one typed value."""
        return group.model_construct(**{key: getattr(self, key) for key in group.model_fields})

    def reserved_names(self) -> tuple[str, ...]:
        """The agent's own names in these settings (canary, stop-page host, policy zones,
        the proxy canary's host): no feed and no person may list them. The enforcers whose
        sections name them say which (:meth:`EnforcerConfig.reserved_names`)."""
        names: set[str] = set()
        for enforcer in ENFORCERS:
            names |= self.sections(enforcer.Config).reserved_names()
        return tuple(sorted(names))

    def policy_zones(self) -> tuple[str, ...]:
        """The DNS zones entries are written under (:meth:`EnforcerConfig.policy_zones`):
        no name too long to be an owner in them is accepted."""
        zones: set[str] = set()
        for enforcer in ENFORCERS:
            zones |= self.sections(enforcer.Config).policy_zones()
        return tuple(sorted(zones))

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
        problems.extend(s.sections(enforcer.Config).role_checks(s.agent.role))
    problems.extend(s.takedown.cross_checks())
    for key, via in (
        ("intake.notify_via", s.intake.notify_via),
        ("intake.mail.ack_via", s.intake.mail.ack_via),
    ):
        if via is not None and not isinstance(s.takedown.notifiers.get(via), SmtpNotifierConfig):
            problems.append(ConfigProblem(key, "must name a takedown notifier of kind smtp"))
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


def _selector(ctx: Mapping[str, Any]) -> str:
    """The key that selects a plug-in (``kind``, ``backend``) from a union error."""
    return str(ctx.get("discriminator", "'kind'")).strip("'")


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    """A key as TOML writes it: bare, or quoted when it is empty or holds other characters
    (``feeds."a.b"`` is not ``feeds.a.b``)."""
    if _BARE_KEY.fullmatch(key):
        return key
    # JSON escapes every control character TOML forbids in a string except DEL.
    return json.dumps(key, ensure_ascii=False).replace("\x7f", "\\u007f")


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
            out += f".{_key(seg)}"
            node = node[seg]
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            out += f"[{seg}]"
            node = node[seg]
        elif missing and i == len(loc) - 1 and isinstance(seg, str):
            out += f".{_key(seg)}"
    return out.removeprefix(".")


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
        key = _selector(ctx)
        return ConfigProblem(f"{path}.{key}", f"unknown {key}; allowed: {allowed}")
    if kind == "union_tag_not_found":
        return ConfigProblem(f"{path}.{_selector(ctx)}", "required key missing")
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
    shipped in ``blocklists/``.
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
        f"store       {s.store.backend} {s.store_location}",
        f"api         {_listen(s.api.host, s.api.port, s.api.enabled)}"
        + (" (TLS" + (", client certs required)" if s.api.require_client_cert else ")"))
        * (s.api.tls_cert_file is not None),
        f"metrics     {_listen(s.metrics.host, s.metrics.port, s.metrics.enabled)}",
        f"guard       removals <= {s.guard.max_removal_share:.0%}, additions <= "
        f"{s.guard.max_addition_share:.0%}, floor {s.guard.change_floor}, "
        f"{len(s.guard.protected_lists)} protected list(s)",
        f"feeds       {len(s.feeds)}",
    ]
    lines.extend(
        feed.summary_line(name, s.feed_action(name)) for name, feed in sorted(s.feeds.items())
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
    lines.append(f"intake      {_listen(s.intake.host, s.intake.port, s.intake.enabled)}")
    mail = s.intake.mail
    if mail.enabled:
        channels = [f"IMAP {mail.user}@{mail.host}:{mail.port}"] * bool(mail.user)
        if mail.lmtp_host is not None:
            channels.append(f"LMTP {_listen(mail.lmtp_host, mail.lmtp_port, True)}")
        lines.append(f"mail        {', '.join(channels)}, {len(mail.senders)} trusted sender(s)")
    else:
        lines.append("mail        off")
    console = s.console
    lines.append(
        f"console     {'on /console/ of the api' if console.enabled and s.api.enabled else 'off'}"
        + (f", idle {console.idle_minutes} min" if console.enabled and s.api.enabled else "")
        + (f", SSO header {console.sso_header}" if console.enabled and console.sso_header else "")
    )
    return lines


def _listen(host: str, port: int, enabled: bool) -> str:
    if not enabled:
        return "off"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
