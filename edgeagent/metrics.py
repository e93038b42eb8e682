"""Every Prometheus collector edgeagent exports, defined once.

Labels are limited to ``feed``, ``publisher``, ``resolver``, ``region``, ``enforcer``,
``proxy``, ``source``, ``scope``, ``reason``, ``route``, ``status``, ``channel``,
``outcome``, ``standby`` and ``address`` (the database's) — fixed,
low-cardinality values chosen by the operator or the code. A list entry never becomes a label value.

Each ``Metrics`` owns its own ``CollectorRegistry`` so tests and the lab can run several
agents in one process; the daemon makes exactly one.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from edgeagent import __version__

if TYPE_CHECKING:
    from edgeagent.leadership import Roles
    from edgeagent.store.base import DatabaseStatus


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.info = Info("edgeagent", "Agent build information", registry=r)
        self.info.info({"version": __version__})

        # policy
        self.policy_version = Gauge(
            "edgeagent_policy_version", "Version of the desired state in force", registry=r
        )
        self.policy_entries = Gauge(
            "edgeagent_policy_entries",
            "Effective block entries by scope",
            ["scope"],
            registry=r,
        )
        self.policy_refused = Gauge(
            "edgeagent_policy_refused_entries",
            "Entries kept out of the policy by the guardrails, by reason",
            ["reason"],
            registry=r,
        )
        # leadership among the agents sharing a store (edgeagent.leadership)
        self.leader = Gauge(
            "edgeagent_leader",
            "1 while this agent is the leader (runs sync, publishing, takedown), else 0",
            registry=r,
        )
        self.leader_epoch = Gauge(
            "edgeagent_leader_epoch",
            "Leader epoch this agent last saw in the database (its own while it leads)",
            registry=r,
        )
        self.leader_changes = Counter(
            "edgeagent_leader_changes_total",
            "Times this agent became leader or stopped being it",
            registry=r,
        )
        self.ha_agents = Gauge(
            "edgeagent_ha_agents",
            "Agents on the shared store heard from recently, by role (leader, standby)",
            ["status"],
            registry=r,
        )
        self.ha_leader = Gauge(
            "edgeagent_ha_leader_info",
            "1 for the agent the store names as leader (its agent id, host:pid)",
            ["agent"],
            registry=r,
        )
        self.ha_agent_role = Gauge(
            "edgeagent_ha_agent_role",
            "1 for each agent on the shared store heard from recently, by agent id and role",
            ["agent", "role"],
            registry=r,
        )
        self.fenced = Counter(
            "edgeagent_fenced_total",
            "Writes refused because this agent is not the leader the database knows",
            ["reason"],
            registry=r,
        )
        self.decisions = Counter(
            "edgeagent_decisions_total",
            "Decision lifecycle events",
            ["status"],
            registry=r,
        )

        # feeds
        self.feed_last_attempt = Gauge(
            "edgeagent_feed_last_attempt_timestamp_seconds",
            "Unix time of the last sync attempt",
            ["feed"],
            registry=r,
        )
        self.feed_last_success = Gauge(
            "edgeagent_feed_last_success_timestamp_seconds",
            "Unix time of the last successful sync (fetched and verified)",
            ["feed"],
            registry=r,
        )
        self.feed_max_age = Gauge(
            "edgeagent_feed_max_age_seconds",
            "Configured staleness limit of the feed",
            ["feed"],
            registry=r,
        )
        self.feed_entries = Gauge(
            "edgeagent_feed_entries", "Entries in the live generation", ["feed"], registry=r
        )
        self.feed_rejected = Counter(
            "edgeagent_feed_rejected_entries_total",
            "Entries rejected during validation, by reason",
            ["feed", "reason"],
            registry=r,
        )
        self.feed_bytes = Gauge(
            "edgeagent_feed_bytes", "Bytes of the last fetch (decompressed)", ["feed"], registry=r
        )
        self.feed_duration = Gauge(
            "edgeagent_feed_sync_duration_seconds",
            "Duration of the last sync",
            ["feed"],
            registry=r,
        )
        self.feed_held = Gauge(
            "edgeagent_feed_held_generation",
            "1 while a generation of the feed waits for approval",
            ["feed"],
            registry=r,
        )
        self.feed_failures = Counter(
            "edgeagent_feed_sync_failures_total",
            "Failed sync attempts (the last good generation stayed live)",
            ["feed"],
            registry=r,
        )

        # DNS enforcement
        self.publisher_up = Gauge(
            "edgeagent_publisher_up",
            "1 if the publisher's last publish succeeded",
            ["publisher"],
            registry=r,
        )
        self.publish_failures = Counter(
            "edgeagent_rpz_publish_failures_total",
            "Failed publishes (the old zone stayed live)",
            ["publisher"],
            registry=r,
        )
        self.publish_seconds = Histogram(
            "edgeagent_rpz_publish_duration_seconds",
            "Time from policy change to verified publish",
            ["publisher"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.drift_repairs = Counter(
            "edgeagent_drift_repairs_total",
            "Artefacts (a zone file, the proxy index) found changed behind the agent's back"
            " and written again",
            ["artefact"],
            registry=r,
        )
        self.rpz_serial = Gauge(
            "edgeagent_rpz_serial", "SOA serial the agent last published", registry=r
        )
        self.rpz_resolver_serial = Gauge(
            "edgeagent_rpz_resolver_serial",
            "SOA serial the resolver serves",
            ["resolver"],
            registry=r,
        )
        self.rpz_serial_lag = Gauge(
            "edgeagent_rpz_serial_lag",
            "Published serial minus the serial the resolver serves",
            ["resolver"],
            registry=r,
        )
        self.rpz_resolver_reachable = Gauge(
            "edgeagent_rpz_resolver_reachable",
            "1 if the resolver answered the canary query at the last check",
            ["resolver"],
            registry=r,
        )
        self.rpz_resolver_confirmed_age = Gauge(
            "edgeagent_rpz_resolver_confirmed_age_seconds",
            "Seconds since the resolver last served the published serial (0 while current)",
            ["resolver"],
            registry=r,
        )
        self.rpz_region_converged = Gauge(
            "edgeagent_rpz_region_converged_ratio",
            "Share of a region's resolvers serving the published serial",
            ["region"],
            registry=r,
        )
        self.rpz_verify_seconds = Gauge(
            "edgeagent_rpz_verify_pass_seconds",
            "Duration of the last verification pass over every resolver",
            registry=r,
        )
        self.enforcer_publish_retries = Counter(
            "edgeagent_enforcer_publish_retries_total",
            "Publishes retried after a failure, without a new decision",
            ["enforcer"],
            registry=r,
        )
        self.enforcer_pending_version = Gauge(
            "edgeagent_enforcer_pending_version",
            "Policy version an enforcer has not yet enforced (0: none pending)",
            ["enforcer"],
            registry=r,
        )
        self.enforcer_retry_delay = Gauge(
            "edgeagent_enforcer_retry_delay_seconds",
            "Wait before an enforcer's next publish retry, backoff with jitter (0: none)",
            ["enforcer"],
            registry=r,
        )
        self.rpz_canary_ok = Gauge(
            "edgeagent_rpz_canary_ok",
            "1 if the resolver blocked the canary at the last check",
            ["resolver"],
            registry=r,
        )
        self.rpz_not_enforceable = Gauge(
            "edgeagent_rpz_not_enforceable_at_dns",
            "URL-level entries that DNS cannot enforce (no filtering proxy configured)",
            registry=r,
        )

        # proxy
        self.proxy_canary_ok = Gauge(
            "edgeagent_proxy_canary_ok",
            "1 if the proxy served the stop page for the canary URL",
            ["proxy"],
            registry=r,
        )
        self.proxy_index_version = Gauge(
            "edgeagent_proxy_index_version",
            "Policy version of the proxy index: installed by the agent, or loaded by the "
            "Squid helpers (the lowest any helper reports)",
            ["where"],
            registry=r,
        )
        self.edge_last_contact = Gauge(
            "edgeagent_edge_last_contact_timestamp_seconds",
            "Unix time an edge agent last heard from the centre (0: never)",
            registry=r,
        )
        self.edge_index_refused = Counter(
            "edgeagent_edge_index_refused_total",
            "Index artefacts from the centre an edge refused (signature, digest, shape)",
            registry=r,
        )
        self.proxy_https_unenforceable = Counter(
            "edgeagent_proxy_https_unenforceable_total",
            "CONNECT requests to hosts with only URL-level entries (passed)",
            registry=r,
        )
        self.proxy_ip_aliases = Gauge(
            "edgeagent_proxy_ip_aliases",
            "IP-literal alias entries in the proxy index (addresses of hosts with URL-level "
            "blocks)",
            registry=r,
        )
        self.proxy_alias_hosts_unresolved = Gauge(
            "edgeagent_proxy_alias_hosts_unresolved",
            "Hosts with URL-level blocks not yet asked for their addresses (alias progress)",
            registry=r,
        )
        self.proxy_alias_resolutions = Counter(
            "edgeagent_proxy_alias_resolutions_total",
            "Host resolutions made for IP-literal aliases",
            registry=r,
        )
        self.proxy_alias_resolve_failures = Counter(
            "edgeagent_proxy_alias_resolve_failures_total",
            "Host resolutions for IP-literal aliases that failed (last addresses kept)",
            registry=r,
        )
        self.stop_page_hits = Counter(
            "edgeagent_stop_page_hits_total",
            "Stop pages served, by list source (no client data)",
            ["source"],
            registry=r,
        )

        # route diversion
        self.routes_installed = Gauge(
            "edgeagent_routes_installed", "Diversion routes installed (ours)", registry=r
        )
        self.routes_refused = Gauge(
            "edgeagent_routes_refused",
            "Addresses the route guardrails refused at the last reconcile, by reason",
            ["reason"],
            registry=r,
        )
        self.routes_foreign = Gauge(
            "edgeagent_routes_foreign",
            "Routes in the diversion table that are not the agent's",
            registry=r,
        )
        self.routes_repaired = Counter(
            "edgeagent_routes_repaired_total",
            "Routes or rules put back after someone removed them",
            registry=r,
        )
        self.routes_failures = Counter(
            "edgeagent_routes_reconcile_failures_total",
            "Reconcile passes that failed (routes left as they were)",
            registry=r,
        )

        # takedown
        self.takedown_open = Gauge(
            "edgeagent_takedown_open_tickets",
            "Open hosting takedown tickets, by notice source",
            ["source"],
            registry=r,
        )
        self.takedown_overdue = Gauge(
            "edgeagent_takedown_open_overdue",
            "Open tickets whose content is still public past the SLA deadline, by source",
            ["source"],
            registry=r,
        )
        self.takedown_sla_breaches = Counter(
            "edgeagent_takedown_sla_breaches_total",
            "Tickets whose content stayed public past the SLA deadline (each counted once)",
            ["source"],
            registry=r,
        )

        self.takedown_notify_failures = Counter(
            "edgeagent_takedown_notify_failures_total",
            "Failed attempts to deliver a takedown notice (refused, unreachable or timed "
            "out), by channel (the notifier's name)",
            ["channel"],
            registry=r,
        )
        self.takedown_notices_pending = Gauge(
            "edgeagent_takedown_notices_pending",
            "Open tickets whose last notice failed on a channel, waiting for a retry",
            registry=r,
        )

        self.takedown_probes_sent = Counter(
            "edgeagent_takedown_probes_sent_total",
            "ARP/ND probes sent for the on-segment detail of a takedown ticket",
            registry=r,
        )
        self.takedown_probes_answered = Counter(
            "edgeagent_takedown_probes_answered_total",
            "On-segment probes answered with a MAC",
            registry=r,
        )
        self.takedown_probes_timed_out = Counter(
            "edgeagent_takedown_probes_timed_out_total",
            "On-segment probes nobody answered in time",
            registry=r,
        )
        self.takedown_probes_refused = Counter(
            "edgeagent_takedown_probes_refused_total",
            "On-segment probes not sent, by reason (outside-own-prefixes, rate-limit, send-error)",
            ["reason"],
            registry=r,
        )

        self.store_unavailable = Counter(
            "edgeagent_store_unavailable_total",
            "API requests refused because the store could not be used, by reason "
            "(storage-full, store-unavailable)",
            ["reason"],
            registry=r,
        )

        # the database under the store (edgeagent.store.base.DatabaseStatus)
        self.database_up = Gauge(
            "edgeagent_database_up",
            "1 when the last check reached the store's database, else 0",
            registry=r,
        )
        self.database_primary = Gauge(
            "edgeagent_database_primary",
            "1 for the address (host:port) of the database server the agent writes to",
            ["address"],
            registry=r,
        )
        self.database_synchronous = Gauge(
            "edgeagent_database_synchronous",
            "1 when a commit waits for at least one synchronous standby, else 0",
            registry=r,
        )
        self.database_replication_lag = Gauge(
            "edgeagent_database_replication_lag_seconds",
            "How far each standby's replay is behind the primary",
            ["standby"],
            registry=r,
        )
        self.database_replication_lag_bytes = Gauge(
            "edgeagent_database_replication_lag_bytes",
            "WAL bytes each standby has yet to replay",
            ["standby"],
            registry=r,
        )

        # API
        # intake: reports, quarantined notices, appeals (never a label about a sender)
        self.intake_received = Counter(
            "edgeagent_intake_received_total",
            "Items queued for triage, by channel",
            ["channel"],
            registry=r,
        )
        self.intake_decided = Counter(
            "edgeagent_intake_decided_total",
            "Items a person decided, by channel and outcome (accepted, rejected, upheld, revoked)",
            ["channel", "outcome"],
            registry=r,
        )
        self.intake_decision_seconds = Histogram(
            "edgeagent_intake_decision_seconds",
            "Time from an item's arrival to a person's decision",
            ["channel"],
            buckets=(60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400),
            registry=r,
        )
        self.intake_pending = Gauge(
            "edgeagent_intake_pending",
            "Items waiting for a person, by channel (mail-quarantine: the quarantine size)",
            ["channel"],
            registry=r,
        )
        self.intake_refused = Counter(
            "edgeagent_intake_refused_total",
            "Report and appeal submissions refused before queueing, by reason",
            ["reason"],
            registry=r,
        )
        self.intake_mail_messages = Counter(
            "edgeagent_intake_mail_messages_total",
            "Mailbox messages taken, by outcome (trusted: became decisions; quarantined: "
            "queued for a person; already-done: stored before, only marked)",
            ["outcome"],
            registry=r,
        )
        self.intake_mail_polls_failed = Counter(
            "edgeagent_intake_mail_polls_failed_total",
            "Mailbox polls that ended early (connection, login or mark failed)",
            registry=r,
        )
        self.intake_daily_cap_reached = Gauge(
            "edgeagent_intake_daily_cap_reached",
            "1 while the report page's per-day cap is reached (new reports are refused)",
            registry=r,
        )

        self.api_requests = Counter(
            "edgeagent_api_requests_total",
            "Control API requests by route template and status",
            ["route", "status"],
            registry=r,
        )

    def observe_roles(self, roles: Roles) -> None:
        """Set the leadership gauges from the store's view of the agents; agents no longer
        heard from are dropped."""
        self.ha_leader.clear()
        if roles.leader:
            self.ha_leader.labels(agent=roles.leader).set(1)
        self.ha_agent_role.clear()
        for agent in roles.agents:
            role = "leader" if agent.leader else "standby"
            self.ha_agent_role.labels(agent=agent.name, role=role).set(1)
        leaders = sum(1 for a in roles.agents if a.leader)
        self.ha_agents.labels(status="leader").set(leaders)
        self.ha_agents.labels(status="standby").set(len(roles.agents) - leaders)

    def observe_database(self, status: DatabaseStatus) -> None:
        """Set the ``edgeagent_database_*`` gauges from one check; standbys and primaries
        no longer seen are dropped."""
        self.database_up.set(1 if status.reachable else 0)
        if not status.reachable:
            return  # the last known primary and lags stay until it is reached again
        self.database_primary.clear()
        if status.primary:
            self.database_primary.labels(address=status.primary).set(1)
        self.database_synchronous.set(1 if status.synchronous else 0)
        self.database_replication_lag.clear()
        self.database_replication_lag_bytes.clear()
        for standby in status.standbys:
            if standby.replay_lag_seconds is not None:
                self.database_replication_lag.labels(standby=standby.name).set(
                    standby.replay_lag_seconds
                )
            if standby.replay_lag_bytes is not None:
                self.database_replication_lag_bytes.labels(standby=standby.name).set(
                    standby.replay_lag_bytes
                )

    def forget_feed(self, feed: str) -> None:
        """Drop every series of ``feed`` (it left the configuration): a feed that is gone
        must not keep its last timestamps and raise a staleness alert."""
        collectors = (
            self.feed_last_attempt,
            self.feed_last_success,
            self.feed_max_age,
            self.feed_entries,
            self.feed_bytes,
            self.feed_duration,
            self.feed_held,
            self.feed_failures,
        )
        for collector in collectors:
            with contextlib.suppress(KeyError):
                collector.remove(feed)
        reasons = {
            sample.labels["reason"]
            for metric in self.feed_rejected.collect()
            for sample in metric.samples
            if sample.labels.get("feed") == feed
        }
        for reason in reasons:
            self.feed_rejected.remove(feed, reason)

    def forget_publisher(self, publisher: str) -> None:
        """Drop every series of an RPZ publisher that left the configuration."""
        _forget(publisher, self.publisher_up, self.publish_failures, self.publish_seconds)

    def forget_resolver(self, resolver: str) -> None:
        """Drop every series of a resolver that left the configuration."""
        _forget(
            resolver,
            self.rpz_resolver_serial,
            self.rpz_serial_lag,
            self.rpz_canary_ok,
            self.rpz_resolver_reachable,
            self.rpz_resolver_confirmed_age,
        )

    def forget_proxy(self, proxy: str) -> None:
        """Drop the canary series of a proxy that left the configuration."""
        _forget(proxy, self.proxy_canary_ok)


def _forget(label: str, *collectors: Counter | Gauge | Histogram) -> None:
    for collector in collectors:
        with contextlib.suppress(KeyError):
            collector.remove(label)
