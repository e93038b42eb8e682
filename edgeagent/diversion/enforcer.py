"""The diversion enforcer: policy -> addresses -> routes, kept in step.

Owns the ``[routes]`` config section (:class:`RoutesConfig`); active when ``enabled``.
Each pass (after a policy change and every ``routes.reconcile_interval_seconds``):

1. the hosts of ``url``/``url-prefix`` block entries are resolved through
   ``routes.resolvers`` (resolvers without the policy; otherwise they would answer with
   the proxy's own address), and so are the protected names, whose addresses are never
   diverted (a listed site can point its name at a popular third party's address);
2. :func:`~edgeagent.diversion.plan.plan_routes` applies the guardrails (protected and
   CDN ranges, minimum prefix, maximum route count);
3. :class:`~edgeagent.diversion.kernel.RouteReconciler` installs, repairs and removes
   routes and rules, and reports foreign routes. Too many routes, or a failed pass,
   leaves the installed routes as they were and counts a failure.

Routes stay installed when the agent stops (enforcement must not lapse with a restart).
A reload that moves them (another table or route protocol) or switches diversion off
withdraws the old ones only after the new ones are in place.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import Field, model_validator

from edgeagent import canon
from edgeagent.configtypes import ConfigModel, Endpoint, IpAddress, IpNetwork, Items, Port
from edgeagent.diversion.kernel import ReconcileResult, RouteReconciler
from edgeagent.diversion.plan import RouteSettings, plan_routes
from edgeagent.enforcement.base import (
    Enforced,
    Enforcer,
    EnforcerConfig,
    EnforcerContext,
    PeriodicJob,
)
from edgeagent.errors import EdgeAgentError
from edgeagent.logs import fields
from edgeagent.model import DesiredState
from edgeagent.plugins import own_config
from edgeagent.takedown.locate import HostResolver

log = logging.getLogger("edgeagent.routes")


class RoutesConfig(ConfigModel):
    """``[routes]``: divert addresses of hosts with URL-level entries to the proxy."""

    enabled: bool = False
    dry_run: bool = False
    table: Annotated[int, Field(ge=1, le=252)] = 100
    rule_priority: Annotated[int, Field(ge=1, le=32765)] = 1000
    proxy_next_hop: IpAddress | None = None
    proxy_next_hop_v6: IpAddress | None = None  # the IPv6 next hop, when v6 is diverted
    ports: Items[Port] = (80,)
    max_routes: Annotated[int, Field(ge=1)] = 10_000
    min_prefix_v4: Annotated[int, Field(ge=0, le=32)] = 24
    min_prefix_v6: Annotated[int, Field(ge=0, le=128)] = 48
    protected_ranges: Items[IpNetwork] = ()
    cdn_ranges: Items[IpNetwork] = ()
    allow_non_global: bool = False  # labs and tests divert documentation addresses
    route_protocol: Annotated[int, Field(ge=5, le=255)] = 200
    reconcile_interval_seconds: Annotated[int, Field(ge=1)] = 30
    # Resolvers for the diverted hosts' addresses; they must NOT apply the policy.
    resolvers: Items[Endpoint] = ()

    @model_validator(mode="after")
    def _next_hop(self) -> RoutesConfig:
        if self.enabled and self.proxy_next_hop is None:
            raise ValueError("enabled routes need proxy_next_hop")
        if self.enabled and not self.resolvers:
            raise ValueError("enabled routes need resolvers (without the blocking policy)")
        return self


class DiversionEnforcerConfig(EnforcerConfig):
    """The diversion enforcer's section: ``[routes]``."""

    routes: RoutesConfig = RoutesConfig()

    def summary_lines(self) -> list[str]:
        r = self.routes
        return [f"routes      {'on' if r.enabled else 'off'}" + (" (dry run)" if r.dry_run else "")]


def route_settings(cfg: RoutesConfig) -> RouteSettings:
    """The planner's and reconciler's settings from ``[routes]``: each next hop goes to the
    family it belongs to (``proxy_next_hop_v6``, if set, wins for IPv6)."""
    v4: ipaddress.IPv4Address | None = None
    v6: ipaddress.IPv6Address | None = None
    for text in (cfg.proxy_next_hop, cfg.proxy_next_hop_v6):
        if text is None:
            continue
        hop = ipaddress.ip_address(text)
        if isinstance(hop, ipaddress.IPv4Address):
            v4 = hop
        else:
            v6 = hop
    return RouteSettings(
        table=cfg.table,
        rule_priority=cfg.rule_priority,
        ports=tuple(sorted(set(cfg.ports))),
        next_hop_v4=v4,
        next_hop_v6=v6,
        max_routes=cfg.max_routes,
        min_prefix_v4=cfg.min_prefix_v4,
        min_prefix_v6=cfg.min_prefix_v6,
        protected_ranges=tuple(cfg.protected_ranges),
        cdn_ranges=tuple(cfg.cdn_ranges),
        allow_non_global=cfg.allow_non_global,
        rt_proto=cfg.route_protocol,
        dry_run=cfg.dry_run,
    )


def diverted_hosts(state: DesiredState) -> list[str]:
    """Hosts with URL-level block entries (the ones DNS diverts to the proxy too)."""
    hosts = {canon.url_host(e.indicator.value) for e in state.blocks if e.indicator.scope.is_url}
    return sorted(hosts)


class DiversionEnforcer(Enforcer):
    """Keeps the kernel's diversion routes in step with the policy.

    ``netns`` names the network namespace to manage (tests); ``None`` is the agent's own.
    """

    KIND = "diversion"
    Config = DiversionEnforcerConfig

    def __init__(
        self,
        config: DiversionEnforcerConfig,
        context: EnforcerContext,
        *,
        netns: str | None = None,
    ) -> None:
        super().__init__(config, context)
        self.routes = config.routes
        self.netns = netns
        self.route_settings = route_settings(self.routes)
        resolvers = [(e.host, e.port) for e in self.routes.resolvers]
        # Enabled routes always have resolvers (config check); idle ones resolve nothing.
        self.resolver = HostResolver(resolvers) if self.routes.enabled else None
        self.reconciler = RouteReconciler(self.route_settings, netns=netns)
        self.metrics = context.metrics
        self.protected_names = sorted(context.protected_names)
        self.last: ReconcileResult | None = None
        self.last_error = ""
        self._state: DesiredState | None = None  # the last state published

    @classmethod
    def from_config(cls, config: EnforcerConfig, context: EnforcerContext) -> Self:
        return cls(own_config(config, DiversionEnforcerConfig), context)

    def rebuild(self, config: EnforcerConfig, context: EnforcerContext) -> Enforcer:
        return DiversionEnforcer(
            own_config(config, DiversionEnforcerConfig), context, netns=self.netns
        )

    @property
    def active(self) -> bool:
        return self.routes.enabled

    def inputs(self, context: EnforcerContext) -> object:
        return tuple(sorted(context.protected_names))

    async def publish(self, state: DesiredState) -> Enforced:
        self._state = state
        result = await self.reconcile(state)
        return Enforced(self.KIND, state.version, result is not None, self.last_error)

    def periodic(self) -> tuple[PeriodicJob, ...]:
        return (PeriodicJob("reconcile", self.routes.reconcile_interval_seconds, self._repair),)

    async def _repair(self) -> None:
        """Put the last published state's routes back (drift, hand edits, new addresses)."""
        if self._state is not None:
            await self.reconcile(self._state)

    async def reconcile(self, state: DesiredState) -> ReconcileResult | None:
        """One pass; never raises (the installed routes stay on any error)."""
        if self.resolver is None:
            raise RuntimeError("the diversion enforcer is idle")  # the daemon skips idle ones
        try:
            hosts = diverted_hosts(state)
            answers = await self.resolver.resolve_many([*hosts, *self.protected_names])
            addresses = {h: [a.address for a in answers[h][0]] for h in hosts}
            protected = [a.address for n in self.protected_names for a in answers[n][0]]
            plan = plan_routes(addresses, self.route_settings, protected_addresses=protected)
            # Another agent may lead now: its routes, not ours, are the ones to install.
            await asyncio.to_thread(self.context.fence, "diversion routes")
            result = await self.reconciler.reconcile(plan)
        except (EdgeAgentError, OSError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.metrics.routes_failures.inc()
            log.error(
                "route reconcile failed; routes left as they were", extra=fields(error=str(exc))
            )
            return None
        self.last, self.last_error = result, ""
        counts = result.counts()
        m = self.metrics
        m.routes_installed.set(counts["installed"])
        m.routes_foreign.set(counts["foreign"])
        if counts["repaired"] or counts["rules_repaired"]:
            m.routes_repaired.inc(counts["repaired"] + counts["rules_repaired"])
        for reason, n in plan.refused_by_reason().items():
            m.routes_refused.labels(reason=reason).set(n)
        if result.changed or counts["foreign"]:
            log.info("routes reconciled", extra=fields(**counts, dry_run=result.dry_run))
        return result

    async def hand_over(self, successor: Enforcer, state: DesiredState | None) -> None:
        """Withdraw the routes and rules the successor does not take over; it has already
        installed its own, so diversion never lapses."""
        if not self.active:
            return
        if not isinstance(successor, DiversionEnforcer):
            raise TypeError("a diversion enforcer hands over to one built by rebuild()")
        mine, theirs = self.route_settings, successor.route_settings
        if successor.active and (theirs.table, theirs.rt_proto) == (mine.table, mine.rt_proto):
            return  # the successor manages these very routes now
        # Our rules are found by their mark: the successor's stay when it has the same one.
        shared = successor.active and theirs.rt_proto == mine.rt_proto
        keep = successor.reconciler.desired_rules() if shared else ()
        try:
            await self.reconciler.withdraw(keep_rules=keep)
        except (EdgeAgentError, OSError) as exc:
            log.error("old diversion routes not withdrawn", extra=fields(error=str(exc)))
        if successor.active and state is not None:
            # Routes it left alone as foreign (same table, old mark) are its own to add now.
            await successor.publish(state)

    def status(self) -> Mapping[str, Any]:
        if not self.active:
            return {}
        return {
            "routes": {
                "last": self.last.counts() if self.last else None,
                "dry_run": self.route_settings.dry_run,
                "table": self.route_settings.table,
                "last_error": self.last_error,
            }
        }
