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

    {"dir", "config", "api", "metrics", "tokens": {"noc", "analyst", "supervisor",
     "admin"}, "resolvers": [{"name", "host", "port"}], "sites", "origin", "stop_page",
     "rpz_zone_file", "proxy": {"host", "port"}, "hosted_example": {"host", "customer"},
     "smtp_sink", "webhook_sink", "authoritative": {"host", "port"}, "web_port",
     "report_page", "appeal_page", "mailbox": {"imap", "user", "password",
     "tls_certificate", "trusted_sender", "reference_pattern", "dkim_key", "dkim_selector"}}

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
import grp
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeagent.config import BUNDLED_LISTS_DIR, load_config
from edgeagent.lab.daemons import DaemonError, ProcessGroup, free_port, free_tcp_port
from edgeagent.lab.intake import LabIntake, prepare_appeal_key, start_lab_intake
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
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.enforcer import RpzConfig, compiler_settings
from edgeagent.rpz.publishers.base import ZoneRelease
from edgeagent.rpz.publishers.http_notify import HTTP_DIR
from edgeagent.service import Agent, Daemon
from edgeagent.tokens import new_token

__all__ = ["ROLES", "Lab", "LabPlan", "free_port", "lab_config_text", "run_lab"]

log = logging.getLogger("edgeagent.lab")

ROLES = ("noc", "analyst", "supervisor", "admin")
# How long the resolvers and the proxy get to answer their canaries once the agent runs.
READY_TIMEOUT = 60.0
RPZ_ZONE = "rpz.edgeagent.invalid"  # the names the shipped snippets use
RPZ_EXCEPTION_ZONE = "rpz-exceptions.edgeagent.invalid"
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
        return self.state_dir / HTTP_DIR / HTTP_PUBLISHER / f"{RPZ_ZONE}.zone"


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
) -> str:
    """RPZ publishing, resolvers, proxy and takedown sections for the lab's peers."""
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

[publishers.{HTTP_PUBLISHER}]
kind = "http-notify"
host = "127.0.0.1"
port = {plan.http_notify_port}
notify = [{{ host = "127.0.0.1", port = {plan.unbound_port} }}]
retries = 3

[[resolvers]]
name = "bind-secondary"
host = "127.0.0.1"
port = {plan.secondary_port}
kind = "bind"

[[resolvers]]
name = "unbound"
host = "127.0.0.1"
port = {plan.unbound_port}
kind = "unbound"

[proxy]
enabled = true
index_path = "{plan.index_path}"
{'group = "proxy"' if _has_group("proxy") else ""}
stop_page_listen_host = "{addr.stop_page}"
stop_page_listen_port = {addr.web_port}
proxies = [{{ host = "{addr.proxy}", port = {proxy_port} }}]
verify_interval_seconds = 5
appeal_url = "{appeal_url}"

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

    def __init__(self, directory: Path | None = None, *, keep: bool = False) -> None:
        # Remove on exit only what the lab created: a new directory, or one that was empty.
        self.owned = directory is None or not directory.exists() or not any(directory.iterdir())
        self.keep = keep
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
        appeal_key = prepare_appeal_key(plan.state_dir, proxy_group)
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
        empty = ZoneRelease(DesiredState(0, (), ()), _bootstrap_rpz(), 0)
        bootstrap_zones(self._mkdir("primary-zones"), empty)
        primary = start_primary(
            self._mkdir("primary"),
            plan.directory / "primary-zones",
            [plan.secondary_port],
            port=plan.primary_port,
            group=self.group,
        )
        _write_private(plan.secrets_dir / "update-tsig", primary.extra["update_secret"] + "\n")
        secondary = start_secondary(
            self._mkdir("bind-secondary"),
            primary,
            plan.secondary_port,
            {ZONE: auth.port},
            group=self.group,
        )
        unbound_dir = self._mkdir("unbound")
        bootstrap_zones(unbound_dir, empty)
        unbound = start_unbound_http(
            unbound_dir,
            f"http://127.0.0.1:{plan.http_notify_port}",
            {ZONE: auth.port},
            port=plan.unbound_port,
            group=self.group,
        )

        index_dir = plan.index_path.parent
        index_dir.mkdir(mode=0o770, parents=True, exist_ok=True)
        if _has_group("proxy"):
            shutil.chown(index_dir, group="proxy")
            # The helpers (group proxy) write their stats files here.
            os.chmod(index_dir, 0o2770)  # noqa: S103 - group proxy only
        else:
            os.chmod(index_dir, 0o777)  # noqa: S103 - throwaway lab; no proxy group here
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

        self.info.update(
            {
                "resolvers": [
                    {"name": "bind-secondary", "host": secondary.host, "port": secondary.port},
                    {"name": "unbound", "host": unbound.host, "port": unbound.port},
                ],
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
        peers = peers_config_text(
            plan,
            addr,
            smtp.port,
            webhook.url,
            squid.proxy_port,
            appeal_url=f"{intake.pages}/appeal",
        )
        return peers + intake.config_text(auth.port, "hosting-mail")

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
            agent = self.prepare(extra)
            self.daemon = Daemon(agent, self.plan.config_path)
            await self.daemon.run(on_ready=self._on_ready)
        except asyncio.CancelledError:
            log.info("lab stopped during start-up")
        finally:
            await self._stop_all(agent)
        if self.failure:
            raise DaemonError(f"the lab never became ready: {self.failure}")

    async def _stop_all(self, agent: Agent | None) -> None:
        self.group.stop_all()
        if self._intake is not None:
            self._intake.stop()
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
    """Compiler settings for the bootstrap zones: only the zone names matter."""
    return compiler_settings(RpzConfig(zone=RPZ_ZONE, exception_zone=RPZ_EXCEPTION_ZONE), {})


def run_lab(directory: Path | None, keep: bool, announce: Callable[[Lab], None]) -> None:
    """Run a lab until Ctrl-C/SIGTERM (the CLI's ``edgeagent lab``)."""
    lab = Lab(directory, keep=keep)
    lab.announce = announce
    asyncio.run(lab.run())
