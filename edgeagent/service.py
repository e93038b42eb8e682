"""The daemon: one asyncio process with the API, the scheduler and the enforcers.

``Agent`` composes the long-lived parts from validated ``Settings`` (store, guardrails,
policy engine, decision lifecycle, metrics, one enforcer per kind in
:mod:`edgeagent.enforcement.kinds`); the CLI uses it too, for one-shot commands.
``Daemon`` runs an ``Agent``: listeners, scheduled jobs, systemd notifications and
signals:

- ``READY=1`` once the policy is loaded and the API listens;
- ``WATCHDOG=1`` from the event loop at half of ``$WATCHDOG_USEC`` (a stalled loop stops
  the pings, and systemd restarts us);
- ``SIGHUP``: ``RELOADING=1``, the config is read and validated again; on any error the
  old settings stay and the error is logged. Feeds take effect at once: a removed feed
  stops counting and its metric series go, a new or changed feed is (re)scheduled and
  synced. Each enforcer is rebuilt from its changed sections without a gap in
  enforcement. Every other key needs a restart: the log line "config reloaded" and
  ``/v1/status`` (``reload``) name what was applied and what needs a restart
  (:mod:`edgeagent.reloading`);
- ``SIGTERM``/``SIGINT``: stop accepting, drain in-flight requests, stop jobs, close the
  store, ``STOPPING=1``.

Leadership (:mod:`edgeagent.leadership`): every agent serves the API and keeps its policy
current; only the leader publishes, verifies, syncs feeds, expires decisions and runs the
takedown scheduler. The scheduler runs only while this agent leads (paused otherwise);
becoming leader publishes the current policy at once and syncs every feed; losing it
pauses the scheduler and stops the work under way at once (whatever still tries to write
is refused by the fence). With the embedded store the agent always leads, and the order
of startup is as before (publish and verify before ``READY=1``).

The daemon names no enforcer: it starts the active ones, hands each policy version to all
of them at once, schedules the periodic work they declare, and asks them for readiness
and status (the contract is :mod:`edgeagent.enforcement.base`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from edgeagent import diskspace, logs, reloading
from edgeagent.bulk import set_pace
from edgeagent.config import Settings, load_config
from edgeagent.connlimits import raise_open_files_limit
from edgeagent.deadline_clock import MARK_SECONDS, DeadlineClock, boot_id
from edgeagent.decisions import DecisionService
from edgeagent.enforcement.base import EnforcerContext, SerialRecord, owned_sections
from edgeagent.enforcement.kinds import ENFORCERS
from edgeagent.enforcement.running import Enforcers
from edgeagent.engine import PolicyEngine, PolicySnapshot
from edgeagent.errors import ConfigError, ConfigProblem, EdgeAgentError, Fenced
from edgeagent.expiry import ExpiryTimer
from edgeagent.feeds.base import FeedSpec
from edgeagent.feeds.runner import FeedRunner, feed_specs
from edgeagent.guard import ChangeLimits, Guard, ProtectedNames, PublicSuffixes
from edgeagent.intake.triage import Triage
from edgeagent.leadership import Leadership
from edgeagent.logs import fields
from edgeagent.metrics import Metrics
from edgeagent.model import NoticeSource
from edgeagent.overrides import ExternalLists
from edgeagent.periodic import PeriodicJobs
from edgeagent.reloading import ReloadReport
from edgeagent.sdnotify import SystemdNotifier, watchdog_interval
from edgeagent.store import open_leadership, open_store, open_ticket_store
from edgeagent.store.base import DatabaseStatus, Store
from edgeagent.takedown.cases import CaseCollector, CaseOrigin
from edgeagent.takedown.segment import load_route_reader
from edgeagent.takedown.service import TakedownService

log = logging.getLogger("edgeagent.service")
# How often the store's policy version is compared with the enforced one (changes made
# by another process, e.g. `edgeagent feed approve`, announce themselves no other way).
POLICY_POLL_SECONDS = 5
ROLE_EXPORT_SECONDS = 2  # how often the leadership gauges are refreshed
# How often the leader sends the notices other processes recorded as owed (the CLI, an
# agent that does not lead): the NTD desk waits for them.
OWED_NOTICE_SECONDS = 3
DATABASE_CHECK_SECONDS = 2.0
"""How often the store's database is checked (``/readyz``, ``/v1/status``, metrics)."""
DATABASE_CHECK_TIMEOUT = 2.0
REBUILD_SPACING_SECONDS = (0.25, 2.0)
"""Least and most time from one policy rebuild's start to the next one's (a burst of
decisions is enforced in batches, not one rebuild each); in between, a multiple of the
last rebuild's duration (:data:`REBUILD_DUTY`). A change after a quiet spell is rebuilt
at once, and so is an expiry (it must not wait for a batch)."""
REBUILD_DUTY = 0.2
"""The share of the time rebuilds and publishes may take under a stream of changes."""
GIL_SWITCH_SECONDS = 0.001
"""How long a thread may keep the GIL from one that waits for it (CPython: 5 ms)."""
BULK_SHARE = 0.5
"""The share of the time million-entry work (a feed generation's parse, plan, store,
policy update and index) may take in the daemon while API requests are in flight: it
pauses between chunks for the rest, so the API keeps answering; with none in flight it
works on (:class:`edgeagent.bulk.Pacer`)."""


def build_guard(settings: Settings) -> Guard:
    suffixes = PublicSuffixes.load()
    protected = ProtectedNames.load_files(
        settings.guard.protected_lists, public_suffixes=suffixes, reserved=settings.reserved_names()
    )
    limits = ChangeLimits(
        max_removal_share=settings.guard.max_removal_share,
        max_addition_share=settings.guard.max_addition_share,
        floor=settings.guard.change_floor,
    )
    return Guard(
        suffixes,
        protected,
        limits,
        settings.guard.cidr_min_prefix_v4,
        settings.guard.cidr_min_prefix_v6,
        settings.policy_zones(),
    )


def enforcer_context(
    settings: Settings,
    state_dir: Path,
    metrics: Metrics,
    guard: Guard,
    leadership: Leadership,
    *,
    serials: SerialRecord | None = None,
) -> EnforcerContext:
    """What enforcers are built from besides their own sections."""
    return EnforcerContext(
        state_dir,
        metrics,
        settings.feeds,
        tuple(sorted(guard.protected)),
        settings.listeners.limits(),
        settings.agent.role,
        fence=_counted_fence(leadership, metrics),
        serials=serials,
    )


def _counted_fence(leadership: Leadership, metrics: Metrics) -> Callable[[str], None]:
    """The leadership's fence check, each refusal counted (``edgeagent_fenced_total``)."""

    def check(what: str) -> None:
        try:
            leadership.check(what)
        except Fenced:
            metrics.fenced.labels(reason=what).inc()
            raise

    return check


def _counted_claim(leadership: Leadership, metrics: Metrics) -> Callable[[str], bool]:
    """The leadership's notice claim, each refusal counted (``edgeagent_fenced_total``)."""

    def claim(key: str) -> bool:
        try:
            return leadership.claim(key)
        except Fenced:
            metrics.fenced.labels(reason="a takedown notice").inc()
            raise

    return claim


@dataclass
class Agent:
    """The agent's parts, built once from settings; shared by the daemon and the CLI."""

    settings: Settings
    store: Store
    guard: Guard
    engine: PolicyEngine
    decisions: DecisionService
    feeds: FeedRunner
    metrics: Metrics
    enforcers: Enforcers
    state_dir: Path  # as built: a changed [agent] state_dir needs a restart
    leadership: Leadership
    # Every deadline and expiry is compared with it (edgeagent.deadline_clock).
    deadline_clock: DeadlineClock
    takedown: TakedownService | None = None
    cases: CaseCollector | None = None

    @classmethod
    def build(cls, settings: Settings) -> Agent:
        specs = feed_specs(settings.feeds)  # reads feed secrets: fail before opening anything
        guard = build_guard(settings)
        state_dir = settings.agent.state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # caches, serial, index
        store = open_store(settings.store, state_dir)
        leadership = open_leadership(settings.store, state_dir)
        host = socket.gethostname()
        deadline_clock = DeadlineClock(host, store.clock_mark(host), boot=boot_id())
        metrics = Metrics()
        decisions = DecisionService(
            store,
            guard,
            public_needs_approval=settings.api.public_reports_need_approval,
            hold_for=frozenset(settings.takedown.hold_for),
            clock=deadline_clock,
        )
        takedown = cases = None
        if settings.takedown.enabled:
            takedown = TakedownService.from_settings(
                settings.takedown,
                store,
                open_ticket_store(settings.store, state_dir),
                metrics=metrics,
                time_zone=settings.agent.zone,
                decisions=decisions,
                clock=deadline_clock,
            )
            takedown.claim_notice = _counted_claim(leadership, metrics)
            takedown.confirm_notice = leadership.confirm
            takedown.may_send = lambda: leadership.is_leader
            cases = CaseCollector(store.get_decision, lambda feed: _feed_origin(settings, feed))
        context = enforcer_context(settings, state_dir, metrics, guard, leadership, serials=store)
        enforcers = Enforcers.build(ENFORCERS, settings.sections, context)
        agent = cls(
            settings=settings,
            store=store,
            guard=guard,
            engine=PolicyEngine(store, guard, frozenset(settings.feeds), deadline_clock),
            decisions=decisions,
            feeds=FeedRunner(specs, store, guard, metrics),
            metrics=metrics,
            enforcers=enforcers,
            state_dir=state_dir,
            leadership=leadership,
            deadline_clock=deadline_clock,
            takedown=takedown,
            cases=cases,
        )
        agent.decisions.overrides = ExternalLists(
            lambda: agent.policy().index, agent.feed_source, store.get_decision
        )
        return agent

    def close(self) -> None:
        if self.takedown is not None:
            self.takedown.tickets.close()
        self.store.close()

    def policy(self) -> PolicySnapshot:
        snap = self.engine.current()
        self._export_policy_metrics(snap)
        return snap

    def latest_policy(self) -> PolicySnapshot:
        """The last policy snapshot built, without waiting for a rebuild in progress
        (:meth:`policy` before the first one)."""
        snap = self.engine.latest()
        return snap if snap is not None else self.policy()

    def _export_policy_metrics(self, snap: PolicySnapshot) -> None:
        m = self.metrics
        m.policy_version.set(snap.state.version)
        counts = snap.tally.by_scope
        for scope in ("domain", "host", "url", "url-prefix", "ip", "cidr"):
            m.policy_entries.labels(scope=scope).set(counts.get(scope, 0))
        for reason, n in snap.state.refused.items():
            m.policy_refused.labels(reason=reason).set(n)

    def plan(self, entries: bool = False) -> dict[str, Any]:
        """Held generations, each with what approving it would change (the changed entries
        only with ``entries``), and the guardrails' refusals. Pending decisions are the
        store's to count (``Store.count_decisions``), so every view shows one number."""
        snap = self.policy()
        held = []
        for feed in self.store.feeds():
            gen = self.store.held_generation(feed)
            if gen is None:
                continue
            live = self.store.live_generation(feed)
            item: dict[str, Any] = {
                "feed": feed,
                "generation": gen.id,
                "entries": gen.entry_count,
                "live_entries": live.entry_count if live else 0,
                "reason": gen.hold_reason,
                "created_at": gen.created_at.isoformat(),
            }
            diff = self.feeds.held_diffs.of(feed)
            if diff is not None and diff.held == gen.id:
                item["changes"] = diff.to_json(entries=entries)
            held.append(item)
        return {
            "policy_version": snap.state.version,
            "held_generations": held,
            "refused_entries": dict(snap.state.refused),
        }

    def feed_source(self, feed: str) -> NoticeSource | None:
        """The notice source of a configured feed; ``None`` for any other name."""
        config = self.settings.feeds.get(feed)
        return config.source if config is not None else None


class Daemon:
    """Runs an :class:`Agent` until told to stop."""

    def __init__(self, agent: Agent, config_path: Path | None) -> None:
        self.agent = agent
        self.config_path = config_path
        self.notifier = SystemdNotifier()
        self._stop = asyncio.Event()
        self._policy_changed = asyncio.Event()
        self._urgent_change = asyncio.Event()  # rebuild now, not with the next batch
        self._tickets_due = asyncio.Event()
        self._tickets_snap: PolicySnapshot | None = None
        # Decisions expire by the clock a step back does not delay (edgeagent.expiry).
        self._expiry = ExpiryTimer(self._expire_decisions, agent.deadline_clock)
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started_at = time.time()
        self.enforced_version: int | None = None
        self.database = DatabaseStatus(agent.settings.store.backend)
        self._enforcer_jobs: dict[str, set[str]] = {}
        self._started_with = agent.settings  # what restart-only keys still run with
        self._reloading = asyncio.Lock()
        # SIGHUP before the start is done (listeners answer early) waits for it: the
        # default action would kill the daemon, a reload mid-start would race it.
        self._started = False
        self._reload_pending = False
        self.last_reload = ReloadReport()
        self.api_url = ""
        self.metrics_url = ""
        self.intake_url = ""
        self.console_url = ""
        self.leading = False
        self._leader_work: list[asyncio.Task[Any]] = []

    # -- lifecycle
    def request_stop(self) -> None:
        self._stop.set()

    def policy_changed(self, *, urgent: bool = False) -> None:
        """Thread-safe: called after a decision write; wakes the reconciler (``urgent``:
        without waiting for the next batch)."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._policy_changed.set)
            if urgent:
                loop.call_soon_threadsafe(self._urgent_change.set)

    async def run(self, on_ready: Callable[[Daemon], None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        # A worker thread busy with a large policy (a feed generation, a rebuild, an
        # index) holds the GIL; the event loop gives it up at every blocking call and
        # waits up to the switch interval to get it back, several times per request.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        bulk_share = set_pace(BULK_SHARE)
        settings = self.agent.settings
        for warning in settings.warnings:
            log.warning("config: %s", warning)
        snap = await asyncio.to_thread(self.agent.policy)
        # The policy is long-lived: keep the collector from walking it on every full
        # collection (a 100k-entry policy otherwise halves API throughput).
        gc.freeze()
        log.info(
            "policy loaded",
            extra=fields(version=snap.state.version, blocks=len(snap.state.blocks)),
        )
        raise_open_files_limit()
        self._install_signals()
        await self._check_database()
        await self._start_listeners(settings)
        leadership = self.agent.leadership
        if leadership.is_leader:
            # The sole agent of an embedded store: publish and prove it before READY=1.
            self._set_leading(True)
            await self._enforce(snap)
        if self.agent.takedown is not None:
            # pyroute2 costs a second of CPU to import: at start, not inside the first
            # route lookup's timeout (the CLI builds the same agent and never needs it).
            await asyncio.to_thread(load_route_reader)
        if self.leading:
            # Readiness from the first answer on says whether every canary answers.
            await self.agent.enforcers.verify()
        self._tasks.append(asyncio.create_task(self._reconciler(), name="reconciler"))
        self._tasks.append(asyncio.create_task(self._ticket_opener(), name="tickets"))
        self._start_scheduler()
        self._tasks.append(
            asyncio.create_task(
                leadership.run(self._on_role, self._policy_changed.set, self.api_url),
                name="leadership",
            )
        )
        self._tasks.append(asyncio.create_task(self._export_roles(), name="roles"))
        self._tasks.append(asyncio.create_task(self._watch_database(), name="database"))
        self._tasks.append(asyncio.create_task(self._keep_clock_mark(), name="clock-mark"))
        self._started = True
        if self._reload_pending:
            self.reload()
        interval = watchdog_interval()
        if interval:
            self._tasks.append(asyncio.create_task(self._watchdog(interval), name="watchdog"))
        self.notifier.ready(f"policy v{snap.state.version}; api {self.api_url}")
        log.info("ready", extra=fields(api=self.api_url, metrics=self.metrics_url))
        if on_ready is not None:
            on_ready(self)
        if self.leading:
            # First sync right away (the schedule's first run is one interval later).
            self._leader_task(self._initial_sync(), "initial-sync")
        try:
            await self._stop.wait()
        finally:
            await self._shutdown()
            sys.setswitchinterval(switch_interval)
            set_pace(bulk_share)

    # -- leadership
    def _set_leading(self, leading: bool) -> None:
        if leading != self.leading:
            self.agent.metrics.leader_changes.inc()
        self.leading = leading
        self.agent.metrics.leader.set(1 if leading else 0)

    def _on_role(self, leading: bool) -> None:
        """The leadership's news (in the event loop): start or stop leader work."""
        if leading == self.leading:
            return
        self._set_leading(leading)
        scheduler = getattr(self, "scheduler", None)
        if not leading:
            if scheduler is not None:
                scheduler.pause()
            for task in self._leader_work:
                task.cancel()
            self._leader_work.clear()
            log.warning("not the leader: publishing, sync and takedown work stopped")
            return
        if scheduler is not None:
            scheduler.resume()
        self._leader_task(self._take_over(), "take-over")

    def _leader_task(self, work: Awaitable[None], name: str) -> None:
        """Leader work that stops (is cancelled) the moment the leadership is lost."""
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._leader_work.append(task)
        self._tasks.append(task)
        task.add_done_callback(
            lambda t: self._leader_work.remove(t) if t in self._leader_work else None
        )

    async def _take_over(self) -> None:
        """A new leader publishes the current policy at once (a standby published none,
        and the old leader may have died between a commit and its publish), proves it,
        then syncs the feeds and takes up the takedown work."""
        snap = await asyncio.to_thread(self.agent.policy)
        log.info("leader: publishing", extra=fields(version=snap.state.version))
        await self._enforce(snap)
        await self.agent.enforcers.verify()
        await self._initial_sync()  # customers, first notices, tickets, then feeds

    async def _enforce(self, snap: PolicySnapshot) -> None:
        self.enforced_version = snap.state.version
        self._expiry.arm(snap.next_expiry)
        await self.agent.enforcers.publish(snap.state)

    async def _check_policy_version(self) -> None:
        """Pick up policy changes made by another process on the same store (e.g.
        ``edgeagent feed approve``), which no in-process event announces (scheduled only
        where the leadership announces none: the embedded store)."""
        version = await asyncio.to_thread(self.agent.store.policy_version)
        if version != self.enforced_version:
            self._policy_changed.set()

    async def _check_database(self) -> None:
        """Reach the store's database; keep the answer for readiness, status and metrics,
        and log when it is lost, found again, or has a new primary."""
        before = self.database
        now = await asyncio.to_thread(self.agent.store.database_status, DATABASE_CHECK_TIMEOUT)
        self.database = now
        self.agent.metrics.observe_database(now)
        if before.reachable and not now.reachable:
            log.warning("database unreachable", extra=fields(error=now.error))
        elif now.reachable and not before.reachable:
            log.info("database reachable again", extra=fields(primary=now.primary))
        elif now.primary != before.primary and before.primary:
            log.info("database primary changed", extra=fields(primary=now.primary))

    async def _watch_database(self) -> None:
        """Every agent, leader or standby, keeps its view of the database current (a
        task, not a scheduler job: a standby's scheduler is paused)."""
        while True:
            await asyncio.sleep(DATABASE_CHECK_SECONDS)
            try:
                await self._check_database()
            except Exception:  # a bug must not end the watch
                log.exception("database check failed")

    async def _keep_clock_mark(self) -> None:
        """Every agent keeps its host's deadline-clock mark in the store, from the start
        (a task, not a scheduler job: a standby's scheduler is paused)."""
        while True:
            await self._save_clock_mark()
            await asyncio.sleep(MARK_SECONDS)

    async def _save_clock_mark(self) -> None:
        mark = self.agent.deadline_clock.mark()
        try:
            await asyncio.to_thread(self.agent.store.save_clock_mark, mark)
        except Exception as exc:  # never fatal: kept in memory, saved at the next try
            log.warning("clock mark not saved", extra=fields(error=str(exc)))

    def api_app(self, settings: Settings, triage: Triage) -> web.Application:
        """The control API application (and the console on it) as the daemon serves it."""
        from edgeagent.api.app import create_app
        from edgeagent.api.context import ApiContext
        from edgeagent.api.feed_routes import feed_routes
        from edgeagent.api.routes import ROUTES
        from edgeagent.api.takedown_routes import takedown_routes

        ctx = ApiContext(
            store=self.agent.store,
            decisions=self.agent.decisions,
            policy=lambda: self.agent.policy().index,
            # Counts may lag a rebuild in progress: status never waits for one.
            tally=lambda: self.agent.latest_policy().tally,
            feeds=self._feed_status,
            publishers=self._publisher_status,
            fleet=self.agent.enforcers.fleet,
            edge_feed=self.agent.enforcers.edge_feed,
            reload=self._reload_status,
            plan=self.agent.plan,
            readiness=self.readiness,
            leader=self.leader_status,
            database=self._database_status,
            on_change=self.policy_changed,
            max_body_bytes=settings.api.max_body_bytes,
            lookup_rate_per_minute=settings.api.lookup_rate_per_minute,
            time_zone=settings.agent.zone,
            metrics=self.agent.metrics,
            triage=triage,
        )
        routes = (*ROUTES, *feed_routes(self.agent.feeds))
        if self.agent.takedown is not None:
            routes = (*routes, *takedown_routes(self.agent.takedown))
        app = create_app(ctx, routes=routes)
        if settings.console.enabled:
            from edgeagent.console.app import Services, add_console

            services = Services(takedown=self.agent.takedown, feeds=self.agent.feeds)
            add_console(app, settings.console, routes, services)
        return app

    async def _start_listeners(self, settings: Settings) -> None:
        from edgeagent.api.app import create_metrics_app
        from edgeagent.intake.listener import triage_for

        triage = triage_for(self.agent)
        if settings.api.enabled:
            ssl_ctx = _api_ssl_context(settings)
            app = self.api_app(settings, triage)
            port = await self._serve(app, settings.api.host, settings.api.port, settings, ssl_ctx)
            scheme = "https" if ssl_ctx else "http"
            self.api_url = f"{scheme}://{_url_host(settings.api.host)}:{port}"
            if settings.console.enabled:
                self.console_url = f"{self.api_url}/console/"
        await self.agent.enforcers.start()
        if settings.metrics.enabled:
            app = create_metrics_app(
                self.agent.metrics.registry, self.readiness, self.leader_status
            )
            port = await self._serve(
                app, settings.metrics.host, settings.metrics.port, settings, None
            )
            self.metrics_url = f"http://{_url_host(settings.metrics.host)}:{port}/metrics"
        await self._start_intake_pages(triage)

    # -- intake hook: the public report and appeal pages (edgeagent.intake.listener). Its
    #    runner joins self._runners, so it stops with the other listeners; the mail
    #    channel joins self._tasks.
    async def _start_intake_pages(self, triage: Triage) -> None:
        from edgeagent.intake.listener import mail_channel_for, start_intake_pages

        started = await start_intake_pages(self.agent, triage)
        if started is not None:
            self._runners.append(started[0])
            self.intake_url = started[1]
        mail = mail_channel_for(self.agent, triage, self.policy_changed)
        if mail is not None:
            self._tasks.append(asyncio.create_task(mail.run(), name="mail-intake"))

    async def _serve(
        self,
        app: web.Application,
        host: str,
        port: int,
        settings: Settings,
        ssl_ctx: ssl.SSLContext | None,
    ) -> int:
        from edgeagent.api.app import bound_port, start_site

        limits = settings.listeners.limits()
        runner = await start_site(app, host, port, limits, ssl_context=ssl_ctx)
        self._runners.append(runner)
        return bound_port(runner)

    def _start_scheduler(self) -> None:
        self.agent.feeds.on_change = self.policy_changed
        if self.agent.takedown is not None:
            self.agent.takedown.on_policy_change = self.policy_changed
        # Every job here is leader work: a standby's jobs wait, paused. They are timed by
        # the monotonic clock: a wall clock stepped back does not hold them up.
        self.scheduler = PeriodicJobs(paused=not self.leading)
        self.agent.feeds.schedule(self.scheduler)
        self._every(60, "decisions:expire", self._expire_decisions)
        if not self.agent.leadership.notifies:
            self._every(POLICY_POLL_SECONDS, "policy:poll", self._check_policy_version)
        for kind in ENFORCERS:
            self._schedule_enforcer(kind.KIND)
        svc = self.agent.takedown
        if svc is not None:
            # A failed notice is retried notify_retry_seconds after: look often enough.
            self._every(min(30, svc.policy.retry_seconds), "takedown:due", svc.run_due)
            # Breaches on their own: a pass of run_due may wait on a slow notice.
            self._every(min(30, svc.policy.retry_seconds), "takedown:breach", svc.record_breaches)
            self._every(OWED_NOTICE_SECONDS, "takedown:owed", svc.send_owed)
            self._every(3600, "takedown:customers", svc.refresh_customers)
            self._every(900, "takedown:relocate", self._relocate_all)
            self._every(3600, "takedown:purge", self._purge_tickets)

    def _schedule_enforcer(self, kind: str) -> None:
        """(Re)schedule the periodic work the enforcer of ``kind`` declares."""
        wanted = self.agent.enforcers.periodic(kind)
        for job_id in self._enforcer_jobs.get(kind, set()) - set(wanted):
            self.scheduler.remove(job_id)
        for job_id, (seconds, run) in wanted.items():
            self._every(seconds, job_id, run)
        self._enforcer_jobs[kind] = set(wanted)

    def _every(self, seconds: float, job_id: str, func: Callable[[], Awaitable[object]]) -> None:
        """A periodic job: one run at a time, missed runs collapsed (edgeagent.periodic)."""
        self.scheduler.every(job_id, seconds, func)

    async def _relocate_all(self) -> None:
        if self.agent.cases is not None:
            self.agent.cases.forget()
        await self._open_tickets(await asyncio.to_thread(self.agent.policy))

    async def _open_tickets(self, snap: PolicySnapshot) -> None:
        """Locate new block entries and open or extend hosting tickets, case by case."""
        svc, collector = self.agent.takedown, self.agent.cases
        if svc is None or collector is None:
            return
        cases = await asyncio.to_thread(collector.new_cases, snap.state, svc.clock())
        for case in cases:
            try:
                out = await svc.on_entries(
                    case.entries,
                    case.notice_received_at,
                    case.reference,
                    case.origin.source,
                    jurisdiction=case.origin.jurisdiction,
                    hold=case.origin.hold,
                )
            except Exception:
                log.exception("takedown failed for a case; it is retried on the next pass")
                collector.forget()
                continue
            if out.tickets:
                log.info(
                    "takedown tickets opened or extended",
                    extra=fields(tickets=[t.id for t in out.tickets], outside=out.outside),
                )

    async def _purge_tickets(self) -> None:
        svc = self.agent.takedown
        if svc is None:
            return
        report = await svc.purge_expired()
        if report.purged or report.kept_by_legal_hold:
            log.info(
                "takedown records past their retention",
                extra=fields(purged=len(report.purged), legal_hold=len(report.kept_by_legal_hold)),
            )

    async def _expire_decisions(self) -> None:
        if not self.leading:
            return  # the leader expires them; this agent hears of it by NOTIFY
        expired = await asyncio.to_thread(self.agent.decisions.expire_due)  # deadline clock
        if expired:
            log.info("decisions expired", extra=fields(count=len(expired)))
            self.policy_changed(urgent=True)

    async def _initial_sync(self) -> None:
        if self.agent.takedown is not None:
            try:
                await self.agent.takedown.refresh_customers()
            except Exception:
                log.exception("customer data could not be loaded; the previous data stays")
            try:
                await self.agent.takedown.send_first_notices()
            except Exception:
                log.exception("first notices of earlier tickets failed; retried later")
            await self._open_tickets(await asyncio.to_thread(self.agent.policy))
        try:
            await self.agent.feeds.sync_all()
        except Exception:
            log.exception("initial feed sync failed")

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self.reload)

    def reload(self) -> None:
        """SIGHUP: reload the config (one reload at a time, in the event loop; one asked
        for during the start runs once the start is done)."""
        if not self._started:
            self._reload_pending = True
            return
        self._tasks.append(asyncio.get_running_loop().create_task(self._reload(), name="reload"))

    async def _reload(self) -> None:
        """Validate the config again and apply what can be applied; keep the old one on
        any error. What needs a restart is named in the log and in ``/v1/status``."""
        async with self._reloading:
            self.notifier.reloading()
            try:
                new = load_config(self.config_path)
                # Feed secrets are read here too: a missing one refuses the whole reload.
                specs = feed_specs(new.feeds) if new.feeds != self.agent.settings.feeds else None
            except EdgeAgentError as exc:
                log.error("reload refused, old config stays", extra=fields(error=str(exc)))
                self.notifier.ready("reload refused")
                return
            for warning in new.warnings:
                log.warning("config: %s", warning)
            old, self.agent.settings = self.agent.settings, new
            self.agent.decisions.public_needs_approval = new.api.public_reports_need_approval
            self.agent.decisions.hold_for = frozenset(new.takedown.hold_for)
            if (old.agent.log_level, old.agent.log_format) != (
                new.agent.log_level,
                new.agent.log_format,
            ):
                logs.configure(new.agent.log_level, new.agent.log_format)
            self.agent.engine.set_feeds(frozenset(new.feeds))
            if specs is not None:
                self._reload_feeds(specs)
            context = enforcer_context(
                new,
                self.agent.state_dir,
                self.agent.metrics,
                self.agent.guard,
                self.agent.leadership,
                serials=self.agent.store,
            )
            enforcers = await self.agent.enforcers.reload(new.sections, context)
            for kind in enforcers.replaced:
                self._schedule_enforcer(kind)
                # Prove the new sections work now, not one interval later.
                verify = self.agent.enforcers.on(kind, lambda e: e.verify())
                self._tasks.append(asyncio.create_task(verify))
            owned = owned_sections(ENFORCERS)
            self.last_reload = reloading.report(
                time.time(),
                started=self._started_with,
                old=old,
                new=new,
                owned=owned,
                enforcers_applied=enforcers.applied,
                enforcers_need_restart=enforcers.needs_restart,
            )
            log.info(
                "config reloaded",
                extra=fields(
                    applied=list(self.last_reload.applied),
                    needs_restart=list(self.last_reload.needs_restart),
                ),
            )
            self._policy_changed.set()
            self._urgent_change.set()  # new enforcer sections publish at once
            self.notifier.ready("reloaded")

    def _reload_feeds(self, specs: list[FeedSpec]) -> None:
        """New, changed and removed feeds take effect now: jobs replaced, new ones synced."""
        feeds = self.agent.feeds
        changed, removed = feeds.replace_specs(specs)
        scheduler = getattr(self, "scheduler", None)
        if scheduler is not None:
            for name in [*removed, *(n for n in changed if not feeds.specs[n].enabled)]:
                scheduler.remove(f"feed:{name}")
            feeds.schedule(scheduler, [n for n in changed if feeds.specs[n].enabled])
        for name in changed:
            if feeds.specs[name].enabled:
                task = asyncio.get_running_loop().create_task(self._sync_reloaded(name))
                self._tasks.append(task)
        log.info("feeds reloaded", extra=fields(changed=changed, removed=removed))

    async def _sync_reloaded(self, name: str) -> None:
        try:
            await self.agent.feeds.sync(name)
        except Exception:
            log.exception("sync of a reloaded feed failed", extra=fields(feed=name))

    async def _export_roles(self) -> None:
        """Keep the leadership gauges current for a scrape (cheap: no database call)."""
        while True:
            self.leader_status()
            await asyncio.sleep(ROLE_EXPORT_SECONDS)

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _reconciler(self) -> None:
        """Rebuild the policy whenever a decision or a feed changed it, in batches under a
        stream of changes (:data:`REBUILD_SPACING_SECONDS`)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self._policy_changed.wait()
            if not self._urgent_change.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(next_at):
                        await self._urgent_change.wait()
            self._policy_changed.clear()
            self._urgent_change.clear()
            started = loop.time()
            await self._rebuild_and_enforce()
            least, most = REBUILD_SPACING_SECONDS
            took = loop.time() - started
            next_at = started + min(most, max(least, took / REBUILD_DUTY))

    async def _rebuild_and_enforce(self) -> None:
        try:
            snap = await asyncio.to_thread(self.agent.policy)
            gc.freeze()
            log.info("policy rebuilt", extra=fields(version=snap.state.version))
        except Exception:
            log.exception("policy rebuild failed; the last good state stays")
            return
        if not self.leading:
            return  # a standby keeps its policy current for the API only
        # Tickets and publishing do not wait for each other: locating a notice's hosts
        # is mostly waiting for DNS, and a hosting team's mail server or webhook that
        # hangs must not hold up the next decision's publish.
        self._tickets_snap = snap
        self._tickets_due.set()
        await self._enforce(snap)

    async def _ticket_opener(self) -> None:
        """Open tickets for the latest policy the reconciler built, one pass at a time."""
        while True:
            await self._tickets_due.wait()
            self._tickets_due.clear()
            if self._tickets_snap is None:
                continue
            try:
                await self._open_tickets(self._tickets_snap)
            except Exception:
                log.exception("opening tickets failed; retried on the next policy change")

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping: draining requests")
        scheduler = getattr(self, "scheduler", None)
        if scheduler is not None:
            await scheduler.close()
        await self._expiry.close()
        with contextlib.suppress(Exception):
            await self.agent.leadership.close()  # a standby takes over at once
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._save_clock_mark()  # a restart goes on from the latest reading
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        await self.agent.feeds.close()
        await self.agent.enforcers.close()
        log.info("stopped")

    # -- status callables for the API
    def readiness(self) -> list[str]:
        """Why the agent is not ready. A standby serves the API, so it is ready without
        fresh feeds or verified enforcement (the leader's work); ``/readyz`` says which
        it is (:meth:`leader_status`)."""
        reasons: list[str] = []
        if not self.agent.engine.loaded:
            reasons.append("policy not loaded")
        if self.leading:
            reasons.extend(f"feed {name} is stale" for name in self.agent.feeds.stale())
            reasons.extend(self.agent.enforcers.readiness())
        reasons.extend(diskspace.full_reasons([self.agent.state_dir]))
        if not self.database.reachable:
            reasons.append(f"database unreachable: {self.database.error}")
        return reasons

    def leader_status(self) -> dict[str, Any]:
        """``leader`` (does this agent lead) and ``ha`` (role, epoch, every agent)."""
        leadership = self.agent.leadership
        ha = leadership.status()
        m = self.agent.metrics
        if ha.get("epoch") is not None:
            m.leader_epoch.set(ha["epoch"])
        m.observe_roles(leadership.roles())
        return {
            "leader": self.leading,
            "ha": {**ha, "role": "leader" if self.leading else "standby"},
        }

    def _database_status(self) -> dict[str, Any]:
        return self.database.to_dict()

    def _reload_status(self) -> dict[str, Any]:
        return self.last_reload.to_dict()

    def _feed_status(self) -> dict[str, Any]:
        return self.agent.feeds.status()

    def _publisher_status(self) -> dict[str, Any]:
        return self.agent.enforcers.status()


def _api_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    api = settings.api
    if api.tls_cert_file is None:
        return None
    from edgeagent.api.tls import make_ssl_context

    if api.tls_key_file is None:
        raise ConfigError("api", [ConfigProblem("api.tls_key_file", "required with tls_cert_file")])
    return make_ssl_context(
        api.tls_cert_file, api.tls_key_file, api.client_ca_file, api.require_client_cert
    )


def _feed_origin(settings: Settings, feed: str) -> CaseOrigin:
    """Notice source, jurisdiction and hold of a feed's takedown cases (``internal``, no
    jurisdiction, no hold for a feed no longer configured)."""
    spec = settings.feeds.get(feed)
    if spec is None:
        return CaseOrigin("internal")
    hold = spec.source in settings.takedown.hold_for if spec.hold is None else spec.hold
    return CaseOrigin(spec.source.value, spec.jurisdiction or "", hold)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
