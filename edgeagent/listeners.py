"""HTTP listeners that a successor takes over without a gap (the agent's own servers that
a config reload rebuilds: the stop page, the RPZ zone server).

A listening socket belongs to its address, not to a server: a server started on an
address that another server of this process already listens on serves a duplicate of the
same socket. So a rebuilt server starts *before* the old one stops, both accept from the
one queue of the kernel for a moment, and when the old one stops nothing is lost (two
separate sockets sharing a port would reset the connections queued at the closed one).
The old server stops accepting, gives the connections it has just accepted a moment to
reach its app (asyncio finishes accepting a connection over a few loop turns), then
drains. The socket closes with the last server on it. Each server enforces its
connection limits (:mod:`edgeagent.connlimits`). No access log (it would record
client addresses), and aiohttp's parser-error records redacted (they would log the request
line).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from edgeagent.limits import ConnectionLimits

ACCEPT_GRACE_SECONDS = 0.2


@dataclass
class _Shared:
    sock: socket.socket
    servers: int = 0


_lock = threading.Lock()  # the lab and tests run servers in threads of their own
_sockets: dict[tuple[str, int], _Shared] = {}


@dataclass(frozen=True, slots=True)
class Listener:
    """One server on a (possibly shared) listening socket; end it with :func:`stop`."""

    runner: web.AppRunner
    address: tuple[str, int]

    @property
    def port(self) -> int:
        return self.address[1]


def _socket_for(host: str, port: int) -> tuple[tuple[str, int], _Shared]:
    with _lock:
        shared = _sockets.get((host, port)) if port else None
        if shared is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, port), family=family, backlog=128)
            sock.setblocking(False)
            port = int(sock.getsockname()[1])  # the kernel's choice for port 0
            shared = _sockets[(host, port)] = _Shared(sock)
        shared.servers += 1
        return (host, port), shared


def _release(address: tuple[str, int]) -> None:
    with _lock:
        shared = _sockets[address]
        shared.servers -= 1
        if shared.servers == 0:
            del _sockets[address]
            shared.sock.close()


async def start(app: web.Application, host: str, port: int, limits: ConnectionLimits) -> Listener:
    """Serve ``app`` on ``host:port`` (``port=0``: the kernel picks a free one) under
    ``limits`` (:mod:`edgeagent.connlimits`)."""
    from edgeagent import connlimits  # aiohttp: not at start-up

    address, shared = _socket_for(host, port)
    try:
        runner = await connlimits.serve(app, limits, sock=shared.sock.dup())
    except BaseException:
        _release(address)
        raise
    return Listener(runner, address)


async def stop(listener: Listener) -> None:
    """Stop accepting, let the connections just accepted reach the app, then drain."""
    for site in list(listener.runner.sites):
        await site.stop()
    await asyncio.sleep(ACCEPT_GRACE_SECONDS)
    await listener.runner.cleanup()
    _release(listener.address)
