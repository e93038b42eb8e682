"""``[takedown]``: the takedown section of the config file.

Customer sources (``[[takedown.customers]]``) and notifiers
(``[takedown.notifiers.NAME]``) are plug-in families: their kinds and config models live
in :mod:`edgeagent.takedown.customers` and :mod:`edgeagent.takedown.notifiers`.

Old spellings still load, each with a deprecation warning naming the key:
``[takedown.smtp]`` and ``[takedown.webhook]`` become the notifiers ``smtp`` and
``webhook`` of those kinds; ``probe = false`` / ``true`` become ``"never"`` /
``"when-not-cached"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, model_validator

from edgeagent.configtypes import (
    ConfigModel,
    Endpoint,
    IpNetwork,
    Items,
    Jurisdiction,
    Name,
    Source,
    SourceOrJurisdiction,
)
from edgeagent.errors import ConfigProblem
from edgeagent.model import NoticeSource
from edgeagent.plugins import PluginField
from edgeagent.takedown.calendar import parse_window
from edgeagent.takedown.customers.base import CustomerSourceConfig
from edgeagent.takedown.customers.kinds import CUSTOMER_SOURCE_KINDS
from edgeagent.takedown.notifiers.base import NotifierConfig
from edgeagent.takedown.notifiers.kinds import NOTIFIER_KINDS
from edgeagent.takedown.segment import ProbeMode

# Tables that were one notifier each before notifiers became a family; each is now the
# notifier of that name and kind (so an error in one still names the key as written).
_OLD_NOTIFIER_TABLES = ("smtp", "webhook")
_OLD_PROBE_VALUES: dict[bool, ProbeMode] = {False: "never", True: "when-not-cached"}


def _warn(info: ValidationInfo, problem: ConfigProblem) -> None:
    warnings = (info.context or {}).get("warnings")
    if isinstance(warnings, list):
        warnings.append(problem)


def _window(value: str) -> str:
    parse_window(value)
    return value


class OnCallSettings(ConfigModel):
    """``[takedown.on_call]``: the hosting team's business hours (in ``[agent] time_zone``)
    and, per notice source, the notifiers that take escalations outside them."""

    business_days: Items[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = (
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
    )
    business_hours: Annotated[str, AfterValidator(_window)] = "08:00-18:00"
    holidays: Items[date] = ()
    # Source -> names of [takedown.notifiers.NAME] tables. A notifier named here gets
    # escalations only (out of hours), never the regular notices.
    notifiers: dict[Source, Items[Name]] = Field(default_factory=dict)

    @property
    def on_call_names(self) -> frozenset[str]:
        return frozenset(name for names in self.notifiers.values() for name in names)


class TakedownSettings(ConfigModel):
    """``[takedown]``: locate listed URLs in the ISP's own space and drive tickets."""

    enabled: bool = False
    own_prefixes: Items[IpNetwork] = ()
    customers: Annotated[
        Items[CustomerSourceConfig], PluginField(CUSTOMER_SOURCE_KINDS, "tuple")
    ] = ()
    resolvers: Items[Endpoint] = ()  # must NOT apply the blocking policy
    sla_minutes: Annotated[int, Field(ge=1)] = 60
    sla_minutes_by_source: dict[Source, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    renotify_minutes: Annotated[int, Field(ge=1)] = 240
    # A notice is tried notify_attempts times on every channel, the pauses between tries
    # growing from notify_backoff_seconds (doubled each time, with jitter); a notice that
    # still failed is tried again notify_retry_seconds after, until it is delivered.
    notify_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    notify_backoff_seconds: Annotated[float, Field(gt=0, le=300)] = 1.0
    notify_retry_seconds: Annotated[int, Field(ge=1)] = 300
    # Sources whose cases start on law-enforcement hold unless the decision or the feed
    # says otherwise: notices reach the hosting team only, never the customer.
    hold_for: Items[Source] = (NoticeSource.LAW_ENFORCEMENT,)
    # Sources and/or jurisdictions (ISO 3166 codes) whose tickets need a recorded
    # law-enforcement authorisation before the content is isolated.
    require_authorisation_for: Items[SourceOrJurisdiction] = ()
    # Hotlines and agencies a case may be referred to: id -> full name. A ticket moves to
    # "referred" only naming one of them (with their reference and the time).
    referral_recipients: dict[Name, Annotated[str, Field(min_length=1)]] = Field(
        default_factory=dict
    )
    # Days a closed ticket's record is kept (evidence), counted from its close: the
    # jurisdiction's figure if given, else the source's, else retention_days. A scheduled
    # purge removes older records, never one under legal hold.
    retention_days: Annotated[int, Field(ge=1)] = 365
    retention_days_by_jurisdiction: dict[Jurisdiction, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict
    )
    retention_days_by_source: dict[Source, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict
    )
    probe: ProbeMode = "never"
    probe_timeout_seconds: Annotated[float, Field(gt=0, le=10)] = 1.0
    probe_rate_per_minute: Annotated[int, Field(ge=1)] = 30
    notifiers: Annotated[dict[Name, NotifierConfig], PluginField(NOTIFIER_KINDS, "dict")] = Field(
        default_factory=dict
    )
    on_call: OnCallSettings = OnCallSettings()

    @model_validator(mode="before")
    @classmethod
    def _old_spellings(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        probe = out.get("probe")
        if isinstance(probe, bool):
            out["probe"] = _OLD_PROBE_VALUES[probe]
            reason = f'true/false is an old spelling; write "{out["probe"]}"'
            _warn(info, ConfigProblem("takedown.probe", reason))
        old_tables = [k for k in _OLD_NOTIFIER_TABLES if k in out]
        notifiers = out.get("notifiers", {})
        if not old_tables or not isinstance(notifiers, Mapping):
            return out  # validation names a bad "notifiers"
        merged = dict(notifiers)
        for key in old_tables:
            table = out.pop(key)
            if key in merged:
                raise ValueError(f"set takedown.notifiers.{key} or takedown.{key}, not both")
            merged[key] = {**table, "kind": key} if isinstance(table, Mapping) else table
            reason = f'an old spelling; write [takedown.notifiers.{key}] with kind = "{key}"'
            _warn(info, ConfigProblem(f"takedown.{key}", reason))
        out["notifiers"] = merged
        return out

    @model_validator(mode="after")
    def _usable(self) -> TakedownSettings:
        if self.enabled and not self.own_prefixes:
            raise ValueError("enabled takedown needs own_prefixes")
        return self

    def cross_checks(self) -> list[ConfigProblem]:
        """Rules across this section's tables, each with its key path (the root
        validator reports them with the other cross-section problems)."""
        found = []
        for source, names in self.on_call.notifiers.items():
            for i, name in enumerate(names):
                if name not in self.notifiers:
                    path = f"takedown.on_call.notifiers.{source.value}[{i}]"
                    found.append(ConfigProblem(path, "no [takedown.notifiers.NAME] of that name"))
        return found
