"""The proxy enforcer: index on every policy change, stop page, canary.

Owns the ``[proxy]`` config section (:class:`ProxyConfig`); active when ``enabled``.

- :meth:`ProxyEnforcer.publish` writes the hashed index for a desired state, with the
  canary URL always listed, atomically (0640, the proxy's group), after the path filter
  for Squid's eCAP prefilter (``INDEX.paths``, :mod:`edgeagent.proxy.pathfilter`). The
  Squid helper notices the new index within a second, the prefilter within 0.25 s.
- The stop page is served by the agent (``[proxy] stop_page_listen_*``); every hit counts
  ``edgeagent_stop_page_hits_total{source}`` and nothing else is kept.
- :meth:`ProxyEnforcer.verify` (every ``proxy.verify_interval_seconds``) fetches the
  canary URL through every configured proxy and sets ``edgeagent_proxy_canary_ok{proxy}``;
  it also folds the helpers' stats files (``helper-stats*.json`` next to the index) into
  the metrics. Before that, an index or path filter changed behind the agent's back
  (its digest differs from what was written) is written again from the last state, and
  ``edgeagent_drift_repairs_total{artefact="proxy-index"}`` counts it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal, Self

from pydantic import Field

from edgeagent import listeners
from edgeagent.configtypes import (
    ConfigModel,
    Endpoint,
    HttpUrl,
    InputPath,
    Items,
    ListenHost,
    ListenPort,
    OutputPath,
)
from edgeagent.drift import WrittenFiles
from edgeagent.enforcement.base import (
    Enforced,
    Enforcer,
    EnforcerConfig,
    EnforcerContext,
    FeedFacts,
    FleetMember,
    PeriodicJob,
)
from edgeagent.logs import fields
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.plugins import own_config
from edgeagent.proxy.canary import proxy_canary
from edgeagent.proxy.index import source_label
from edgeagent.proxy.indexwriter import write_index
from edgeagent.proxy.pathfilter import filter_path, write_path_filter
from edgeagent.proxy.squid_helper import read_stats
from edgeagent.proxy.stoppage import (
    StopPageSettings,
    StopPageSource,
    create_stop_page_app,
    start_stop_page,
)

log = logging.getLogger("edgeagent.proxy")
CANARY_SOURCE = "canary"
INDEX_FILE_NAME = "proxy-index.bin"  # under the state directory unless index_path is set
PUBLISHER_LABEL = "proxy-index"  # its name in metrics and /v1/status


class ProxyConfig(ConfigModel):
    """``[proxy]``: hashed index for the Squid helper, stop page, proxy canary."""

    enabled: bool = False
    index_path: OutputPath | None = None  # None: <state_dir>/proxy-index.bin
    group: str | None = None
    stop_page_listen_host: ListenHost = "127.0.0.1"
    stop_page_listen_port: ListenPort = 8641
    status: Literal[451, 403] = 451
    fail_mode: Literal["open", "closed"] = "open"
    canary_url: HttpUrl = "http://canary.edgeagent.example/edgeagent-canary"
    proxies: Items[Endpoint] = ()
    verify_interval_seconds: Annotated[int, Field(ge=5)] = 60
    appeal_url: HttpUrl | None = None
    help_url: HttpUrl | None = None
    templates_dir: InputPath | None = None


class ProxyEnforcerConfig(EnforcerConfig):
    """The proxy enforcer's section: ``[proxy]``."""

    proxy: ProxyConfig = ProxyConfig()

    def reserved_names(self) -> set[str]:
        # The proxy canary's host: an allow of it would make the proxy canary fail.
        if not self.proxy.enabled:
            return set()
        host = Indicator.parse(Scope.URL, self.proxy.canary_url).host or ""
        return {host} if host and not _is_ip_literal(host) else set()

    def summary_lines(self) -> list[str]:
        p = self.proxy
        on = f"on, stop page {p.status}, fail-{p.fail_mode}" if p.enabled else "off"
        return [f"proxy       {on}"]


def stop_page_settings(proxy: ProxyConfig, feeds: Mapping[str, FeedFacts]) -> StopPageSettings:
    """The stop page's texts from config: each feed's ``authority`` names its source."""
    base = StopPageSettings(status=proxy.status)
    sources = dict(base.sources)
    for name, feed in feeds.items():
        if feed.authority:
            sources[source_label(name)] = StopPageSource(feed.authority)
    sources[CANARY_SOURCE] = StopPageSource("edgeagent's own canary (a test entry)")
    extra: dict[str, Any] = {"sources": sources}
    if proxy.appeal_url is not None:
        extra["appeal_contact"] = str(proxy.appeal_url)
    return replace(base, **extra)


class ProxyEnforcer(Enforcer):
    """Writes the proxy index, serves the stop page, fetches the canary through proxies."""

    KIND = "proxy"
    Config = ProxyEnforcerConfig

    def __init__(self, config: ProxyEnforcerConfig, context: EnforcerContext) -> None:
        super().__init__(config, context)
        self.proxy = config.proxy
        self.metrics = context.metrics
        self.index_path = self.proxy.index_path or context.state_dir / INDEX_FILE_NAME
        self.canary = Entry(
            Indicator.parse(Scope.URL, str(self.proxy.canary_url)), Action.BLOCK, CANARY_SOURCE
        )
        self.published_version: int | None = None
        self.published_state: DesiredState | None = None
        self.written = WrittenFiles()
        self.last_error = ""
        self.last_success: float | None = None
        self.canaries: dict[str, bool] = {}
        self.canaries_at: float | None = None  # Unix time of the last canary check
        self._listener: listeners.Listener | None = None
        self._unenforceable_seen = 0
        self.stop_page_url = ""

    @classmethod
    def from_config(cls, config: EnforcerConfig, context: EnforcerContext) -> Self:
        return cls(own_config(config, ProxyEnforcerConfig), context)

    @property
    def active(self) -> bool:
        return self.proxy.enabled

    def inputs(self, context: EnforcerContext) -> object:
        authorities = {name: f.authority for name, f in context.feeds.items() if f.authority}
        return context.state_dir, authorities

    # -- index
    async def publish(self, state: DesiredState) -> Enforced:
        ok = await asyncio.to_thread(self.write_index, state)
        return Enforced(self.KIND, state.version, ok, "" if ok else self.last_error)

    def write_index(self, state: DesiredState) -> bool:
        """Write the index for ``state`` (never raises: the old index stays on error)."""
        if state.version == self.published_version:
            return True
        with_canary = replace(state, blocks=(*state.blocks, self.canary))
        try:
            self.index_path.parent.mkdir(parents=True, exist_ok=True)
            group = self.proxy.group
            # The path filter first: a newer filter only sends more requests to the helper,
            # an older one could hide a new block until the next look (0.25 s).
            write_path_filter(with_canary, filter_path(self.index_path), group=group)
            stats = write_index(with_canary, self.index_path, group=group)
            self.written.record(filter_path(self.index_path), self.index_path)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.metrics.publisher_up.labels(publisher=PUBLISHER_LABEL).set(0)
            self.metrics.publish_failures.labels(publisher=PUBLISHER_LABEL).inc()
            log.error("proxy index not written; the old one stays", extra=fields(error=str(exc)))
            return False
        self.published_version = state.version
        self.published_state = state
        self.last_error = ""
        self.last_success = time.time()
        self.metrics.publisher_up.labels(publisher=PUBLISHER_LABEL).set(1)
        log.info(
            "proxy index written",
            extra=fields(version=state.version, digests=stats.count, bytes=stats.size_bytes),
        )
        return True

    # -- stop page
    async def start(self) -> None:
        p = self.proxy
        app = create_stop_page_app(stop_page_settings(p, self.context.feeds), self._hit)
        self._listener = await start_stop_page(
            app, p.stop_page_listen_host, p.stop_page_listen_port, self.context.limits
        )
        host = p.stop_page_listen_host
        host = f"[{host}]" if ":" in host else host
        self.stop_page_url = f"http://{host}:{p.stop_page_listen_port}"

    async def close(self) -> None:
        if self._listener is not None:
            await listeners.stop(self._listener)
            self._listener = None

    async def hand_over(self, successor: Enforcer, state: DesiredState | None) -> None:
        await self.close()
        kept_config = own_config(successor.config, ProxyEnforcerConfig)
        kept = {_proxy_label(ep) for ep in kept_config.proxy.proxies}
        for ep in self.proxy.proxies:
            if _proxy_label(ep) not in kept:
                self.metrics.forget_proxy(_proxy_label(ep))

    def _hit(self, source: str) -> None:
        self.metrics.stop_page_hits.labels(source=source).inc()

    # -- verification
    async def verify(self) -> tuple[str, ...]:
        await asyncio.to_thread(self.repair_drift)
        await asyncio.to_thread(self.check_canaries)
        return self.readiness()

    def readiness(self) -> tuple[str, ...]:
        unchecked = sorted({_proxy_label(ep) for ep in self.proxy.proxies} - set(self.canaries))
        return (
            *(f"proxy canary failing at {name}" for name in self.failing()),
            *(f"proxy canary not yet checked at {name}" for name in unchecked),
        )

    def periodic(self) -> tuple[PeriodicJob, ...]:
        return (PeriodicJob("verify", self.proxy.verify_interval_seconds, self.verify),)

    def repair_drift(self) -> bool:
        """Blocking: write the index again if it was changed behind the agent's back."""
        state = self.published_state
        if state is None or not self.written.drifted():
            return False
        log.warning("proxy index changed behind the agent; writing it again")
        self.metrics.drift_repairs.labels(artefact=PUBLISHER_LABEL).inc()
        self.published_version = None
        return self.write_index(state)

    def check_canaries(self) -> dict[str, bool]:
        """Blocking: fetch the canary through every proxy; update metrics."""
        url = str(self.proxy.canary_url)
        results: dict[str, bool] = {}
        for ep in self.proxy.proxies:
            name = _proxy_label(ep)
            ok = proxy_canary(ep.host, ep.port, url)
            results[name] = ok
            self.metrics.proxy_canary_ok.labels(proxy=name).set(1 if ok else 0)
        self.canaries, self.canaries_at = results, time.time()
        stats = read_stats(sorted(self.index_path.parent.glob("helper-stats*.json")))
        seen = int(stats.get("https_unenforceable", 0))
        if seen > self._unenforceable_seen:
            self.metrics.proxy_https_unenforceable.inc(seen - self._unenforceable_seen)
        self._unenforceable_seen = max(seen, self._unenforceable_seen)
        return results

    def fleet(self) -> tuple[FleetMember, ...]:
        # The canary proves blocking through each proxy, not which index version it holds.
        return tuple(
            FleetMember(
                name=_proxy_label(ep),
                enforcer=self.KIND,
                kind="proxy",
                canary_ok=self.canaries.get(_proxy_label(ep)),
                checked_at=self.canaries_at if _proxy_label(ep) in self.canaries else None,
            )
            for ep in self.proxy.proxies
        )

    def failing(self) -> list[str]:
        return sorted(name for name, ok in self.canaries.items() if not ok)

    def status(self) -> Mapping[str, Any]:
        if not self.active:
            return {}
        return {
            PUBLISHER_LABEL: {
                "index": str(self.index_path),
                "published_version": self.published_version,
                "last_error": self.last_error,
                "last_success": self.last_success,
                "canaries": dict(self.canaries),
                "stop_page": self.stop_page_url,
                "status": self.proxy.status,
            }
        }


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _proxy_label(ep: Endpoint) -> str:
    return f"{ep.host}:{ep.port}"
