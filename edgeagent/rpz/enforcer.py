"""The RPZ enforcer: the policy as RPZ zones at every resolver.

Owns three config sections:

* ``[rpz]`` (:class:`RpzConfig`) -> :class:`~edgeagent.rpz.compiler.RpzSettings` (zones,
  SOA, canary, stop page host, the filtering proxy's ``proxy_ipv4``/``proxy_ipv6`` for
  ``divert``, and each feed's ``action``: :func:`compiler_settings`);
* ``[publishers.NAME]`` -> one publisher per enabled entry, of the kind its ``kind`` names
  (:mod:`edgeagent.rpz.publishers.kinds`);
* ``[[resolvers]]`` (:class:`ResolverConfig`), and every resolver of the fleet inventory
  ``rpz.inventory`` names (:mod:`edgeagent.render.inventory`), -> the
  :class:`~edgeagent.rpz.verify.Verifier`'s targets. Each publisher is told the resolvers
  it reaches most directly (:func:`verified_by`): ``http-notify`` those it notifies,
  ``bind-update`` the ``kind = "bind"`` ones (plus, without a ``zonefile`` publisher, the
  ``kind = "unbound"`` ones nobody notifies: they transfer from the hidden primary by
  IXFR), ``zonefile`` all the rest. It does not wait for them: a publish is the source
  accepting the change, and the fleet is verified apart from it.

Active when a publisher is enabled or a resolver is listed. Publishing
(:class:`~edgeagent.rpz.publishing.RpzPublishing`) runs in a worker thread; every
``rpz.verify_interval_seconds`` a zone file changed behind the agent's back is published
again (:meth:`~edgeagent.rpz.publishing.RpzPublishing.repair_drift`) and every
resolver's canary is queried.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, PrivateAttr, Strict, model_validator

from edgeagent.configtypes import ConfigModel, DnsName, Host, InputFile, Items, Name, Port
from edgeagent.enforcement.base import (
    Enforced,
    Enforcer,
    EnforcerConfig,
    EnforcerContext,
    FeedFacts,
    FleetMember,
    PeriodicJob,
)
from edgeagent.errors import ConfigError, ConfigProblem, EdgeAgentError
from edgeagent.model import DesiredState
from edgeagent.plugins import PluginField, own_config
from edgeagent.render.inventory import Inventory, load_inventory
from edgeagent.rpz import defaults
from edgeagent.rpz.compiler import RpzAction, RpzSettings
from edgeagent.rpz.publishers.base import (
    Publisher,
    PublisherConfig,
    PublisherContext,
    Reach,
    ResolverTarget,
)
from edgeagent.rpz.publishers.kinds import PUBLISHER_KINDS
from edgeagent.rpz.publishing import RpzPublishing
from edgeagent.rpz.verify import ResolverCheck, Verifier

# The agent's publishers never wait for resolvers: the fleet is verified apart.
VERIFY_TIMEOUT = 0.0
# A resolver behind for longer than this at a verify is sent a NOTIFY of its own: the
# primary's transfer normally takes well under a second.
LAG_NUDGE_SECONDS = 5.0


def _readable_inventory(path: Path) -> Path:
    _inventory(path)
    return path


def _inventory(path: Path) -> Inventory:
    try:
        return load_inventory(path)
    except ConfigError as exc:
        raise ValueError("; ".join(str(p) for p in exc.problems)) from None


class RpzConfig(ConfigModel):
    """``[rpz]``: the policy zones the agent compiles and how resolvers are checked."""

    # Every default here is the compiler's too (edgeagent.rpz.defaults).
    zone: DnsName = defaults.ZONE
    exception_zone: DnsName = defaults.EXCEPTION_ZONE
    default_action: Literal["nxdomain", "nodata", "stop-page"] = "nxdomain"
    stop_page_host: DnsName | None = None
    proxy_ipv4: Annotated[ipaddress.IPv4Address, Strict(False)] | None = None
    proxy_ipv6: Annotated[ipaddress.IPv6Address, Strict(False)] | None = None
    canary_name: DnsName = defaults.CANARY
    ttl: Annotated[int, Field(ge=0)] = defaults.TTL
    soa_mname: DnsName = defaults.SOA_MNAME
    soa_rname: DnsName = defaults.SOA_RNAME
    soa_refresh: Annotated[int, Field(ge=1)] = defaults.SOA_REFRESH
    soa_retry: Annotated[int, Field(ge=1)] = defaults.SOA_RETRY
    soa_expire: Annotated[int, Field(ge=1)] = defaults.SOA_EXPIRE  # fail static (see defaults)
    soa_minimum: Annotated[int, Field(ge=0)] = defaults.SOA_MINIMUM
    verify_interval_seconds: Annotated[int, Field(ge=5)] = 60
    serial_grace_seconds: Annotated[int, Field(ge=0)] = 120
    region_quorum: Annotated[float, Field(gt=0, le=1)] = 0.5
    # The fleet inventory `edgeagent render` reads: its resolvers are verified as if each
    # had its own [[resolvers]] block.
    inventory: Annotated[InputFile, AfterValidator(_readable_inventory)] | None = None

    _fleet: tuple[ResolverConfig, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _zones_differ(self) -> RpzConfig:
        if self.zone == self.exception_zone:
            raise ValueError("zone and exception_zone must differ")
        return self

    @model_validator(mode="after")
    def _fleet_resolvers(self) -> RpzConfig:
        if self.inventory is not None:
            self._fleet = tuple(
                ResolverConfig(
                    name=r.name,
                    host=r.address,
                    port=r.port,
                    kind=r.kind if r.kind in ("bind", "unbound") else "other",
                    region=r.region,
                )
                for r in _inventory(self.inventory).resolvers
            )
        return self

    @property
    def fleet_resolvers(self) -> tuple[ResolverConfig, ...]:
        """The inventory's resolvers (none without ``inventory``)."""
        return self._fleet

    @property
    def can_divert(self) -> bool:
        """True when URL-level entries can be diverted to a filtering proxy."""
        return self.proxy_ipv4 is not None or self.proxy_ipv6 is not None


class ResolverConfig(ConfigModel):
    """``[[resolvers]]``: a resolver the agent verifies (canary and SOA serial)."""

    name: Name
    host: Host
    port: Port = 53
    kind: Literal["bind", "unbound", "other"] = "other"
    region: Name | None = None
    serial_check: Literal["query", "rndc", "unbound-control", "none"] = "query"

    def target(self) -> ResolverTarget:
        return ResolverTarget(self.name, self.host, self.port, self.kind, self.region or "")


class RpzEnforcerConfig(EnforcerConfig):
    """The RPZ enforcer's sections: ``[rpz]``, ``[publishers.NAME]``, ``[[resolvers]]``."""

    rpz: RpzConfig = RpzConfig()
    publishers: Annotated[dict[Name, PublisherConfig], PluginField(PUBLISHER_KINDS, "dict")] = (
        Field(default_factory=dict)
    )
    resolvers: Items[ResolverConfig] = ()

    def verified_resolvers(self) -> tuple[ResolverConfig, ...]:
        """``[[resolvers]]`` and the inventory's resolvers: every one the agent checks."""
        return (*self.resolvers, *self.rpz.fleet_resolvers)

    def enabled_publishers(self) -> dict[str, PublisherConfig]:
        return {name: p for name, p in sorted(self.publishers.items()) if p.enabled}

    def cross_checks(self, feeds: Mapping[str, FeedFacts]) -> list[ConfigProblem]:
        problems: list[ConfigProblem] = []
        r = self.rpz
        if r.default_action == "stop-page" and r.stop_page_host is None:
            problems.append(ConfigProblem("rpz.stop_page_host", "required by default_action"))
        for name, feed in feeds.items():
            if feed.action == "stop-page" and r.stop_page_host is None:
                problems.append(
                    ConfigProblem(f"feeds.{name}.action", "stop-page needs rpz.stop_page_host")
                )
            if feed.action == "divert" and not r.can_divert:
                problems.append(
                    ConfigProblem(f"feeds.{name}.action", "divert needs rpz.proxy_ipv4/proxy_ipv6")
                )
        seen: set[str] = set()
        for i, resolver in enumerate(self.resolvers):
            if resolver.name in seen:
                problems.append(ConfigProblem(f"resolvers[{i}].name", "duplicate resolver name"))
            seen.add(resolver.name)
        for resolver in self.rpz.fleet_resolvers:
            if resolver.name in seen:
                problems.append(
                    ConfigProblem(
                        "rpz.inventory", f"resolver {resolver.name} also in [[resolvers]]"
                    )
                )
        return problems

    def summary_lines(self) -> list[str]:
        r = self.rpz
        lines = [
            f"rpz         {r.zone} (exceptions {r.exception_zone})",
            f"            default {r.default_action}, canary {r.canary_name}",
            f"publishers  {len(self.publishers)}",
        ]
        for name, pub in sorted(self.publishers.items()):
            state = "" if pub.enabled else " (disabled)"
            lines.append(f"  {name:<16} {pub.kind}{state}")
        resolvers = self.verified_resolvers()
        lines.append(f"resolvers   {len(resolvers)}")
        lines.extend(f"  {r.name:<16} {r.kind:<8} {r.host}:{r.port}" for r in resolvers)
        return lines

    def default_feed_action(self) -> Literal["nxdomain", "nodata", "stop-page"]:
        return self.rpz.default_action

    def reserved_names(self) -> set[str]:
        # The canary (the compiler writes its records itself; a listed canary collides
        # with them), the stop-page host (blocked, every stop-page answer would point
        # nowhere), the zones' own names (their entries are written under them).
        r = self.rpz
        names = {r.canary_name, r.zone, r.exception_zone}
        if r.stop_page_host is not None:
            names.add(r.stop_page_host)
        return names

    def policy_zones(self) -> set[str]:
        return {self.rpz.zone, self.rpz.exception_zone}


def compiler_settings(rpz: RpzConfig, feeds: Mapping[str, FeedFacts]) -> RpzSettings:
    """``[rpz]`` and each feed's ``action`` as the compiler's settings."""
    source_actions = {name: RpzAction(f.action) for name, f in feeds.items() if f.action}
    return RpzSettings(
        zone=rpz.zone,
        exception_zone=rpz.exception_zone,
        mname=rpz.soa_mname,
        rname=rpz.soa_rname,
        ns=rpz.soa_mname,
        ttl=rpz.ttl,
        timers=(rpz.soa_refresh, rpz.soa_retry, rpz.soa_expire, rpz.soa_minimum),
        proxy_ipv4=str(rpz.proxy_ipv4) if rpz.proxy_ipv4 is not None else None,
        proxy_ipv6=str(rpz.proxy_ipv6) if rpz.proxy_ipv6 is not None else None,
        canary=rpz.canary_name,
        default_action=RpzAction(rpz.default_action),
        source_actions=source_actions,
        stop_page_host=rpz.stop_page_host,
    )


def verified_by(
    publishers: Mapping[str, PublisherConfig], resolvers: Sequence[ResolverTarget]
) -> dict[str, tuple[ResolverTarget, ...]]:
    """The resolvers each publisher verifies: every resolver goes to the publishers that
    reach it most directly (:class:`~edgeagent.rpz.publishers.base.Reach`)."""
    out: dict[str, list[ResolverTarget]] = {name: [] for name in publishers}
    for resolver in resolvers:
        reach = {name: cfg.reach(resolver) for name, cfg in publishers.items()}
        best = max(reach.values(), default=Reach.NONE)
        for name, level in reach.items():
            if level is not Reach.NONE and level == best:
                out[name].append(resolver)
    return {name: tuple(found) for name, found in out.items()}


def build_publishing(config: RpzEnforcerConfig, context: EnforcerContext) -> RpzPublishing:
    """Publishers, verifier and serial store for ``config`` (reads the publishers' secrets)."""
    rpz = compiler_settings(config.rpz, context.feeds)
    enabled = config.enabled_publishers()
    resolvers = config.verified_resolvers()
    targets = verified_by(enabled, [r.target() for r in resolvers])
    publishers: list[Publisher[Any]] = [
        PUBLISHER_KINDS.plugin(cfg).from_config(
            name,
            cfg,
            PublisherContext(
                rpz.zone,
                rpz.exception_zone,
                context.state_dir,
                targets[name],
                VERIFY_TIMEOUT,
                context.limits,
            ),
        )
        for name, cfg in enabled.items()
    ]
    verifier = Verifier(
        [
            ResolverCheck(r.target(), counts_for_readiness=r.serial_check != "none")
            for r in resolvers
        ],
        rpz.canary,
        grace_seconds=config.rpz.serial_grace_seconds,
        quorum=config.rpz.region_quorum,
        metrics=context.metrics,
    )
    return RpzPublishing(
        rpz,
        publishers,
        verifier,
        context.state_dir,
        context.metrics,
        serials=context.serials,
        fence=context.fence,
    )


class RpzEnforcer(Enforcer):
    """Publishes every policy version as RPZ zones and proves the resolvers serve it."""

    KIND = "rpz"
    Config = RpzEnforcerConfig

    def __init__(
        self,
        config: RpzEnforcerConfig,
        context: EnforcerContext,
        publishing: RpzPublishing | None,
    ) -> None:
        super().__init__(config, context)
        self.sections = config
        self.publishing = publishing  # None while idle

    @classmethod
    def from_config(cls, config: EnforcerConfig, context: EnforcerContext) -> Self:
        cfg = own_config(config, RpzEnforcerConfig)
        active = bool(cfg.enabled_publishers() or cfg.verified_resolvers())
        return cls(cfg, context, build_publishing(cfg, context) if active else None)

    @property
    def active(self) -> bool:
        return self.publishing is not None

    def _running(self) -> RpzPublishing:
        if self.publishing is None:
            raise RuntimeError("the RPZ enforcer is idle")  # the daemon skips idle ones
        return self.publishing

    async def start(self) -> None:
        await self._running().start()

    async def publish(self, state: DesiredState) -> Enforced:
        publishing = self._running()
        try:
            await asyncio.to_thread(publishing.publish, state)
        except EdgeAgentError as exc:  # the serial could not be recorded (store down)
            return Enforced(self.KIND, state.version, False, f"no serial: {exc}")
        missing = publishing.missing()
        if missing:
            return Enforced(
                self.KIND, state.version, False, f"not yet published by: {', '.join(missing)}"
            )
        behind = self.lagging()
        if behind:
            await asyncio.to_thread(publishing.nudge, behind)
        return Enforced(self.KIND, state.version, True)

    def lagging(self) -> tuple[str, ...]:
        if self.publishing is None:
            return ()
        behind = self.publishing.verification.lagging(for_seconds=LAG_NUDGE_SECONDS)
        return tuple(r.name for r in behind)

    async def verify(self) -> tuple[str, ...]:
        publishing = self._running()
        await asyncio.to_thread(publishing.repair_drift)
        return (await asyncio.to_thread(publishing.verify_all)).reasons

    def readiness(self) -> tuple[str, ...]:
        return self.publishing.verification.reasons if self.publishing is not None else ()

    def status(self) -> Mapping[str, Any]:
        return {"rpz": self.publishing.status()} if self.publishing is not None else {}

    def fleet(self) -> tuple[FleetMember, ...]:
        if self.publishing is None:
            return ()
        seen = {r.name: r for r in self.publishing.verification.resolvers}
        members = []
        for cfg in self.sections.verified_resolvers():
            r = seen.get(cfg.name)
            members.append(
                FleetMember(
                    name=cfg.name,
                    enforcer=self.KIND,
                    kind=cfg.kind,
                    region=cfg.region or "",
                    confirmed=r.confirmed_serial if r else None,
                    lag=r.lag if r else None,
                    canary_ok=r.canary_ok if r else None,
                    reachable=r.reachable if r else None,
                    checked_at=r.checked_at if r else None,
                )
            )
        return tuple(members)

    def periodic(self) -> tuple[PeriodicJob, ...]:
        return (PeriodicJob("verify", self.sections.rpz.verify_interval_seconds, self.verify),)

    def inputs(self, context: EnforcerContext) -> object:
        actions = {name: f.action for name, f in context.feeds.items() if f.action}
        return context.state_dir, actions

    async def hand_over(self, successor: Enforcer, state: DesiredState | None) -> None:
        await self.close()
        kept = own_config(successor.config, RpzEnforcerConfig)
        metrics = self.context.metrics
        for name in set(self.sections.enabled_publishers()) - set(kept.enabled_publishers()):
            metrics.forget_publisher(name)
        before = {r.name for r in self.sections.verified_resolvers()}
        for name in before - {r.name for r in kept.verified_resolvers()}:
            metrics.forget_resolver(name)

    async def close(self) -> None:
        if self.publishing is not None:
            await self.publishing.close()
