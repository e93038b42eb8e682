"""The control API with every route table the daemon serves, for the hostile-input tests.

``full_api(directory)`` is an async context manager giving a :class:`FullApi`: the app
built from ``ROUTES``, ``feed_routes`` (one local domain-list feed, ``police``) and
``takedown_routes`` (a takedown service with no customers and no notifiers) over a fresh
SQLite store, with one token per role (``tests.support.api.add_tokens``) plus one revoked
admin token (``revoked``). ``FullApi.routes`` is the route table served;
:func:`concrete_path` fills a route's path parameters with values that exist here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from edgeagent.api import create_app
from edgeagent.api.feed_routes import feed_routes
from edgeagent.api.routes import ROUTES, Route
from edgeagent.api.takedown_routes import takedown_routes
from edgeagent.console.app import Services, add_console
from edgeagent.console.settings import ConsoleSettings
from edgeagent.feeds.base import FeedFormat, FeedKind, FeedSpec
from edgeagent.feeds.runner import FeedRunner
from edgeagent.metrics import Metrics
from edgeagent.store import SqliteStore
from edgeagent.takedown.customers.directory import CustomerDirectory
from edgeagent.takedown.locate import Locator
from edgeagent.takedown.service import TakedownService
from edgeagent.takedown.space import OwnSpace
from edgeagent.takedown.ticketstore import TicketStore
from edgeagent.tokens import new_token
from tests.support.api import add_tokens, make_context, make_guard


@dataclass
class FullApi:
    client: TestClient[Any, Any]
    store: SqliteStore
    tokens: dict[str, str]
    routes: tuple[Route, ...]
    takedown: TakedownService | None = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request with ``token`` (a secret, or None); ``(status, JSON or text)``."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        resp = await self.client.request(method, path, data=data, params=params, headers=headers)
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


_SAMPLE_PARAMETERS = {"id": "1", "name": "police"}


def concrete_path(template: str) -> str:
    """``template`` (aiohttp syntax, patterns may nest braces) with each ``{param:...}``
    replaced by a sample value: ``/v1/feeds/{name:[a-z]{1,64}}/sync`` becomes
    ``/v1/feeds/police/sync``."""
    out: list[str] = []
    depth = 0
    name: list[str] = []
    for ch in template:
        if ch == "{":
            depth += 1
            if depth == 1:
                name = []
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                param = "".join(name).split(":", 1)[0]
                out.append(_SAMPLE_PARAMETERS[param])
                continue
        if depth == 0:
            out.append(ch)
        elif depth == 1:
            name.append(ch)
    return "".join(out)


@asynccontextmanager
async def full_api(
    directory: Path, console: ConsoleSettings | None = None, **settings: Any
) -> AsyncIterator[FullApi]:
    """See the module docstring; ``settings`` go to the ``ApiContext``; with ``console``,
    the NTD console is served too (over the same takedown service and feed runner)."""
    store = SqliteStore(directory / "store.sqlite3")
    guard = make_guard(directory / "protected")
    tokens = add_tokens(store)
    secret, digest = new_token()
    store.add_token("revoked", "admin", digest)
    store.revoke_token(next(t.id for t in store.list_tokens() if t.name == "revoked"))
    tokens["revoked"] = secret
    listing = directory / "police.txt"
    listing.write_text("listed.police.example\n", encoding="utf-8")
    spec = FeedSpec(
        name="police",
        kind=FeedKind.LOCAL_FILE,
        content=FeedKind.DOMAIN_LIST,
        format=FeedFormat.LINES,
        path=listing,
    )
    runner = FeedRunner([spec], store, guard, Metrics())
    locator = Locator(OwnSpace(["198.51.100.0/24"]), CustomerDirectory([]), [("127.0.0.1", 9)])
    tickets = TicketStore(directory / "takedown.sqlite3")
    service = TakedownService(store, tickets, locator, [])
    routes = (*ROUTES, *feed_routes(runner), *takedown_routes(service))
    app = create_app(make_context(store, guard, **settings), routes)
    if console is not None:
        add_console(app, console, routes, Services(takedown=service, feeds=runner))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield FullApi(client, store, tokens, routes, service)
    finally:
        await client.close()
        await runner.close()
        tickets.close()
        store.close()
