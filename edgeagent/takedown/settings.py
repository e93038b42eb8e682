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
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, model_validator

from edgeagent.configtypes import ConfigModel, Endpoint, IpNetwork, Items, Name, Source
from edgeagent.errors import ConfigProblem
from edgeagent.plugins import PluginField
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
    require_authorisation_for: Items[Source] = ()
    retention_days: Annotated[int, Field(ge=1)] = 365
    probe: ProbeMode = "never"
    probe_timeout_seconds: Annotated[float, Field(gt=0, le=10)] = 1.0
    probe_rate_per_minute: Annotated[int, Field(ge=1)] = 30
    notifiers: Annotated[dict[Name, NotifierConfig], PluginField(NOTIFIER_KINDS, "dict")] = Field(
        default_factory=dict
    )

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
