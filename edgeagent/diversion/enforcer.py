"""Route diversion for the daemon: policy -> addresses -> routes, kept in step.

Each pass (after a policy change and every ``routes.reconcile_interval_seconds``):

1. the hosts of ``url``/``url-prefix`` block entries are resolved through
   ``routes.resolvers`` (resolvers without the policy; otherwise they would answer with
   the proxy's own address), and so are the protected names, whose addresses are never
   diverted (a listed site can point its name at a popular third party's address);
2. :func:`~edgeagent.diversion.plan.plan_routes` applies the guardrails (protected and
   CDN ranges, minimum prefix, maximum route count);
3. :class:`~edgeagent.diversion.kernel.RouteReconciler` installs, repairs and removes routes and
   rules, and reports foreign routes. Too many routes, or a failed pass, leaves the
   installed routes as they were and counts a failure.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from edgeagent import canon
from edgeagent.config import RoutesSettings, Settings
from edgeagent.diversion.kernel import ReconcileResult, RouteReconciler
from edgeagent.diversion.plan import RouteSettings, plan_routes
from edgeagent.errors import EdgeAgentError
from edgeagent.logs import fields
from edgeagent.metrics import Metrics
from edgeagent.model import DesiredState
from edgeagent.takedown.locate import HostResolver

log = logging.getLogger("edgeagent.routes")


def route_settings(cfg: RoutesSettings) -> RouteSettings:
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


class RouteDiversion:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        protected_names: Iterable[str],
        *,
        netns: str | None = None,
    ) -> None:
        r = settings.routes
        self.route_settings = route_settings(r)
        self.resolver = HostResolver([(e.host, e.port) for e in r.resolvers])
        self.reconciler = RouteReconciler(self.route_settings, netns=netns)
        self.metrics = metrics
        self.protected_names = sorted(protected_names)
        self.last: ReconcileResult | None = None
        self.last_error = ""

    async def reconcile(self, state: DesiredState) -> ReconcileResult | None:
        """One pass; never raises (the installed routes stay on any error)."""
        try:
            hosts = diverted_hosts(state)
            answers = await self.resolver.resolve_many([*hosts, *self.protected_names])
            addresses = {h: [a.address for a in answers[h][0]] for h in hosts}
            protected = [a.address for n in self.protected_names for a in answers[n][0]]
            plan = plan_routes(addresses, self.route_settings, protected_addresses=protected)
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
        if counts["repaired"]:
            m.routes_repaired.inc(counts["repaired"])
        for reason, n in plan.refused_by_reason().items():
            m.routes_refused.labels(reason=reason).set(n)
        if result.changed or counts["foreign"]:
            log.info("routes reconciled", extra=fields(**counts, dry_run=result.dry_run))
        return result

    async def withdraw(self) -> None:
        await self.reconciler.withdraw()

    def status(self) -> dict[str, object]:
        return {
            "last": self.last.counts() if self.last else None,
            "dry_run": self.route_settings.dry_run,
            "last_error": self.last_error,
        }
