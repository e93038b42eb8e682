"""Where the lab's takedown notices land: an SMTP sink and a webhook sink.

Both run in the lab's event loop on loopback and write each delivery to a file in their
directory (mode 0600), so a newcomer can ``ls`` and ``cat`` them:

- :class:`SmtpSink` (aiosmtpd, plain SMTP: the lab talks to it over loopback only)
  writes ``<n>.eml`` (the message as received) per delivery;
- :class:`WebhookSink` (aiohttp) checks the HMAC signature with the agent's shared
  secret; a valid delivery is written as ``<n>.json`` ``{"signature_valid": true,
  "timestamp", "signature", "payload", "body"}`` and answered 204, an invalid one as
  ``rejected-<n>.json`` and answered 401.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from edgeagent.takedown.notifiers.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_webhook_signature,
)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.rename(path)


class _MailHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        header = (
            f"X-Lab-Mail-From: {envelope.mail_from}\r\n"
            f"X-Lab-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        _write_private(self.directory / f"{next(self.count)}.eml", header + content)
        return "250 OK"


class SmtpSink:
    """Plain SMTP on ``host:port`` (0: any free port), one ``.eml`` file per message."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = directory
        self.host = host
        self.port = port
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        handler = _MailHandler(self.directory)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="smtp-sink.lab.test"), self.host, self.port
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


def _bound_port(runner: web.AppRunner) -> int:
    for addr in runner.addresses:
        if isinstance(addr, tuple):
            return int(addr[1])
    raise RuntimeError("runner has no TCP site")


class WebhookSink:
    """``POST /hook`` checked against ``secret``; one JSON file per delivery."""

    def __init__(
        self, directory: Path, secret: bytes, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.directory = directory
        self.secret = secret
        self.host = host
        self.port = port
        self._count = itertools.count(1)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        ok = verify_webhook_signature(
            self.secret, timestamp, body, request.headers.get(SIGNATURE_HEADER, "")
        )
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = None
        record = {
            "signature_valid": ok,
            "timestamp": timestamp,
            "signature": request.headers.get(SIGNATURE_HEADER, ""),
            "payload": payload,
            # The body exactly as signed, so anyone can check the signature again.
            "body": body.decode("utf-8", errors="replace"),
        }
        name = f"{next(self._count)}.json" if ok else f"rejected-{next(self._count)}.json"
        _write_private(self.directory / name, json.dumps(record, indent=2).encode())
        return web.Response(status=204 if ok else 401)

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = _bound_port(self._runner)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
