"""Field types and the base model shared by every config section and plug-in config.

Plug-in modules import from here (never from :mod:`edgeagent.config`, which assembles the
root settings from the plug-in registries): each validator raises ``ValueError`` with a
reason that is shown as-is to the operator, never echoing the value.

* Relative paths are resolved against the config file's directory (validation context
  ``base_dir``). Every ``*_file`` input must exist and be readable when checked.
* Secrets come from a ``*_file`` or ``*_env`` key (:func:`one_secret`), never inline, and are
  read with :func:`read_secret` when needed, so a rotated secret is picked up without a
  reload and secrets never sit in the settings.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
)

from edgeagent import canon
from edgeagent.dates import time_zone
from edgeagent.errors import ConfigError, ConfigProblem, InvalidTarget
from edgeagent.model import NoticeSource

_T = TypeVar("_T")


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """Make a path absolute against the config file's directory (or the cwd)."""
    base = (info.context or {}).get("base_dir") or Path.cwd()
    return (Path(base) / value.expanduser()).resolve()


def _existing(what: str) -> AfterValidator:
    def check(value: Path) -> Path:
        if not value.exists():
            raise ValueError(f"{what} {value} does not exist")
        if what.endswith("file") and not value.is_file():
            raise ValueError(f"{what} {value} is not a regular file")
        if not os.access(value, os.R_OK):
            raise ValueError(f"{what} {value} is not readable")
        return value

    return AfterValidator(check)


def _env_is_set(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError("not a valid environment variable name")
    if not os.environ.get(value):
        raise ValueError(f"environment variable {value} is not set")
    return value


def _http_url(value: str) -> str:
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError("not a valid URL: contains whitespace or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("not a valid URL: must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("not a valid URL: no host")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and process lists; use the auth table.
        raise ValueError("URL must not contain a user name or password (use auth)")
    return value


def _dns_name(value: str) -> str:
    try:
        return canon.canonical_name(value)
    except InvalidTarget as exc:
        raise ValueError(exc.reason) from None


def _host(value: str) -> str:
    """An IP literal or a host name (for servers the agent connects to)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return _dns_name(value)


def _ip_literal(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("not a valid IP address") from None


def _to_network(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {toml_type(value)}")
    try:
        return ipaddress.ip_network(value)
    except ValueError:
        raise ValueError("not a valid IP network (address/prefix length, host bits zero)") from None


def _cron(value: str) -> str:
    from apscheduler.triggers.cron import CronTrigger  # only needed when cron is used

    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"not a valid cron expression: {exc}") from None
    return value


def _file_mode(value: int) -> int:
    if not 0 <= value <= 0o777:
        raise ValueError("not a file mode (write it in octal, e.g. 0o640)")
    if value & 0o007:
        raise ValueError("must not grant access to others (list entries are confidential)")
    return value


JURISDICTION_PATTERN = r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$"
_JURISDICTION_REASON = "not a jurisdiction: an ISO 3166 code such as NL or DE-BY"


def _jurisdiction(value: str) -> str:
    if not re.fullmatch(JURISDICTION_PATTERN, value):
        raise ValueError(_JURISDICTION_REASON)
    return value


def _source_or_jurisdiction(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {toml_type(value)}")
    sources = [s.value for s in NoticeSource]
    if value in sources or re.fullmatch(JURISDICTION_PATTERN, value):
        return value
    named = ", ".join(sources)
    raise ValueError(f"neither a notice source ({named}) nor an ISO 3166 jurisdiction code")


def _email(value: str) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+", value):
        raise ValueError("not a valid e-mail address")
    return value


def _time_zone_name(value: str) -> str:
    time_zone(value)
    return value


SecretFile = Annotated[Path, Strict(False), AfterValidator(_resolve), _existing("secret file")]
InputFile = Annotated[Path, Strict(False), AfterValidator(_resolve), _existing("file")]
InputPath = Annotated[Path, Strict(False), AfterValidator(_resolve), _existing("path")]
OutputPath = Annotated[Path, Strict(False), AfterValidator(_resolve)]
EnvName = Annotated[str, AfterValidator(_env_is_set)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
DnsName = Annotated[str, AfterValidator(_dns_name)]
Host = Annotated[str, AfterValidator(_host)]
ListenHost = Annotated[str, AfterValidator(_ip_literal)]
IpAddress = Annotated[str, AfterValidator(_ip_literal)]
IpNetwork = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_to_network)]
Port = Annotated[int, Field(ge=1, le=65535)]
ListenPort = Annotated[int, Field(ge=0, le=65535)]  # 0: let the kernel pick (tests)
Seconds = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
FileMode = Annotated[int, AfterValidator(_file_mode)]
Email = Annotated[str, AfterValidator(_email)]
Cron = Annotated[str, AfterValidator(_cron)]
TimeZoneName = Annotated[str, AfterValidator(_time_zone_name)]  # IANA, e.g. "Europe/Berlin"
# Feed and publisher names appear in metric labels and file names: keep them tame.
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Source = Annotated[NoticeSource, Strict(False)]
# Where the law that governs a case applies: ISO 3166-1 alpha-2, or a 3166-2 subdivision.
Jurisdiction = Annotated[str, AfterValidator(_jurisdiction)]
# A rule key that names either a notice source or a jurisdiction (the two never collide:
# sources are lower case, jurisdictions upper case).
SourceOrJurisdiction = Annotated[str, BeforeValidator(_source_or_jurisdiction)]
# TOML arrays become tuples (frozen); items keep their strict types.
Items = Annotated[tuple[_T, ...], Strict(False)]
DnsAction = Literal["nxdomain", "nodata", "stop-page", "divert"]


class ConfigModel(BaseModel):
    """Base of every section and plug-in config: unknown keys are errors, values are
    frozen and strict (TOML already has integers, booleans and arrays, so ``"60"`` for a
    number is a mistake, not a hint)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def one_secret(model: BaseModel, stem: str, *, required: bool) -> None:
    """At most one of ``<stem>_file`` / ``<stem>_env``; exactly one when ``required``."""
    given = [k for k in (f"{stem}_file", f"{stem}_env") if getattr(model, k) is not None]
    if len(given) > 1:
        raise ValueError(f"set {stem}_file or {stem}_env, not both")
    if required and not given:
        raise ValueError(f"{stem}_file or {stem}_env is required")


class Endpoint(ConfigModel):
    """A server the agent talks to (DNS by default)."""

    host: Host
    port: Port = 53


def toml_type(value: object) -> str:
    """The TOML word for a value's type (what the operator wrote)."""
    if isinstance(value, bool):
        return "boolean"
    for kind, word in (
        (int, "integer"),
        (float, "float"),
        (str, "string"),
        (list, "array"),
        (dict, "table"),
        (datetime, "date-time"),
        (date, "date"),
        (time, "time"),
    ):
        if isinstance(value, kind):
            return word
    return type(value).__name__


def read_secret(file: Path | None, env: str | None) -> str:
    """The secret from ``file`` (trailing newline removed) or environment variable ``env``.

    Raises :class:`ConfigError` (never showing the secret) when neither is given, the file
    cannot be read, the variable is unset, or the secret is empty.
    """
    if file is not None:
        try:
            value = file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            problem = ConfigProblem("", f"cannot read secret: {reason}")
            raise ConfigError(str(file), [problem]) from None
        source = str(file)
    elif env is not None:
        value = os.environ.get(env, "")
        source = f"${env}"
    else:
        raise ConfigError("<secret>", [ConfigProblem("", "no secret file or variable given")])
    if not value:
        raise ConfigError(source, [ConfigProblem("", "secret is empty")])
    return value
