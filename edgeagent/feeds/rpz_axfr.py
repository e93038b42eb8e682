"""Upstream RPZ zone by AXFR/IXFR with TSIG -> ``domain``/``host`` indicators.

The transfer itself is :mod:`edgeagent.feeds.rpz_transfer` (dnspython, loaded when a
feed runs: this module is imported by every command through the config). The base state
is rebuilt from the live generation's entries, whose ``reference`` carries the upstream
policy record (``rpz:CNAME .``); if an IXFR does not apply exactly to that base (the upstream uses
different data for a name and its wildcard, say), the engine falls back to a full AXFR.

Mapping (never widened):

- ``name`` and ``*.name`` with the same policy -> ``domain``; ``name`` alone -> ``host``;
  ``*.name`` alone -> refused (``wildcard-only``: it does not cover ``name`` itself, and
  ``domain`` would);
- ``CNAME rpz-passthru.`` -> ``allow``; every other policy (NXDOMAIN ``CNAME .``, NODATA
  ``CNAME *.``, ``rpz-drop.``, ``rpz-tcp-only.``, local data) -> ``block`` (the agent
  answers with its own policy);
- ``rpz-ip``, ``rpz-nsdname``, ``rpz-nsip``, ``rpz-client-ip`` triggers -> refused
  (``unsupported-trigger``); the apex SOA/NS are zone plumbing.

A zone serial lower than the live generation's is refused (rollback); an equal one is
"unchanged".
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from typing import Literal

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
from edgeagent.errors import InvalidTarget
from edgeagent.feeds.base import (
    Accepted,
    Feed,
    FeedConfig,
    FeedKind,
    FeedSpec,
    Item,
    Rejected,
    TsigKey,
)
from edgeagent.model import Action, Indicator, Scope
from edgeagent.store.base import Generation, Store

__all__ = [
    "RpzAxfrFeed",
    "RpzAxfrFeedConfig",
    "base_from_store",
    "items",
]


Records = dict[str, tuple[str, ...]]  # relative owner -> ("TYPE rdata", ...)

REF_PREFIX = "rpz:"
_TRIGGERS = ("rpz-ip", "rpz-nsdname", "rpz-nsip", "rpz-client-ip")
_PASSTHRU = "CNAME rpz-passthru."
_SEP = "|"


def base_from_store(store: Store, live: Generation | None) -> Records:
    """Rebuild the zone records the live generation came from (owner -> record texts)."""
    records: Records = {}
    if live is None:
        return records
    for entry in store.generation_entries(live.id):
        ref = entry.reference
        if not ref.startswith(REF_PREFIX) or not entry.indicator.scope.is_name:
            continue
        texts = tuple(sys.intern(t) for t in ref[len(REF_PREFIX) :].split(_SEP))
        name = entry.indicator.value
        records[name] = texts
        if entry.indicator.scope is Scope.DOMAIN:
            records[f"*.{name}"] = texts
    return records


def _action(texts: tuple[str, ...]) -> Action:
    return Action.ALLOW if _PASSTHRU in texts else Action.BLOCK


def items(spec: FeedSpec, records: Records) -> Iterator[Item]:
    """Zone records -> items, per the mapping in the module docstring."""
    for owner, texts in records.items():
        if owner == "@" or not texts:
            continue
        labels = owner.split(".")
        if any(t in labels for t in _TRIGGERS):
            yield Rejected.of("unsupported-trigger", owner)
            continue
        ref = REF_PREFIX + _SEP.join(texts)
        if owner.startswith("*."):
            apex = owner[2:]
            if apex not in records:
                yield Rejected.of("wildcard-only", owner)
            elif records[apex] != texts:
                yield Rejected.of("inconsistent-wildcard", owner)
            continue
        wild = records.get(f"*.{owner}")
        scope = Scope.DOMAIN if wild == texts else Scope.HOST
        try:
            ind = Indicator.parse(scope, owner)
        except InvalidTarget:
            yield Rejected.of("invalid-name", owner)
            continue
        yield Accepted(ind, _action(texts), spec.category, ref)


class RpzAxfrFeedConfig(FeedConfig):
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
    def _tsig(self) -> RpzAxfrFeedConfig:
        one_secret(self, "tsig_secret", required=self.tsig_key_name is not None)
        if self.tsig_key_name is None and (self.tsig_secret_file or self.tsig_secret_env):
            raise ValueError("a TSIG secret needs tsig_key_name")
        return self

    @property
    def origin(self) -> str:
        return "axfr"


class RpzAxfrFeed(Feed[RpzAxfrFeedConfig]):
    KIND = "rpz-axfr"
    Config = RpzAxfrFeedConfig

    @classmethod
    def from_config(cls, name: str, config: RpzAxfrFeedConfig) -> FeedSpec:
        tsig = None
        if config.tsig_key_name is not None:
            secret = read_secret(config.tsig_secret_file, config.tsig_secret_env)
            tsig = TsigKey(config.tsig_key_name, secret, config.tsig_algorithm)
        return replace(
            config.common_spec(name, FeedKind.RPZ_AXFR),
            server=config.server,
            port=config.port,
            zone=config.zone,
            tsig=tsig,
            ixfr=config.use_ixfr,
            deadline=config.timeout_seconds,
        )
