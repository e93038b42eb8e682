"""The proxy side of the daemon: index on every policy change, stop page, canary.

- :meth:`ProxyPublishing.publish` writes the hashed index for a desired state, with the
  canary URL always listed, atomically (0640, the proxy's group), after the path filter
  for Squid's eCAP prefilter (``INDEX.paths``, :mod:`edgeagent.proxy.pathfilter`). The
  Squid helper notices the new index within a second, the prefilter within 0.25 s.
- The stop page is served by the agent (``[proxy] stop_page_listen_*``); every hit counts
  ``edgeagent_stop_page_hits_total{source}`` and nothing else is kept.
- :meth:`check_canaries` fetches the canary URL through every configured proxy and sets
  ``edgeagent_proxy_canary_ok{proxy}``; it also folds the helpers' stats files
  (``helper-stats*.json`` next to the index) into the metrics.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from edgeagent import config as cfg
from edgeagent.logs import fields
from edgeagent.metrics import Metrics
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.proxy.canary import proxy_canary
from edgeagent.proxy.index import source_label, write_index
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


def stop_page_settings(settings: cfg.Settings) -> StopPageSettings:
    """The stop page's texts from config: each feed's ``authority`` names its source."""
    base = StopPageSettings(status=settings.proxy.status)
    sources = dict(base.sources)
    for name, feed in settings.feeds.items():
        if feed.authority:
            sources[source_label(name)] = StopPageSource(feed.authority)
    sources[CANARY_SOURCE] = StopPageSource("edgeagent's own canary (a test entry)")
    extra: dict[str, Any] = {"sources": sources}
    if settings.proxy.appeal_url is not None:
        extra["appeal_contact"] = str(settings.proxy.appeal_url)
    return replace(base, **extra)


class ProxyPublishing:
    def __init__(self, settings: cfg.Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.index_path = settings.proxy_index_path
        self.canary = Entry(
            Indicator.parse(Scope.URL, str(settings.proxy.canary_url)), Action.BLOCK, CANARY_SOURCE
        )
        self.published_version: int | None = None
        self.last_error = ""
        self.last_success: float | None = None
        self.canaries: dict[str, bool] = {}
        self._runner: web.AppRunner | None = None
        self._unenforceable_seen = 0
        self.stop_page_url = ""

    # -- index
    def publish(self, state: DesiredState) -> None:
        """Write the index for ``state`` (never raises: the old index stays on error)."""
        if state.version == self.published_version:
            return
        with_canary = replace(state, blocks=(*state.blocks, self.canary))
        try:
            self.index_path.parent.mkdir(parents=True, exist_ok=True)
            group = self.settings.proxy.group
            # The path filter first: a newer filter only sends more requests to the helper,
            # an older one could hide a new block until the next look (0.25 s).
            write_path_filter(with_canary, filter_path(self.index_path), group=group)
            stats = write_index(with_canary, self.index_path, group=group)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.metrics.publisher_up.labels(publisher="proxy-index").set(0)
            self.metrics.publish_failures.labels(publisher="proxy-index").inc()
            log.error("proxy index not written; the old one stays", extra=fields(error=str(exc)))
            return
        self.published_version = state.version
        self.last_error = ""
        self.last_success = time.time()
        self.metrics.publisher_up.labels(publisher="proxy-index").set(1)
        log.info(
            "proxy index written",
            extra=fields(version=state.version, digests=stats.count, bytes=stats.size_bytes),
        )

    # -- stop page
    async def start(self) -> None:
        p = self.settings.proxy
        app = create_stop_page_app(stop_page_settings(self.settings), self._hit)
        self._runner = await start_stop_page(app, p.stop_page_listen_host, p.stop_page_listen_port)
        host = p.stop_page_listen_host
        host = f"[{host}]" if ":" in host else host
        self.stop_page_url = f"http://{host}:{p.stop_page_listen_port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _hit(self, source: str) -> None:
        self.metrics.stop_page_hits.labels(source=source).inc()

    # -- verification
    def check_canaries(self) -> dict[str, bool]:
        """Blocking: fetch the canary through every proxy; update metrics."""
        url = str(self.settings.proxy.canary_url)
        results: dict[str, bool] = {}
        for ep in self.settings.proxy.proxies:
            name = f"{ep.host}:{ep.port}"
            ok = proxy_canary(ep.host, ep.port, url)
            results[name] = ok
            self.metrics.proxy_canary_ok.labels(proxy=name).set(1 if ok else 0)
        self.canaries = results
        stats = read_stats(sorted(self.index_path.parent.glob("helper-stats*.json")))
        seen = int(stats.get("https_unenforceable", 0))
        if seen > self._unenforceable_seen:
            self.metrics.proxy_https_unenforceable.inc(seen - self._unenforceable_seen)
        self._unenforceable_seen = max(seen, self._unenforceable_seen)
        return results

    def failing(self) -> list[str]:
        return sorted(name for name, ok in self.canaries.items() if not ok)

    def status(self) -> dict[str, Any]:
        return {
            "index": str(self.index_path),
            "published_version": self.published_version,
            "last_error": self.last_error,
            "last_success": self.last_success,
            "canaries": dict(self.canaries),
            "stop_page": self.stop_page_url,
        }


def stats_file_pattern(index_path: Path) -> str:
    """Where helpers write their counters: next to the index, one file per helper."""
    return str(index_path.parent / "helper-stats-%p.json")
