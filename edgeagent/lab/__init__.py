"""``edgeagent lab``: the whole agent and its peers on loopback, in a temporary directory.

For newcomers and end-to-end tests. The lab writes a config into its directory (fresh
store, the bundled sample feeds, free loopback ports), creates one API token per role and
starts, each in the foreground in the lab's process group:

- an authoritative ``named`` for ``lab.test`` (:mod:`edgeagent.lab.sites`): the synthetic
  sites resolve to the origin, ``hosted.lab.test`` into the "own" documentation prefix;
- the hidden primary ``named`` (``bind-update`` publisher, TSIG key made per lab), a
  secondary ``named`` resolver fed from it, an ``unbound`` resolver fed by the agent's
  ``http-notify`` publisher (:mod:`edgeagent.lab.resolvers`, the shipped snippets);
- the origin web server, Squid with the helper and sniproxy (:mod:`edgeagent.lab.proxy`,
  the shipped configs) on their own loopback addresses, resolving through an Unbound
  without the policy;
- an SMTP sink and a webhook sink (:mod:`edgeagent.lab.sinks`) for takedown notices,
  appeal outcomes and acknowledgements of e-mailed notices;
- the report and appeal pages and a Dovecot mailbox for e-mailed notices, with a trusted
  sender whose DKIM key the authoritative ``named`` publishes (:mod:`edgeagent.lab.intake`);
- then the daemon itself, in this process. Once it is ready, ``lab.json`` (0600) says
  where everything is::

    {"dir", "config", "api", "console", "metrics", "tokens": {"noc", "analyst", "supervisor",
     "admin"}, "resolvers": [{"name", "host", "port"}], "sites", "origin", "stop_page",
     "rpz_zone_file", "proxy": {"host", "port"}, "hosted_example": {"host", "customer"},
     "smtp_sink", "webhook_sink", "authoritative": {"host", "port"}, "web_port",
     "report_page", "appeal_page", "mailbox": {"imap", "user", "password",
     "tls_certificate", "trusted_sender", "reference_pattern", "dkim_key", "dkim_selector"},
     "fleet": {"resolvers": [{"name", "kind", "region", "host", "port"}],
               "proxies": [{"name", "host", "port"}]}}

With ``fleet_resolvers`` (``edgeagent lab --fleet [--resolvers N]``) a small national
fleet runs beside them, every daemon from its ``edgeagent render`` snippet
(:mod:`edgeagent.lab.fleet`): two hidden primaries the agent publishes to, a BIND
distribution secondary per region, and N resolvers of mixed kinds (BIND, Unbound,
PowerDNS Recursor, Knot Resolver). ``fleet`` lists every resolver the agent verifies and
every proxy (the lab's Squid, its forward-proxy port).

``--ha`` (``Lab(ha=True)``) puts the store in PostgreSQL: a primary with a synchronous
standby failed over by pg_auto_failover, or by Patroni on etcd with ``--ha-engine
patroni`` (:mod:`edgeagent.lab.pgha`, in
``postgresql/``), and starts a second agent (``agent2/``, its own API and metrics ports)
on the same database. Both publish to the same hidden primary and proxy index, fenced
as in production (only the leader's UPDATEs and index get through); the lab's Unbound
transfers from the first agent's HTTP zone server. ``lab.json`` then also has
``"apis": [url, ...]`` (each agent's API, the first is ``"api"``) and ``"database":
{"engine": ..., "primary": "host:port", "standby": "host:port"}``.

Addresses: one 127.0.N.0/24 block per lab (origin .10, Squid and sniproxy .80, stop page
.81, unfiltered DNS .53). As root the web ports are 80/443 and the unfiltered DNS is on
port 53, as in production; otherwise the web ports are one shared free high port, Squid
resolves the lab names from a hosts file and sniproxy is not started (said in
``lab.json`` under ``notes``).

Ctrl-C or SIGTERM stops everything (also any start-up failure); the directory is removed
unless ``keep`` or it was given and already held files.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import grp
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from edgeagent.config import BUNDLED_LISTS_DIR, load_config
from edgeagent.lab.daemons import DaemonError, ProcessGroup, free_port, free_tcp_port, spawn
from edgeagent.lab.fleet import loopback_inventory, resolver_kinds, start_fleet
from edgeagent.lab.intake import LabIntake, prepare_appeal_key, start_lab_intake
from edgeagent.lab.pgha import DEFAULT_ENGINE, PgCluster, start_pg_cluster
from edgeagent.lab.postgres import store_section
from edgeagent.lab.proxy import start_sniproxy, start_squid
from edgeagent.lab.resolvers import (
    UPDATE_KEY,
    bootstrap_zones,
    start_authoritative,
    start_primary,
    start_secondary,
    start_unbound_http,
    start_unfiltered_resolver,
)
from edgeagent.lab.sinks import SmtpSink, WebhookSink
from edgeagent.lab.sites import HOSTED, SITES, STOP_HOST, ZONE, Origin, lab_zone
from edgeagent.logs import fields
from edgeagent.model import DesiredState
from edgeagent.render.writing import shipped_templates
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.enforcer import RpzConfig, compiler_settings
from edgeagent.rpz.publishers.base import ZoneRelease, zone_file_name
from edgeagent.rpz.publishers.http_notify import HTTP_DIR
from edgeagent.service import Agent, Daemon
from edgeagent.tokens import new_token

__all__ = ["ROLES", "Lab", "LabPlan", "free_port", "lab_config_text", "run_lab"]

log = logging.getLogger("edgeagent.lab")

ROLES = ("noc", "analyst", "supervisor", "admin")
# How long the resolvers and the proxy get to answer their canaries once the agent runs.
READY_TIMEOUT = 60.0
# The agent's own defaults: the lab names its zones as a deployment on the defaults does.
RPZ_ZONE = RpzConfig().zone
RPZ_EXCEPTION_ZONE = RpzConfig().exception_zone
OWN_PREFIX = "203.0.113.0/24"
HOSTED_ADDRESS = "203.0.113.10"
CUSTOMER = "lab-hosting-1"
HTTP_PUBLISHER = "unbound-http"
CUSTOMERS_CSV = (
    "prefix,customer_id,service_id,contact,valid_from,valid_to\n"
    f"203.0.113.0/28,{CUSTOMER},lab-web-1,abuse@hosting.example,2025-01-01T00:00:00Z,\n"
)


def _can_bind(host: str, port: int, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class LabAddresses:
    """The lab's loopback block (``127.0.N``) and its web port (80 as root)."""

    block: str
    web_port: int
    https_port: int | None  # None: no HTTPS origin / sniproxy (not root)
    privileged: bool

    @property
    def origin(self) -> str:
        return f"{self.block}.10"

    @property
    def proxy(self) -> str:
        return f"{self.block}.80"

    @property
    def stop_page(self) -> str:
        return f"{self.block}.81"

    @property
    def dns(self) -> str:
        return f"{self.block}.53"

    @classmethod
    def choose(cls) -> LabAddresses:
        """A 127.0.N block whose well-known ports are free (so labs can run side by side)."""
        privileged = os.geteuid() == 0
        for n in range(100, 200):
            block = f"127.0.{n}"
            if not privileged:
                if _can_bind(f"{block}.80", 0):
                    return cls(
                        block,
                        free_tcp_port(f"{block}.10", f"{block}.80", f"{block}.81"),
                        None,
                        False,
                    )
                continue
            tcp = [(f"{block}.{h}", p) for h in (10, 80, 81) for p in (80, 443)]
            tcp.append((f"{block}.53", 53))
            if all(_can_bind(h, p) for h, p in tcp) and _can_bind(
                f"{block}.53", 53, socket.SOCK_DGRAM
            ):
                return cls(block, 80, 443, True)
        raise RuntimeError("no free 127.0.N.0/24 block for the lab")


@dataclass
class LabPlan:
    """Ports, addresses and paths chosen before anything starts."""

    directory: Path
    api_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    http_notify_port: int = field(default_factory=free_port)
    primary_port: int = field(default_factory=free_port)
    secondary_port: int = field(default_factory=free_port)
    unbound_port: int = field(default_factory=free_port)
    auth_port: int = field(default_factory=free_port)
    addresses: LabAddresses | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "edgeagent.toml"

    @property
    def info_path(self) -> Path:
        return self.directory / "lab.json"

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    @property
    def secrets_dir(self) -> Path:
        return self.directory / "secrets"

    @property
    def index_path(self) -> Path:
        return self.directory / "proxy" / "proxy-index.bin"

    @property
    def rpz_zone_file(self) -> Path:
        return self.state_dir / HTTP_DIR / HTTP_PUBLISHER / zone_file_name(RPZ_ZONE)


def lab_config_text(plan: LabPlan, extra: str = "") -> str:
    """The lab's base config: agent, API, metrics and the bundled sample feeds."""
    samples = BUNDLED_LISTS_DIR / "samples"
    return f"""# Generated by `edgeagent lab`; throwaway.
[agent]
state_dir = "{plan.state_dir}"
log_format = "text"

[api]
host = "127.0.0.1"
port = {plan.api_port}
public_reports_need_approval = true

[metrics]
host = "127.0.0.1"
port = {plan.metrics_port}

[feeds.hotline-sample]
kind = "url-list"
path = "{samples / "hotline-urls.csv"}"
format = "csv"
source = "hotline"
authority = "Example Hotline (synthetic sample)"
interval_seconds = 300

[feeds.police-sample]
kind = "domain-list"
path = "{samples / "police-domains.txt"}"
source = "law-enforcement"
authority = "Example Police (synthetic sample)"
interval_seconds = 300
{extra}"""


def peers_config_text(
    plan: LabPlan,
    addr: LabAddresses,
    smtp_port: int,
    webhook_url: str,
    proxy_port: int,
    *,
    appeal_url: str,
    second: LabPlan | None = None,
) -> str:
    """RPZ publishing, resolvers, proxy and takedown sections for the lab's peers.

    With ``second`` (the ``--ha`` lab's second agent: its own ports) the same peers as
    the first agent's, as a second central agent in production has: the same hidden
    primary (its UPDATEs fenced by the SOA prerequisite), proxy index (fenced by the
    policy version) and takedown channels; not the first agent's HTTP zone server, which
    the lab's Unbound transfers from, and its stop page on a port of its own.
    """
    zone_server = f"""
[publishers.{HTTP_PUBLISHER}]
kind = "http-notify"
host = "127.0.0.1"
port = {plan.http_notify_port}
notify = [{{ host = "127.0.0.1", port = {plan.unbound_port} }}]
retries = 3
{_resolver_toml("unbound", plan.unbound_port)}"""
    stop_page_port = addr.web_port
    if second is not None:
        zone_server, stop_page_port = "", free_tcp_port(addr.stop_page)
    return f"""
[rpz]
zone = "{RPZ_ZONE}"
exception_zone = "{RPZ_EXCEPTION_ZONE}"
default_action = "nxdomain"
stop_page_host = "{STOP_HOST}"
proxy_ipv4 = "{addr.proxy}"
verify_interval_seconds = 5
serial_grace_seconds = 30

[publishers.hidden-primary]
kind = "bind-update"
server = "127.0.0.1"
port = {plan.primary_port}
tsig_key_name = "{UPDATE_KEY}"
tsig_secret_file = "{plan.secrets_dir / "update-tsig"}"
timeout_seconds = 5.0
retries = 3
{_resolver_toml("bind-secondary", plan.secondary_port, "bind")}{zone_server}
[proxy]
enabled = true
index_path = "{plan.index_path}"
{'group = "proxy"' if _has_group("proxy") else ""}
stop_page_listen_host = "{addr.stop_page}"
stop_page_listen_port = {stop_page_port}
proxies = [{{ host = "{addr.proxy}", port = {proxy_port} }}]
verify_interval_seconds = 5
appeal_url = "{appeal_url}"
# The lab's names from their authoritative server (no policy): IP-literal aliases.
alias_resolvers = [{{ host = "127.0.0.1", port = {plan.auth_port} }}]

[takedown]
enabled = true
own_prefixes = ["{OWN_PREFIX}"]
resolvers = [{{ host = "127.0.0.1", port = {plan.auth_port} }}]

[[takedown.customers]]
kind = "csv"
path = "{plan.directory / "customers.csv"}"

[takedown.notifiers.hosting-mail]
kind = "smtp"
host = "127.0.0.1"
port = {smtp_port}
# Loopback only: the sink offers no STARTTLS.
starttls = false
sender = "edgeagent@isp.example"
recipients = ["hosting-abuse@isp.example"]
timeout_seconds = 10.0

[takedown.notifiers.ticket-hook]
kind = "webhook"
url = "{webhook_url}"
secret_file = "{plan.secrets_dir / "webhook-hmac"}"
timeout_seconds = 10.0
"""


def _resolver_toml(name: str, port: int, kind: str = "") -> str:
    """One ``[[resolvers]]`` block on loopback (``kind``: the resolver's, default its name)."""
    return f"""
[[resolvers]]
name = "{name}"
host = "127.0.0.1"
port = {port}
kind = "{kind or name}"
"""


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _check_traversable(directory: Path, group: str = "proxy") -> None:
    """Fail early unless user ``proxy`` (Squid's helper) can reach ``directory``.

    Otherwise the helper cannot read the index and Squid fails open: nothing is blocked.
    """
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return  # no such user on this system: Squid runs as someone else
    for parent in [directory, *directory.parents]:
        st = parent.stat()
        if st.st_mode & 0o001 or (st.st_gid == gid and st.st_mode & 0o010):
            continue
        raise DaemonError(
            f"Squid's helper (user {group}) cannot reach {directory}: {parent} is not "
            "searchable by others; choose a lab directory under /tmp"
        )


def _write_private(path: Path, text: str) -> None:
    """Temp file (0600), fsync, rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.rename(path)


class Lab:
    """The lab's lifecycle: :meth:`run` until stopped; everything cleaned up after."""

    announce: Callable[[Lab], None] | None = None

    def __init__(
        self,
        directory: Path | None = None,
        *,
        keep: bool = False,
        fleet_resolvers: int = 0,
        ha: bool = False,
        ha_engine: str = DEFAULT_ENGINE,
    ) -> None:
        # Remove on exit only what the lab created: a new directory, or one that was empty.
        self.owned = directory is None or not directory.exists() or not any(directory.iterdir())
        self.keep = keep
        self.fleet_resolvers = fleet_resolvers
        self.directory = (directory or Path(tempfile.mkdtemp(prefix="edgeagent-lab-"))).resolve()
        self.plan = LabPlan(self.directory)
        self.info: dict[str, Any] = {}
        self.daemon: Daemon | None = None
        self.group = ProcessGroup()
        self._servers: list[Origin | SmtpSink | WebhookSink] = []
        self.notes: list[str] = []
        self.failure = ""  # why the lab never became ready
        self._announcing: asyncio.Task[None] | None = None
        self._intake: LabIntake | None = None
        self.ha = ha
        self.ha_engine = ha_engine
        self.cluster: PgCluster | None = None
        self.second: SecondAgent | None = None
        # The peers' config sections, for the second agent too (``second=its plan``).
        self._peers_text: Callable[..., str] = peers_config_text

    # -- preparation -------------------------------------------------------------------
    def _write_secrets(self) -> bytes:
        self.plan.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        webhook = secrets.token_hex(32)
        _write_private(self.plan.secrets_dir / "webhook-hmac", webhook + "\n")
        return webhook.encode()

    def prepare(self, extra: str = "") -> Agent:
        """Write the config (base + ``extra``), build the agent, create the tokens."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_private(self.plan.config_path, lab_config_text(self.plan, extra))
        agent = Agent.build(load_config(self.plan.config_path))
        tokens = {}
        for role in ROLES:
            secret, digest = new_token()
            agent.store.add_token(f"lab-{role}", role, digest)
            tokens[role] = secret
        self.info.update(
            {"dir": str(self.directory), "config": str(self.plan.config_path), "tokens": tokens}
        )
        return agent

    async def _start_peers(self) -> str:
        """Start every peer; return the config sections that point the agent at them."""
        plan = self.plan
        addr = plan.addresses = LabAddresses.choose()
        # Squid's helper runs as `proxy`: it must traverse the lab directory.
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o711)  # noqa: S103 - traverse only, no listing
        _check_traversable(self.directory)
        webhook_secret = self._write_secrets()
        proxy_group = "proxy" if _has_group("proxy") else None
        index_dir = plan.index_path.parent
        index_dir.mkdir(mode=0o770, parents=True, exist_ok=True)
        if proxy_group is not None:
            shutil.chown(index_dir, group=proxy_group)
            # The helpers (group proxy) write their stats files here.
            os.chmod(index_dir, 0o2770)  # noqa: S103 - group proxy only
        else:
            os.chmod(index_dir, 0o777)  # noqa: S103 - throwaway lab; no proxy group here
        # Beside the index, where the agent keeps it: Squid's helpers never enter the
        # agent's state directory.
        appeal_key = prepare_appeal_key(index_dir, proxy_group)
        intake = self._intake = start_lab_intake(self.directory, plan.secrets_dir, self.group)
        (plan.directory / "customers.csv").write_text(CUSTOMERS_CSV, encoding="utf-8")

        origin = Origin(
            addr.origin,
            addr.web_port,
            addr.https_port,
            cert_dir=self._mkdir("origin"),
        )
        smtp = SmtpSink(self._mkdir("smtp-sink"))
        webhook = WebhookSink(self._mkdir("webhook-sink"), webhook_secret)
        for server in (origin, smtp, webhook):
            await server.start()
            self._servers.append(server)

        # Blocking starts, in the loop thread: a signal arriving meanwhile is handled
        # once they return (and then stops everything that did start).
        auth = start_authoritative(
            self._mkdir("authoritative"),
            {ZONE: lab_zone(addr.origin, HOSTED_ADDRESS, addr.stop_page) + intake.key.txt_record()},
            port=plan.auth_port,
            group=self.group,
        )
        dns_for_proxy: str | None = None
        if addr.privileged:
            start_unfiltered_resolver(
                self._mkdir("unfiltered-dns"), addr.dns, {ZONE: auth.port}, group=self.group
            )
            dns_for_proxy = addr.dns
        else:
            self.notes.append(
                "not root: web ports are high, Squid resolves the lab names from a hosts "
                "file, no sniproxy"
            )

        # Resolvers start from an empty policy at serial 0 (the agent's first is 1).
        rpz = _bootstrap_rpz()
        empty = ZoneRelease(DesiredState(0, (), ()), rpz, 0)
        bootstrap_zones(self._mkdir("primary-zones"), empty)
        primary = start_primary(
            self._mkdir("primary"),
            plan.directory / "primary-zones",
            [plan.secondary_port],
            port=plan.primary_port,
            group=self.group,
            rpz=rpz,
        )
        _write_private(plan.secrets_dir / "update-tsig", primary.extra["update_secret"] + "\n")
        secondary = start_secondary(
            self._mkdir("bind-secondary"),
            primary,
            plan.secondary_port,
            {ZONE: auth.port},
            group=self.group,
            rpz=rpz,
        )
        unbound_dir = self._mkdir("unbound")
        bootstrap_zones(unbound_dir, empty)
        unbound = start_unbound_http(
            unbound_dir,
            f"http://127.0.0.1:{plan.http_notify_port}",
            {ZONE: auth.port},
            port=plan.unbound_port,
            group=self.group,
            rpz=rpz,
        )

        web = "" if addr.web_port == 80 else f":{addr.web_port}"
        stop_base = f"http://{addr.stop_page}{web}"
        squid = start_squid(
            self._mkdir("squid"),
            plan.index_path,
            stop_base,
            listen=addr.proxy,
            accel_port=addr.web_port,
            resolver=dns_for_proxy,
            hosts=None if dns_for_proxy else dict.fromkeys((*SITES, HOSTED), addr.origin),
            stats_file=index_dir / "helper-stats-%p.json",
            group=self.group,
            appeal_key=appeal_key,
        )
        if addr.https_port is not None and dns_for_proxy is not None:
            start_sniproxy(
                self._mkdir("sniproxy"),
                addr.proxy,
                addr.https_port,
                dns_for_proxy,
                group=self.group,
            )

        fleet_config, fleet_resolvers = self._start_fleet()
        lab_resolvers = [
            {
                "name": "bind-secondary",
                "kind": "bind",
                "host": secondary.host,
                "port": secondary.port,
            },
            {"name": "unbound", "kind": "unbound", "host": unbound.host, "port": unbound.port},
        ]
        self.info.update(
            {
                "resolvers": [{k: v for k, v in r.items() if k != "kind"} for r in lab_resolvers],
                "fleet": {
                    "resolvers": [{**r, "region": "lab"} for r in lab_resolvers] + fleet_resolvers,
                    "proxies": [{"name": "squid", "host": addr.proxy, "port": squid.proxy_port}],
                },
                "sites": list(SITES),
                "origin": origin.url,
                "stop_page": f"{stop_base}/blocked",
                "rpz_zone_file": str(plan.rpz_zone_file),
                "proxy": {"host": addr.proxy, "port": squid.proxy_port},
                "hosted_example": {"host": HOSTED, "customer": CUSTOMER},
                "smtp_sink": str(smtp.directory),
                "webhook_sink": str(webhook.directory),
                "authoritative": {"host": auth.host, "port": auth.port},
                "web_port": addr.web_port,
                "notes": self.notes,
                **intake.info(),
            }
        )
        self._peers_text = partial(
            peers_config_text,
            plan,
            addr,
            smtp.port,
            webhook.url,
            squid.proxy_port,
            appeal_url=f"{intake.pages}/appeal",
        )
        peers = self._peers_text()
        return peers + intake.config_text(auth.port, "hosting-mail") + fleet_config

    def _start_fleet(self) -> tuple[str, list[dict[str, Any]]]:
        """The rendered fleet, when asked for: the agent's config fragment (its publishers
        and resolvers, as rendered) and the resolvers for ``lab.json``."""
        if not self.fleet_resolvers:
            return "", []
        base = self._mkdir("fleet")
        inventory = loopback_inventory(base, resolver_kinds(self.fleet_resolvers))
        start_fleet(base, inventory, _bootstrap_rpz(), shipped_templates(), group=self.group)
        resolvers = [
            {"name": r.name, "kind": r.kind, "region": r.region, "host": r.address, "port": r.port}
            for r in inventory.resolvers
        ]
        return (base / "agent" / "fleet.toml").read_text(encoding="utf-8"), resolvers

    def _mkdir(self, name: str) -> Path:
        path = self.directory / name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    # -- running -----------------------------------------------------------------------
    def _on_ready(self, daemon: Daemon) -> None:
        self._announcing = asyncio.get_running_loop().create_task(self._announce_when_ready(daemon))

    async def _announce_when_ready(self, daemon: Daemon) -> None:
        """Write ``lab.json`` and announce once every peer runs and every enforcement
        point answers its canary; otherwise stop the lab and say what failed."""
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        while True:
            exited = [
                f"{name} exited with status {proc.returncode}"
                for name, proc in self.group.procs
                if proc.poll() is not None
            ]
            reasons = exited
            if not exited:
                await daemon.agent.enforcers.verify()
                reasons = daemon.readiness()
                if self.second is not None:
                    reasons += await asyncio.to_thread(self.second.not_ready)
                if not reasons:
                    break
            # A dead peer does not come back: fail now; a canary may still turn.
            if exited or asyncio.get_running_loop().time() > deadline:
                self.failure = "; ".join(reasons)
                log.error("lab not ready, stopping", extra=fields(reasons=reasons))
                daemon.request_stop()
                return
            await asyncio.sleep(1)
        self.info["api"] = daemon.api_url
        self.info["metrics"] = daemon.metrics_url
        self.info["console"] = daemon.console_url
        if self.second is not None:
            self.info["apis"] = [daemon.api_url, self.second.api]
        _write_private(self.plan.info_path, json.dumps(self.info, indent=2) + "\n")
        if self.announce is not None:
            self.announce(self)

    async def run(self) -> None:
        """Start everything, run until SIGTERM/SIGINT, stop everything, clean up."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        # Until the daemon installs its own handlers: a signal cancels the start-up.
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, task.cancel)
        agent: Agent | None = None
        try:
            extra = await self._start_peers()
            store = await self._start_database() if self.ha else ""
            agent = self.prepare(extra + store)
            if self.ha:
                self.second = self._start_second_agent(store)
            self.daemon = Daemon(agent, self.plan.config_path)
            await self.daemon.run(on_ready=self._on_ready)
        except asyncio.CancelledError:
            log.info("lab stopped during start-up")
        finally:
            await self._stop_all(agent)
        if self.failure:
            raise DaemonError(f"the lab never became ready: {self.failure}")

    async def _start_database(self) -> str:
        """The PostgreSQL pair and its monitor; return the agents' ``[store]`` section."""
        cluster = self.cluster = await asyncio.to_thread(
            functools.partial(
                start_pg_cluster, self.directory / "postgresql", engine=self.ha_engine
            )
        )
        password = secrets.token_urlsafe(24)
        dsn = await asyncio.to_thread(cluster.create_database, "edgeagent", "edgeagent", password)
        primary, standby = cluster.nodes
        self.info["database"] = {
            "engine": cluster.engine,
            "primary": primary.address,
            "standby": standby.address,
        }
        return "\n" + store_section(dsn, password, self.plan.secrets_dir)

    def _start_second_agent(self, store: str) -> SecondAgent:
        """``edgeagent run`` on the same database, with ports and a state of its own."""
        directory = self._mkdir("agent2")
        plan = LabPlan(directory)
        peers = self._peers_text(second=plan)
        _write_private(plan.config_path, lab_config_text(plan, peers + store))
        argv = [sys.executable, "-m", "edgeagent.cli", "run", "-c", str(plan.config_path)]
        spawn("agent2", argv, directory, self.group)
        return SecondAgent(
            f"http://127.0.0.1:{plan.api_port}", f"http://127.0.0.1:{plan.metrics_port}"
        )

    async def _stop_all(self, agent: Agent | None) -> None:
        self.group.stop_all()
        if self._intake is not None:
            self._intake.stop()
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.stop)
        for server in reversed(self._servers):
            with contextlib.suppress(Exception):
                await server.close()
        self._servers.clear()
        if agent is not None:
            agent.close()
        if self.owned and not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.request_stop()


def _bootstrap_rpz() -> RpzSettings:
    """Compiler settings for the bootstrap zones and the daemons' templates: the zone
    names and the canary matter."""
    return compiler_settings(RpzConfig(zone=RPZ_ZONE, exception_zone=RPZ_EXCEPTION_ZONE), {})


@dataclass(frozen=True)
class SecondAgent:
    """The ``--ha`` lab's second agent: where its API and its probes answer."""

    api: str
    metrics: str

    def not_ready(self) -> list[str]:
        """Its ``/readyz`` reasons (one saying it does not answer yet, if so)."""
        try:
            # An http:// URL this lab built, never one from input.
            with urllib.request.urlopen(f"{self.metrics}/readyz", timeout=2) as resp:  # noqa: S310
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        except OSError:
            return ["agent2 does not answer yet"]
        return [f"agent2: {reason}" for reason in body.get("reasons", [])]


def run_lab(
    directory: Path | None,
    keep: bool,
    announce: Callable[[Lab], None],
    fleet_resolvers: int = 0,
    *,
    ha: bool = False,
    ha_engine: str = DEFAULT_ENGINE,
) -> None:
    """Run a lab until Ctrl-C/SIGTERM (the CLI's ``edgeagent lab``)."""
    lab = Lab(directory, keep=keep, fleet_resolvers=fleet_resolvers, ha=ha, ha_engine=ha_engine)
    lab.announce = announce
    asyncio.run(lab.run())
