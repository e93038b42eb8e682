"""A real Squid from the shipped config, the servers behind it, and a raw HTTP client.

:func:`start_squid` wraps :func:`edgeagent.lab.proxy.start_squid` (shared with
``edgeagent lab``) in the tests' call shape ``(workdir, index, stop_url, hosts)``: the
``squid.conf`` template (:mod:`edgeagent.render.filling`) filled, checked with
``squid -k parse`` and run
with ``squid -N`` in the foreground. Names are resolved from a ``hosts_file``, or, with
``resolver=ADDR``, through the DNS server at ``ADDR`` port 53
(:func:`edgeagent.lab.resolvers.start_unfiltered_resolver` starts one). ``listen``/
``accel_port`` put the ports on another loopback address. Squid drops to the ``proxy``
user, so ``workdir`` and the index must be readable by it.

:class:`Servers` is the origin and the stop page Squid talks to. :func:`raw_get` sends a
GET exactly as spelled; :func:`send` writes any request line byte for byte and returns the
status, ``Location`` and body.
"""

from __future__ import annotations

import http.client
import io
import socket
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from edgeagent.lab import proxy as _proxy
from edgeagent.lab.daemons import HOST
from edgeagent.lab.proxy import RunningSquid
from edgeagent.proxy.stoppage import StopPageSettings, StopPageSource, create_stop_page_app
from tests.support.webapps import BackgroundApps


def start_squid(
    workdir: Path,
    index: Path,
    stop_url: str,
    hosts: dict[str, str],
    fail_mode: str = "open",
    *,
    listen: str = HOST,
    accel_port: int | None = None,
    resolver: str | None = None,
) -> RunningSquid:
    return _proxy.start_squid(
        workdir,
        index,
        stop_url,
        listen=listen,
        accel_port=accel_port,
        resolver=resolver,
        hosts=hosts,
        fail_mode=fail_mode,
    )


class Servers(BackgroundApps):
    """Origin and stop page (aiohttp) in a background thread with its own loop."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str] = []
        self.origin_port = self.serve(self._origin_app(), HOST)
        settings = StopPageSettings(
            sources={"iwf": StopPageSource("the Example Hotline"), "decision": StopPageSource("us")}
        )
        self.stop_port = self.serve(create_stop_page_app(settings, on_hit=self.hits.append), HOST)

    @staticmethod
    def _origin_app() -> web.Application:
        async def page(request: web.Request) -> web.Response:
            return web.Response(
                text=f"origin {request.host.split(':')[0]} {request.path} "
                f"xff={request.headers.get('X-Forwarded-For', '')}"
            )

        app = web.Application()
        app.router.add_get("/{tail:.*}", page)
        return app


def raw_get(
    port: int,
    target: str,
    host: str | None = None,
    *,
    address: str = HOST,
    source: str | None = None,
) -> tuple[int, dict[str, str], str]:
    """Send ``GET <target>`` to ``address:port`` exactly as spelled (no client-side URL
    normalisation), from the ``source`` address if given; return (status, headers, body)."""
    source_address = (source, 0) if source is not None else None
    conn = http.client.HTTPConnection(address, port, timeout=10, source_address=source_address)
    try:
        conn.putrequest("GET", target, skip_host=host is not None, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


@dataclass(frozen=True)
class Reply:
    status: int
    location: str
    body: str


def send(
    addr: str, port: int, request_line: str, host: str | None, source: str | None = None
) -> Reply:
    """Write ``request_line`` (+ ``Host`` when given) to ``addr:port`` as is; read the reply."""
    head = request_line + "\r\n"
    if host is not None:
        head += f"Host: {host}\r\n"
    head += "Connection: close\r\n\r\n"
    with socket.create_connection(
        (addr, port), timeout=10, source_address=(source, 0) if source else None
    ) as sock:
        sock.sendall(head.encode("ascii"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header, _, body = data.partition(b"\r\n\r\n")
    status, location = _status_and_location(header.decode("latin-1"))
    return Reply(status, location, body.decode("utf-8", "replace"))


def _status_and_location(header: str) -> tuple[int, str]:
    lines = header.split("\r\n")
    location = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "location":
            location = value.strip()
    return int(lines[0].split()[1]), location


class _Stream(io.BufferedReader):
    """The connection's reader, left open by each response read from it."""

    def close(self) -> None:
        pass


class _Connection:
    def __init__(self, stream: _Stream) -> None:
        self.stream = stream

    def makefile(self, *args: object, **kwargs: object) -> _Stream:
        return self.stream


def pipelined(addr: str, port: int, request_lines: list[str], host: str) -> list[Reply]:
    """Write every request (``Host: host``, HTTP/1.1) in one ``send``, the last one with
    ``Connection: close``, before reading any reply; return the replies in order."""
    heads = [
        f"{line} HTTP/1.1\r\nHost: {host}\r\n"
        + ("Connection: close\r\n" if i == len(request_lines) - 1 else "")
        + "\r\n"
        for i, line in enumerate(request_lines)
    ]
    with socket.create_connection((addr, port), timeout=10) as sock:
        sock.sendall("".join(heads).encode("ascii"))
        stream = _Stream(socket.SocketIO(sock, "rb"))
        replies = []
        for _ in request_lines:
            resp = http.client.HTTPResponse(_Connection(stream))  # type: ignore[arg-type]
            resp.begin()
            body = resp.read().decode("utf-8", "replace")
            replies.append(Reply(resp.status, resp.getheader("Location") or "", body))
    return replies
