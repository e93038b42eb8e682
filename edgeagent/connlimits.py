"""Connection limits for every HTTP listener of the agent: a header timeout, an idle
timeout and a cap on open connections.

aiohttp closes a connection that has not completed a request header within its
keep-alive timeout (counted from the connection, or from the end of the previous response)
and nothing else: a client sending a header a byte at a time, or many clients that
connect and say nothing, would hold file descriptors until the process runs out of them.
:class:`GuardedSite` puts a thin protocol in front of aiohttp's request handler:

* ``header_timeout`` -- a new connection has this long to complete its first request
  header (the blank line ending it), else it is aborted; a TLS handshake has as long;
* ``idle_timeout`` -- aiohttp's keep-alive timeout: a kept-alive connection that completes
  no new request header within this long after the previous response is closed;
* ``max_connections`` -- at the cap a new connection evicts the oldest connection that has
  still not completed its first header; when every open connection is past its header (all
  busy with real requests) the new one is refused. So slow or silent clients cannot starve
  the others: they only take each other's places.

Nothing is logged per connection (a flood of slow clients would become a flood of log
lines).
"""

from __future__ import annotations

import asyncio
import resource
import socket
import ssl
from collections.abc import Callable
from typing import cast

from aiohttp import web

from edgeagent.limits import ConnectionLimits
from edgeagent.logs import redact_aiohttp_server_logs

_HEADER_END = b"\r\n\r\n"


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one; return the new soft limit.

    Under load the listeners hold up to their caps, and the kernel hands over a batch of
    accepted sockets before the cap can drop any: the usual soft limit of 1,024 is too
    small for four listeners (the unit's ``LimitNOFILE`` raises both limits; this covers a
    start outside it).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


class _Connections:
    """The open connections of one site, oldest first."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._open: dict[_GuardedProtocol, None] = {}  # insertion order = age

    def admit(self, conn: _GuardedProtocol) -> bool:
        """Make room for ``conn`` (evicting the oldest header-less one) or refuse it."""
        if len(self._open) >= self.limits.max_connections:
            oldest = next((c for c in self._open if c.awaiting_header), None)
            if oldest is None:
                return False
            oldest.abort()
        self._open[conn] = None
        return True

    def forget(self, conn: _GuardedProtocol) -> None:
        self._open.pop(conn, None)

    def __len__(self) -> int:
        return len(self._open)


class _GuardedProtocol(asyncio.Protocol):
    """Forwards every event to aiohttp's handler; enforces the header timeout and the cap."""

    def __init__(self, inner: asyncio.Protocol, connections: _Connections) -> None:
        self._inner = inner
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen, for a header end split across reads
        self._admitted = False

    @property
    def awaiting_header(self) -> bool:
        return self._header_timer is not None

    def abort(self) -> None:
        self._stop_timer()
        self._connections.forget(self)
        if self._transport is not None:
            self._transport.abort()

    def _stop_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream server's transport
        if not self._connections.admit(self):
            self._transport.abort()
            return
        self._admitted = True
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self._connections.limits.header_timeout, self.abort)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if self._header_timer is not None:
            seen = self._tail + data
            if _HEADER_END in seen:
                self._stop_timer()
                self._tail = b""
            else:
                self._tail = seen[-(len(_HEADER_END) - 1) :]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self._connections.forget(self)
        if self._admitted:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """A site serving a runner's app on ``sock`` (or ``host:port``) under ``limits``."""

    __slots__ = ("_address", "_connections", "_sock")

    def __init__(
        self,
        runner: web.BaseRunner,
        limits: ConnectionLimits,
        *,
        sock: socket.socket | None = None,
        address: tuple[str, int] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        if (sock is None) == (address is None):
            raise ValueError("give a socket or an address")
        self._sock = sock
        self._address = address
        self._connections = _Connections(limits)

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        host, port = self._sock.getsockname()[:2] if self._sock else self._address or ("", 0)
        return f"{scheme}://{host}:{port}"

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # BaseSite.__init__ checked it
        factory: Callable[[], asyncio.Protocol] = lambda: _GuardedProtocol(  # noqa: E731
            server(), self._connections
        )
        loop = asyncio.get_running_loop()
        # A TLS handshake happens before the protocol sees the connection: bound it too.
        handshake = self._connections.limits.header_timeout if self._ssl_context else None
        if self._sock is not None:
            self._server = await loop.create_server(
                factory,
                sock=self._sock,
                ssl=self._ssl_context,
                backlog=self._backlog,
                ssl_handshake_timeout=handshake,
            )
        else:
            assert self._address is not None
            host, port = self._address
            self._server = await loop.create_server(
                factory,
                host,
                port,
                ssl=self._ssl_context,
                backlog=self._backlog,
                reuse_address=True,
                ssl_handshake_timeout=handshake,
            )


def limited(
    factory: Callable[[], asyncio.Protocol], limits: ConnectionLimits
) -> Callable[[], asyncio.Protocol]:
    """``factory``'s protocols under the header timeout and the cap of ``limits``, for a
    listener that is not an aiohttp site (the LMTP one: its first message header must end
    within the header timeout); the idle timeout is the protocol's own to apply."""
    connections = _Connections(limits)
    return lambda: _GuardedProtocol(factory(), connections)


async def serve(
    app: web.Application,
    limits: ConnectionLimits,
    *,
    sock: socket.socket | None = None,
    address: tuple[str, int] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout: float = 10.0,
) -> web.AppRunner:
    """Serve ``app`` on ``sock`` or ``address`` under ``limits``: how every listener of the
    daemon starts (API, metrics, stop page, zone server, public pages), so none can be
    opened without them. No access log (it would record client addresses), aiohttp's
    error records redacted (they would quote the request line) and its keep-alive timeout
    the idle timeout. ``await runner.cleanup()`` drains and stops it."""
    redact_aiohttp_server_logs()
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=limits.idle_timeout,
    )
    await runner.setup()
    try:
        site = GuardedSite(runner, limits, sock=sock, address=address, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
