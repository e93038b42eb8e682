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
- The index is kept by change (:class:`~edgeagent.proxy.indexwriter.IndexModel`): a new
  policy version costs its changed entries, not a rebuild.
- IP-literal aliases (:mod:`edgeagent.proxy.aliases`), with ``[proxy] alias_resolvers``:
  a background task resolves the hosts of url-level blocks (new ones first, then each
  when its TTL runs out; at most ``alias_concurrency`` queries in flight) and never holds
  up a publish; the ``ip-aliases`` job (every 2 s) writes what it learnt as an edit of
  the index at the same policy version. Counted in ``edgeagent_proxy_ip_aliases``,
  ``edgeagent_proxy_alias_hosts_unresolved``, ``edgeagent_proxy_alias_resolutions_total``
  and ``edgeagent_proxy_alias_resolve_failures_total``; a failure keeps the last addresses,
  and a reload hands what is known to the successor.
- The edge role. With ``[proxy] signing_key_file`` the agent is a centre: it serves its
  index to edge agents as signed artefacts (:mod:`edgeagent.proxy.distribution`) and
  shows their reports in ``GET /v1/fleet``. With ``[agent] role = "edge"`` it follows a
  centre (``[edge]``, :mod:`edgeagent.proxy.follower`) and ignores its local policy; the
  canary then also checks that the helpers serve the version installed, and the result
  goes back to the centre.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from edgeagent import listeners
from edgeagent.configtypes import (
    ConfigModel,
    Endpoint,
    EnvName,
    HttpUrl,
    InputFile,
    InputPath,
    Items,
    ListenHost,
    ListenPort,
    Name,
    OutputPath,
    SecretFile,
    one_secret,
    read_secret,
)
from edgeagent.drift import WrittenFiles
from edgeagent.enforcement.base import (
    EdgeFeed,
    Enforced,
    Enforcer,
    EnforcerConfig,
    EnforcerContext,
    FeedFacts,
    FleetMember,
    PeriodicJob,
)
from edgeagent.errors import ConfigError, ConfigProblem
from edgeagent.logs import fields
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.plugins import own_config
from edgeagent.proxy.aliases import AliasBook, resolved_of
from edgeagent.proxy.artefact import load_private_key, load_public_key
from edgeagent.proxy.canary import CANARY_SOURCE, canary_version
from edgeagent.proxy.distribution import IndexPublication
from edgeagent.proxy.follower import FollowSettings, IndexFollower
from edgeagent.proxy.index import source_label
from edgeagent.proxy.indexwriter import (
    IndexModel,
    assembled,
    index_digest,
    index_file_digest,
    install_index,
    needs_layout,
    splice_edit,
    stats_of,
)
from edgeagent.proxy.pathfilter import PathFilterModel, filter_path, write_path_filter
from edgeagent.proxy.squid_helper import read_stats
from edgeagent.proxy.stoppage import (
    StopPageSettings,
    StopPageSource,
    create_stop_page_app,
    start_stop_page,
)
from edgeagent.takedown.locate import HostResolver

log = logging.getLogger("edgeagent.proxy")
INDEX_FILE_NAME = "proxy-index.bin"  # under the state directory unless index_path is set
# Each Squid helper's counters, beside the index (``%p``: the helper's pid).
HELPER_STATS_FILE_NAME = "helper-stats-%p.json"
PUBLISHER_LABEL = "proxy-index"  # its name in metrics and /v1/status
ALIAS_BATCH = 1024  # hosts resolved per round of the alias task
ALIAS_TICK_SECONDS = 2.0  # how often learnt aliases are written, and due hosts looked for


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

    def artefacts_dir(self, state_dir: Path) -> Path:
        """Where the files Squid's helpers read live (the index, its path filter, the
        appeal key): the index's directory, the state directory by default. The shipped
        unit's state directory is 0700, so a deployed proxy sets ``index_path`` under the
        shared setgid-proxy directory tmpfiles.d creates."""
        return self.index_path_in(state_dir).parent

    def index_path_in(self, state_dir: Path) -> Path:
        return self.index_path or state_dir / INDEX_FILE_NAME

    help_url: HttpUrl | None = None
    templates_dir: InputPath | None = None
    # Ed25519 private key (PEM): serve the index to edge agents (GET /v1/policy/index).
    signing_key_file: SecretFile | None = None
    # Resolvers WITHOUT the blocking policy: each address of a host with url/url-prefix
    # blocks lists http://<address>/<same path> too (edgeagent.proxy.aliases). None: off.
    alias_resolvers: Items[Endpoint] = ()
    alias_min_ttl_seconds: Annotated[int, Field(ge=1)] = 60
    alias_max_ttl_seconds: Annotated[int, Field(ge=1)] = 3600
    alias_concurrency: Annotated[int, Field(ge=1, le=1024)] = 64

    @model_validator(mode="after")
    def _alias_ttls(self) -> Self:
        if self.alias_min_ttl_seconds > self.alias_max_ttl_seconds:
            raise ValueError("alias_min_ttl_seconds is above alias_max_ttl_seconds")
        return self


class EdgeConfig(ConfigModel):
    """``[edge]``: the centre an edge agent (``[agent] role = "edge"``) follows."""

    central_url: HttpUrl | None = None
    name: Name | None = None  # this edge in the centre's GET /v1/fleet
    public_key_file: InputFile | None = None  # the centre's Ed25519 public key (PEM)
    token_file: SecretFile | None = None  # an API token of the centre (role noc)
    token_env: EnvName | None = None
    wait_seconds: Annotated[int, Field(ge=1, le=300)] = 30  # long-poll length

    @model_validator(mode="after")
    def _one_token(self) -> Self:
        one_secret(self, "token", required=False)
        return self


class ProxyEnforcerConfig(EnforcerConfig):
    """The proxy enforcer's sections: ``[proxy]`` and ``[edge]``."""

    proxy: ProxyConfig = ProxyConfig()
    edge: EdgeConfig = EdgeConfig()

    def role_checks(self, role: str) -> list[ConfigProblem]:
        if role != "edge":
            return []
        e = self.edge
        problems = [
            ConfigProblem(f"edge.{key}", 'required with [agent] role = "edge"')
            for key, value in (
                ("central_url", e.central_url),
                ("name", e.name),
                ("public_key_file", e.public_key_file),
            )
            if value is None
        ]
        if e.token_file is None and e.token_env is None:
            problems.append(
                ConfigProblem(
                    "edge.token_file",
                    'token_file or token_env is required with [agent] role = "edge"',
                )
            )
        if not self.proxy.enabled:
            problems.append(
                ConfigProblem("proxy.enabled", 'must be true with [agent] role = "edge"')
            )
        return problems

    def reserved_names(self) -> set[str]:
        # The proxy canary's host: an allow of it would make the proxy canary fail.
        if not self.proxy.enabled:
            return set()
        host = Indicator.parse(Scope.URL, self.proxy.canary_url).host or ""
        return {host} if host and not _is_ip_literal(host) else set()

    def summary_lines(self) -> list[str]:
        p = self.proxy
        on = f"on, stop page {p.status}, fail-{p.fail_mode}" if p.enabled else "off"
        if p.enabled and p.signing_key_file is not None:
            on += ", serves edges"
        if p.enabled and p.alias_resolvers:
            on += ", IP-literal aliases"
        lines = [f"proxy       {on}"]
        if self.edge.central_url is not None:
            lines.append(f"edge        {self.edge.name} follows {self.edge.central_url}")
        return lines


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
    """Writes the proxy index, serves the stop page, fetches the canary through proxies;
    serves edges (centre) or follows a centre (edge)."""

    KIND = "proxy"
    Config = ProxyEnforcerConfig

    def __init__(self, config: ProxyEnforcerConfig, context: EnforcerContext) -> None:
        super().__init__(config, context)
        self.proxy = config.proxy
        self.metrics = context.metrics
        self.index_path = self.proxy.index_path_in(context.state_dir)
        self.canary = Entry(
            Indicator.parse(Scope.URL, str(self.proxy.canary_url)), Action.BLOCK, CANARY_SOURCE
        )
        self.published_version: int | None = None
        self.published_state: DesiredState | None = None
        self.model: IndexModel | None = None
        self.paths: PathFilterModel | None = None  # the path filter, kept by change
        self.index_data: bytes | bytearray = b""  # the index file as last written
        self.written = WrittenFiles()
        self.last_error = ""
        self.last_success: float | None = None
        self.canaries: dict[str, bool] = {}
        self.canaries_at: float | None = None  # Unix time of the last canary check
        self._listener: listeners.Listener | None = None
        self._unenforceable_seen = 0
        self.stop_page_url = ""
        self.publication: IndexPublication | None = None
        if self.proxy.enabled and self.proxy.signing_key_file is not None:
            self.publication = IndexPublication(load_private_key(self.proxy.signing_key_file))
        self.follower: IndexFollower | None = None
        self._follow_task: asyncio.Task[None] | None = None
        if self.proxy.enabled and context.role == "edge":
            self.follower = _follower(config.edge, self.index_path, self.proxy, context)
        self.aliases: AliasBook | None = None
        self.alias_resolver: HostResolver | None = None
        if self.proxy.enabled and self.proxy.alias_resolvers and self.follower is None:
            p = self.proxy
            self.aliases = AliasBook(
                min_ttl=p.alias_min_ttl_seconds,
                max_ttl=p.alias_max_ttl_seconds,
                retry_seconds=p.alias_min_ttl_seconds,
            )
            self.alias_resolver = HostResolver(
                [(e.host, e.port) for e in p.alias_resolvers], concurrency=p.alias_concurrency
            )
        self._alias_wake = asyncio.Event()
        self._alias_task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: EnforcerConfig, context: EnforcerContext) -> Self:
        return cls(own_config(config, ProxyEnforcerConfig), context)

    @property
    def active(self) -> bool:
        return self.proxy.enabled

    def inputs(self, context: EnforcerContext) -> object:
        authorities = {name: f.authority for name, f in context.feeds.items() if f.authority}
        return context.state_dir, authorities, context.role

    def edge_feed(self) -> EdgeFeed | None:
        return self.publication

    # -- index
    async def publish(self, state: DesiredState) -> Enforced:
        if self.follower is not None:  # an edge enforces the centre's index, not its own
            return Enforced(self.KIND, state.version, True, "edge: follows the centre")
        ok = await asyncio.to_thread(self.write_index, state)
        if ok and self.publication is not None:
            self.publication.announce()
        if self.aliases is not None:
            self._alias_wake.set()  # resolve the new hosts now
        return Enforced(self.KIND, state.version, ok, "" if ok else self.last_error)

    def write_index(self, state: DesiredState) -> bool:
        """Write the index for ``state`` (never raises: the old index stays on error)."""
        if state.version == self.published_version:
            return True
        if self.aliases is not None:
            self.aliases.track(state.blocks)
        if not self._install(state, paths=True):
            return False
        self.published_state = state
        return True

    def write_aliases(self) -> bool:
        """Blocking: write the alias changes learnt since the last write, as an edit at
        the same policy version (never raises: the old index stays on error)."""
        state = self.published_state
        if self.aliases is None or state is None:
            return True
        if self.model is not None and not self.aliases.pending():
            return True  # nothing learnt (after a failed write the index is built whole)
        return self._install(state, paths=False)

    def _install(self, state: DesiredState, *, paths: bool) -> bool:
        """Write the index (and, with ``paths``, the path filter first) for ``state``,
        the canary included (kept by the models, never added to a copy of the state)."""
        try:
            self.index_path.parent.mkdir(parents=True, exist_ok=True)
            group = self.proxy.group
            if paths:
                # The path filter first: a newer filter only sends more requests to the
                # helper, an older one could hide a new block until the next look (0.25 s).
                # Aliases have the paths of their entries: they need no filter of their own.
                if self.paths is None:
                    self.paths = PathFilterModel.of(state, extra=(self.canary,))
                else:
                    self.paths.change(state)
                write_path_filter(self.paths, filter_path(self.index_path), group=group)
            data = self._next_index(state)
            install_index(
                data, self.index_path, group=group, body_hashed=True, fence=self.context.fence
            )
            self._record_written(data)
        except Exception as exc:
            self.model = self.paths = None  # start again from a whole build
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.metrics.publisher_up.labels(publisher=PUBLISHER_LABEL).set(0)
            self.metrics.publish_failures.labels(publisher=PUBLISHER_LABEL).inc()
            log.error("proxy index not written; the old one stays", extra=fields(error=str(exc)))
            return False
        self.index_data = data
        self.published_version = state.version
        self.last_error = ""
        self.last_success = time.time()
        self.metrics.publisher_up.labels(publisher=PUBLISHER_LABEL).set(1)
        self.metrics.proxy_index_version.labels(where="installed").set(state.version)
        stats = stats_of(data, self.index_path)
        log.info(
            "proxy index written",
            extra=fields(version=state.version, digests=stats.count, bytes=stats.size_bytes),
        )
        if self.aliases is not None:
            self.metrics.proxy_ip_aliases.set(self.aliases.counts().aliases)
        return True

    # -- IP-literal aliases
    async def resolve_aliases(self) -> int:
        """One round: resolve the hosts due (at most :data:`ALIAS_BATCH`) and learn the
        answers; the number of hosts asked. Never raises for a resolver's failure."""
        book, resolver = self.aliases, self.alias_resolver
        if book is None or resolver is None:
            return 0
        hosts = await asyncio.to_thread(book.due, time.monotonic(), ALIAS_BATCH)
        if not hosts:
            return 0
        results = await resolver.resolve_many(hosts)
        answers = {
            host: resolved_of(((a.address, a.ttl) for a in found), error)
            for host, (found, error) in results.items()
        }
        before = book.failures
        await asyncio.to_thread(book.learn, answers, time.monotonic())
        failed = book.failures - before
        counts = book.counts()
        self.metrics.proxy_alias_resolutions.inc(len(hosts))
        self.metrics.proxy_alias_hosts_unresolved.set(counts.unresolved)
        if failed:
            self.metrics.proxy_alias_resolve_failures.inc(failed)
            log.warning(
                "IP-literal aliases: hosts not resolved; their last addresses stay",
                extra=fields(failed=failed, asked=len(hosts)),
            )
        return len(hosts)

    async def apply_aliases(self) -> None:
        """The ``ip-aliases`` job: write what the resolution learnt, if anything."""
        if self.aliases is None:
            return
        ok = await asyncio.to_thread(self.write_aliases)
        if ok and self.publication is not None:
            self.publication.announce()

    async def _resolve_aliases_forever(self) -> None:
        while True:
            try:
                asked = await self.resolve_aliases()
            except Exception as exc:  # the task must outlive any one round (no socket, ...)
                log.error(
                    "IP-literal aliases: resolution failed",
                    extra=fields(error=type(exc).__name__),
                )
                asked = 0
            if asked < ALIAS_BATCH:
                # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancel that
                # arrives as the event is set, and close() would wait for ever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(ALIAS_TICK_SECONDS):
                        await self._alias_wake.wait()
                self._alias_wake.clear()

    def _next_index(self, state: DesiredState) -> bytes | bytearray:
        """The index for ``state``: by change from the last one, or whole when there is
        none yet or the layout no longer fits the count."""
        model = self.model
        book = self.aliases
        if model is not None and model.state is not None and self.index_data:
            edit = model.change(state, book.take() if book is not None else ((), ()))
            data = assembled(splice_edit(self.index_data, edit))
            if not needs_layout(data):
                if self.publication is not None:
                    self.publication.advance(edit, bytes(data))
                return data
        aliases = book.current() if book is not None else ()
        model = self.model = IndexModel.of(state, aliases=aliases, extra=(self.canary,))
        whole = model.render()
        if self.publication is not None:
            self.publication.replace(whole, state.version)
        return whole

    # -- stop page, following
    async def start(self) -> None:
        p = self.proxy
        app = create_stop_page_app(stop_page_settings(p, self.context.feeds), self._hit)
        self._listener = await start_stop_page(
            app, p.stop_page_listen_host, p.stop_page_listen_port, self.context.limits
        )
        host = p.stop_page_listen_host
        host = f"[{host}]" if ":" in host else host
        self.stop_page_url = f"http://{host}:{p.stop_page_listen_port}"
        if self.follower is not None:
            self._follow_task = asyncio.create_task(self.follower.run(), name="edge-follow")
        if self.aliases is not None:
            self._alias_task = asyncio.create_task(
                self._resolve_aliases_forever(), name="proxy-aliases"
            )

    async def close(self) -> None:
        for task in (self._follow_task, self._alias_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._follow_task = self._alias_task = None
        if self.follower is not None:
            await self.follower.close()
        if self._listener is not None:
            await listeners.stop(self._listener)
            self._listener = None

    def rebuild(self, config: EnforcerConfig, context: EnforcerContext) -> Enforcer:
        successor = ProxyEnforcer(own_config(config, ProxyEnforcerConfig), context)
        book, new = self.aliases, successor.aliases
        if book is not None and new is not None:
            # What the hosts resolved to carries over, under the new TTL bounds: the
            # successor's first index keeps every alias instead of waiting for DNS.
            book.min_ttl, book.max_ttl = new.min_ttl, new.max_ttl
            book.retry_seconds = new.retry_seconds
            successor.aliases = book
        return successor

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
        results = await asyncio.to_thread(self.check_canaries)
        if self.follower is not None:
            await self.follower.report(all(results.values()) if results else None)
        return self.readiness()

    def readiness(self) -> tuple[str, ...]:
        unchecked = sorted({_proxy_label(ep) for ep in self.proxy.proxies} - set(self.canaries))
        no_index = self.follower is not None and self.follower.state.version < 0
        return (
            *(f"proxy canary failing at {name}" for name in self.failing()),
            *(f"proxy canary not yet checked at {name}" for name in unchecked),
            *(["edge: no index from the centre yet"] if no_index else []),
        )

    def periodic(self) -> tuple[PeriodicJob, ...]:
        verify = PeriodicJob("verify", self.proxy.verify_interval_seconds, self.verify)
        if self.aliases is None:
            return (verify,)
        return (verify, PeriodicJob("ip-aliases", ALIAS_TICK_SECONDS, self.apply_aliases))

    def repair_drift(self) -> bool:
        """Blocking: write the index again if it was changed behind the agent's back."""
        if self.follower is not None or not self.index_data or not self.written.drifted():
            return False
        log.warning("proxy index changed behind the agent; writing it again")
        self.metrics.drift_repairs.labels(artefact=PUBLISHER_LABEL).inc()
        state = self.published_state
        try:
            if state is not None:
                paths = self.paths
                if paths is None or paths.state.version != state.version:
                    paths = PathFilterModel.of(state, extra=(self.canary,))
                write_path_filter(paths, filter_path(self.index_path), group=self.proxy.group)
            install_index(
                self.index_data,
                self.index_path,
                group=self.proxy.group,
                body_hashed=True,
                fence=self.context.fence,
            )
        except Exception as exc:
            log.error("proxy index not repaired", extra=fields(error=str(exc)))
            return False
        self._record_written(self.index_data)
        return True

    def _record_written(self, data: bytes | bytearray) -> None:
        """Remember the files just written, for :meth:`repair_drift`: the index by the
        digest of ``data`` (reading 40 MB back and hashing it again would cost as much as
        the verify that checks it later)."""
        self.written.record(filter_path(self.index_path))
        self.written.record_as(self.index_path, index_digest(data), index_file_digest)

    def expected_version(self) -> int | None:
        """The version the helpers must serve: installed here (edge) or published."""
        if self.follower is not None:
            v = self.follower.state.version
            return v if v >= 0 else None
        return self.published_version

    def check_canaries(self) -> dict[str, bool]:
        """Blocking: fetch the canary through every proxy; it must be refused by the index
        of the expected version (the helpers reload within a second: asked up to three
        times). Updates metrics."""
        url = str(self.proxy.canary_url)
        want = self.expected_version()
        results: dict[str, bool] = {}
        for ep in self.proxy.proxies:
            name = _proxy_label(ep)
            for attempt in range(3):
                refused, seen = canary_version(ep.host, ep.port, url)
                ok = refused and (want is None or seen is None or seen == want)
                if ok or not refused or attempt == 2:
                    break
                time.sleep(0.7)
            results[name] = ok
            self.metrics.proxy_canary_ok.labels(proxy=name).set(1 if ok else 0)
        self.canaries, self.canaries_at = results, time.time()
        stats_files = self.index_path.parent.glob(HELPER_STATS_FILE_NAME.replace("%p", "*"))
        stats = read_stats(sorted(stats_files))
        if stats.get("policy_version", -1) >= 0:
            self.metrics.proxy_index_version.labels(where="helpers").set(stats["policy_version"])
        seen_unenforceable = int(stats.get("https_unenforceable", 0))
        if seen_unenforceable > self._unenforceable_seen:
            self.metrics.proxy_https_unenforceable.inc(
                seen_unenforceable - self._unenforceable_seen
            )
        self._unenforceable_seen = max(seen_unenforceable, self._unenforceable_seen)
        return results

    def fleet(self) -> tuple[FleetMember, ...]:
        want = self.expected_version()
        proxies = tuple(
            FleetMember(
                name=_proxy_label(ep),
                enforcer=self.KIND,
                kind="proxy",
                confirmed=want if self.canaries.get(_proxy_label(ep)) else None,
                canary_ok=self.canaries.get(_proxy_label(ep)),
                checked_at=self.canaries_at if _proxy_label(ep) in self.canaries else None,
            )
            for ep in self.proxy.proxies
        )
        edges = self.publication.members() if self.publication is not None else ()
        return (*proxies, *edges)

    def failing(self) -> list[str]:
        return sorted(name for name, ok in self.canaries.items() if not ok)

    def status(self) -> Mapping[str, Any]:
        if not self.active:
            return {}
        out: dict[str, Any] = {
            "index": str(self.index_path),
            "published_version": self.published_version,
            "last_error": self.last_error,
            "last_success": self.last_success,
            "canaries": dict(self.canaries),
            "stop_page": self.stop_page_url,
            "status": self.proxy.status,
        }
        if self.publication is not None:
            out["edges"] = len(self.publication.reports)
        if self.aliases is not None:
            counts = self.aliases.counts()
            out["ip_aliases"] = {
                "hosts": counts.hosts,
                "unresolved": counts.unresolved,
                "addresses": counts.addresses,
                "aliases": counts.aliases,
                "resolve_failures": self.aliases.failures,
            }
        if self.follower is not None:
            st = self.follower.state
            out.update(
                published_version=st.version if st.version >= 0 else None,
                last_error=st.last_error,
                last_success=st.last_install,
                centre=self.follower.settings.central_url,
                last_contact=st.last_contact,
                refused=st.refused,
            )
        return {PUBLISHER_LABEL: out}


def _follower(
    edge: EdgeConfig, index_path: Path, proxy: ProxyConfig, context: EnforcerContext
) -> IndexFollower:
    if edge.central_url is None or edge.public_key_file is None or edge.name is None:
        raise ConfigError("edge", [ConfigProblem("edge.central_url", "edge role without [edge]")])
    settings = FollowSettings(
        central_url=edge.central_url,
        token=read_secret(edge.token_file, edge.token_env),
        public_key=load_public_key(edge.public_key_file),
        name=edge.name,
        wait_seconds=edge.wait_seconds,
    )
    return IndexFollower(settings, index_path, context.metrics, group=proxy.group)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _proxy_label(ep: Endpoint) -> str:
    return f"{ep.host}:{ep.port}"
