"""``http-notify`` publisher: serve the zones over HTTP and send DNS NOTIFY.

For Unbound's ``rpz: url:`` (Unbound has no TSIG for ``primary:``). The agent serves the
policy and exception zones at ``GET /zones/<zone>.zone`` to the configured client networks
only (403 for anyone else: the zones are confidential list data), and after each publish
sends a DNS NOTIFY for each zone to the configured resolvers, which then fetch the whole
zone (this path is O(zone); the O(change) push is ``bind-update``). Per
:mod:`edgeagent.rpz.publishers.base`:

* validate: both zones are streamed into temporary files in the serving directory (mode
  0600: only the agent reads them) and checked exactly as the ``zonefile`` publisher does
  (:func:`~edgeagent.rpz.publishers.zonefile.check_zone_file`). A failure discards them:
  what is served never changes.
* apply: atomic rename into place -- a fetch in progress keeps reading the old file, the
  next one gets the new file -- then NOTIFY to every resolver, retried with backoff.
* verify: every target must answer the canary with the release serial.
* keep old: only validated versions are ever served. A version already served is not
  withdrawn when a resolver is unreachable (withdrawing would unblock names at resolvers
  that fetched it); ``PublishError`` reports the failure.

The HTTP server (:class:`ZoneServer`) runs in the daemon's event loop; the publisher runs
in a worker thread. They share only the serving directory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self

from edgeagent import listeners
from edgeagent.atomic import StagedFile
from edgeagent.configtypes import Endpoint, IpNetwork, Items, ListenHost, ListenPort
from edgeagent.errors import PublishError
from edgeagent.limits import DEFAULT_LIMITS, ConnectionLimits
from edgeagent.plugins import own_config
from edgeagent.rpz.publishers.base import (
    CanaryResult,
    Publisher,
    PublisherConfig,
    PublisherContext,
    Reach,
    ResolverTarget,
    ZoneRelease,
    send_notify,
    wait_for_serial,
    zone_file_name,
)
from edgeagent.rpz.publishers.zonefile import ZoneJob, stage_zone_files

if TYPE_CHECKING:
    from aiohttp import web

SERVED_MODE = 0o600
HTTP_DIR = "rpz-http"  # under the state directory: one serving directory per publisher
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (
    ipaddress.IPv4Network("127.0.0.0/8"),
    ipaddress.IPv6Network("::1/128"),
)


class HttpNotifyConfig(PublisherConfig):
    """``kind = "http-notify"``: serve the zones over HTTP (Unbound ``rpz: url:``) and
    send DNS NOTIFY."""

    kind: Literal["http-notify"]
    host: ListenHost = "127.0.0.1"
    port: ListenPort = 8653
    allowed_clients: Items[IpNetwork] = LOOPBACK
    notify: Items[Endpoint] = ()

    def reach(self, resolver: ResolverTarget) -> Reach:
        notified = any((e.host, e.port) == (resolver.host, resolver.port) for e in self.notify)
        return Reach.DIRECT if notified else Reach.NONE


def zone_path(directory: Path, zone: str) -> Path:
    """Where the served copy of ``zone`` lives (also the URL's last segment)."""
    return directory / zone_file_name(zone)


def zone_url_path(zone: str) -> str:
    """The URL path of ``zone`` on the agent's HTTP server."""
    return f"/zones/{zone_file_name(zone)}"


class ZoneServer:
    """aiohttp server for ``GET /zones/<zone>.zone``, limited to ``allowed`` networks.

    No access log (it would record resolver and client addresses). ``port=0`` lets the
    kernel choose (tests); :attr:`port` says which.
    """

    def __init__(
        self,
        directory: Path,
        zones: Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int = 8653,
        allowed: Sequence[Network] = LOOPBACK,
        limits: ConnectionLimits = DEFAULT_LIMITS,
    ) -> None:
        self.directory = directory
        self.limits = limits
        self.zones = frozenset(zones)
        self.host = host
        self.port = port
        self.allowed = tuple(allowed)
        self._listener: listeners.Listener | None = None
        self.requests = 0
        self.refused = 0

    def app(self) -> web.Application:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/zones/{file}", self._zone)
        return app

    def allows(self, remote: str | None) -> bool:
        if not remote:
            return False
        try:
            addr = ipaddress.ip_address(remote.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == n.version and addr in n for n in self.allowed)

    async def _zone(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        self.requests += 1
        if not self.allows(request.remote):
            self.refused += 1
            raise web.HTTPForbidden(text="forbidden\n")
        name = request.match_info["file"]
        zone = name.removesuffix(".zone")
        if not name.endswith(".zone") or zone not in self.zones:
            raise web.HTTPNotFound(text="no such zone\n")
        path = zone_path(self.directory, zone)
        try:
            # Read whole under the open file: a rename in the meantime does not mix
            # versions (the open descriptor keeps the old inode).
            body = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise web.HTTPServiceUnavailable(text="zone not published yet\n") from None
        return web.Response(
            body=body,
            content_type="text/dns",
            headers={"Cache-Control": "no-store"},
        )

    async def start(self) -> None:
        # A rebuilt publisher (config reload) starts its server on the same address
        # before the old one stops, so the zones stay reachable throughout.
        self._listener = await listeners.start(self.app(), self.host, self.port, self.limits)
        self.port = self._listener.port  # the kernel's choice when port=0

    async def close(self) -> None:
        if self._listener is not None:
            await listeners.stop(self._listener)
            self._listener = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class ThreadedZoneServer:
    """Run a :class:`ZoneServer` in its own thread and event loop (lab, bench, tests)."""

    def __init__(self, server: ZoneServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> ThreadedZoneServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    """A resolver to send NOTIFY to."""

    host: str
    port: int = 53


@dataclass(slots=True)
class _Staged:
    files: list[tuple[str, StagedFile]] = field(default_factory=list)


class HttpNotifyPublisher(Publisher[_Staged]):
    """Validate and swap in the served zone files, then NOTIFY the resolvers."""

    KIND = "http-notify"
    Config = HttpNotifyConfig

    def __init__(
        self,
        name: str,
        *,
        directory: str | os.PathLike[str],
        notify: Sequence[NotifyTarget] = (),
        targets: Sequence[ResolverTarget] = (),
        retries: int = 5,
        timeout: float = 2.0,
        backoff_base: float = 0.2,
        backoff_max: float = 5.0,
        verify_timeout: float = 10.0,
        checkzone: str | None = "named-checkzone",
    ) -> None:
        super().__init__(name)
        self.directory = Path(directory)
        self.notify_targets = tuple(notify)
        self.targets = tuple(targets)
        self.retries = retries
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.verify_timeout = verify_timeout
        self.checkzone = shutil.which(checkzone) if checkzone else None
        self.notifies_sent = 0
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.zone_server: ZoneServer | None = None  # run by start()/close() when set

    @classmethod
    def from_config(cls, name: str, config: PublisherConfig, context: PublisherContext) -> Self:
        cfg = own_config(config, HttpNotifyConfig)
        pub = cls(
            name,
            directory=context.state_dir / HTTP_DIR / name,
            notify=[NotifyTarget(e.host, e.port) for e in cfg.notify],
            targets=context.targets,
            retries=cfg.retries,
            verify_timeout=context.verify_timeout,
        )
        zones = [context.policy_zone, context.exception_zone]
        pub.zone_server = pub.server(
            zones,
            host=cfg.host,
            port=cfg.port,
            allowed=cfg.allowed_clients,
            limits=context.limits,
        )
        return pub

    def server(
        self,
        zones: Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int = 8653,
        allowed: Sequence[Network] = LOOPBACK,
        limits: ConnectionLimits = DEFAULT_LIMITS,
    ) -> ZoneServer:
        """A :class:`ZoneServer` for this publisher's serving directory."""
        return ZoneServer(
            self.directory, zones, host=host, port=port, allowed=allowed, limits=limits
        )

    async def start(self) -> None:
        if self.zone_server is not None:
            await self.zone_server.start()

    async def close(self) -> None:
        if self.zone_server is not None:
            await self.zone_server.close()

    # -- validate -----------------------------------------------------------------------
    def prepare(self, release: ZoneRelease) -> _Staged:
        s = release.settings
        # The exception zone first (renamed and notified first): the policy zone carries
        # the canary, so a resolver showing the new serial has this version's allows.
        jobs: list[ZoneJob] = [
            (zone, zone_path(self.directory, zone), text)
            for zone, text in (
                (s.exception_zone, release.exception_text),
                (s.zone, release.policy_text),
            )
        ]
        return _Staged(stage_zone_files(self.name, jobs, self.checkzone, SERVED_MODE))

    # -- apply --------------------------------------------------------------------------
    def apply(self, prepared: _Staged) -> None:
        for _, f in prepared.files:
            f.commit()
        failures: list[str] = []
        for zone, _ in prepared.files:
            for t in self.notify_targets:
                if not self._notify(zone, t):
                    failures.append(f"{t.host}:{t.port}")
        if failures:
            raise PublishError(
                self.name, f"NOTIFY not acknowledged by: {', '.join(sorted(set(failures)))}"
            )

    def _notify(self, zone: str, target: NotifyTarget) -> bool:
        """Send one NOTIFY for ``zone``; True once the resolver acknowledges it."""
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
                time.sleep(delay * (0.5 + random.random() / 2))
            self.notifies_sent += 1
            if send_notify(zone, target.host, target.port, self.timeout):
                return True
        return False

    # -- verify -------------------------------------------------------------------------
    def verify(self, release: ZoneRelease) -> tuple[CanaryResult, ...]:
        return wait_for_serial(
            self.targets, release.settings.canary, release.serial, self.verify_timeout, self.name
        )

    def cleanup(self, prepared: _Staged) -> None:
        for _, f in prepared.files:
            f.discard()
