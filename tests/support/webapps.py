"""aiohttp apps served from a background event loop, for tests that call them blocking."""

from __future__ import annotations

import asyncio
import ssl
import threading

from aiohttp import web


class BackgroundApps:
    """One event loop in a daemon thread; :meth:`serve` starts an app, :meth:`close` all."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []

    def serve(
        self,
        app: web.Application,
        host: str,
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> int:
        """Start ``app`` on ``host:port`` (0: any free port); return the bound port."""

        async def go() -> int:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
            await site.start()
            self.runners.append(runner)
            server = site._server
            assert isinstance(server, asyncio.Server)
            return int(server.sockets[0].getsockname()[1])

        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)

    def close(self) -> None:
        async def down() -> None:
            for r in self.runners:
                await r.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
