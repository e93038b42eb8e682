"""A real aiohttp feed server on loopback that misbehaves on demand.

``FeedServer`` serves ``Route`` values by path; a test swaps a route to make the next
fetch fail in a particular way (status, HTML page, slow drip, truncated or bomb gzip,
wrong digest) and counts the hits. ETag / If-None-Match is honoured (304).
"""

from __future__ import annotations

import asyncio
import gzip
import struct
import zlib
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["FeedServer", "Route", "gzip_bomb"]


@dataclass(frozen=True)
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain"
    gzip: bool = False  # send with Content-Encoding: gzip
    etag: str = ""
    drip_interval: float = 0.0  # >0: send one byte per interval
    truncate: int = 0  # >0: send only the first N bytes of the (encoded) body, then close
    headers: dict[str, str] = field(default_factory=dict)


def gzip_bomb(total: int = 1 << 30, chunk: int = 1 << 24) -> bytes:
    """A valid gzip file of ``total`` zero bytes (about 1 MB for 1 GiB), built in well under a
    second: after a full flush deflate restarts, so every middle chunk compresses to the
    same bytes and is compressed once."""
    n = total // chunk
    zeros = bytes(chunk)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    middle = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    last = c.compress(zeros) + c.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, (n * chunk) & 0xFFFFFFFF)
    return header + first + middle * (n - 2) + last + trailer


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def set(self, path: str, route: Route) -> None:
        self.routes[path] = route

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] = self.hits.get(path, 0) + 1
        route = self.routes.get(path)
        if route is None:
            return web.Response(status=404, text="not found")
        if route.status != 200:
            return web.Response(status=route.status, text="server trouble")
        if route.etag and request.headers.get("If-None-Match") == route.etag:
            return web.Response(status=304, headers={"ETag": route.etag})
        body = gzip.compress(route.body) if route.gzip else route.body
        headers = {"Content-Type": route.content_type, **route.headers}
        if route.gzip:
            headers["Content-Encoding"] = "gzip"
        if route.etag:
            headers["ETag"] = route.etag
        if route.drip_interval > 0:
            resp = web.StreamResponse(headers=headers)
            await resp.prepare(request)
            for i in range(len(body)):
                await resp.write(body[i : i + 1])
                await asyncio.sleep(route.drip_interval)
            await resp.write_eof()
            return resp
        if route.truncate:
            # Announce the full length, send a part, then drop the connection.
            resp = web.StreamResponse(headers={**headers, "Content-Length": str(len(body))})
            await resp.prepare(request)
            await resp.write(body[: route.truncate])
            transport = request.transport
            if transport is not None:
                transport.close()
            return resp
        resp = web.StreamResponse(headers={**headers, "Content-Length": str(len(body))})
        await resp.prepare(request)
        step = 1 << 16
        for i in range(0, len(body), step):
            await resp.write(body[i : i + step])
        await resp.write_eof()
        return resp

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None)
        assert sockets
        self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
