"""Helpers for the control API tests: a real store, the real guard, one token per role.

- ``make_guard(directory)``: the real :class:`edgeagent.guard.Guard` with one protected
  name (``protected.example``) and the reserved names of the default settings (the
  canary ``canary.edgeagent.example``, the zones ``block.rpz.invalid`` and
  ``allow.rpz.invalid``).
- ``add_tokens(store)``: tokens ``noc``, ``analyst``, ``analyst2``, ``supervisor``,
  ``supervisor2``, ``admin`` (name = role, with a second analyst and supervisor for
  four-eyes); returns name -> secret.
- ``ApiHarness``: the app on an aiohttp ``TestServer`` with a ``call()`` shortcut.
- ``decision_body(target, **overrides)``: a valid ``POST /v1/decisions`` body.
- ``FakeClock``: monotonic seconds a test moves by hand (the API's rate limits).

The API in a process of its own (load and crash tests) is
:func:`edgeagent.lab.api_server.start_api_server`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from edgeagent.api import ApiContext, create_app
from edgeagent.config import default_settings
from edgeagent.decisions import DecisionService
from edgeagent.engine import PolicyEngine
from edgeagent.guard import Guard, PublicSuffixes
from edgeagent.model import NoticeSource
from edgeagent.overrides import ExternalLists
from edgeagent.store.base import Store
from edgeagent.tokens import new_token

TOKEN_ROLES = {
    "noc": "noc",
    "analyst": "analyst",
    "analyst2": "analyst",
    "supervisor": "supervisor",
    "supervisor2": "supervisor",
    "admin": "admin",
}


class FakeClock:
    """Monotonic seconds that move only when a test moves them (``clock.now += 20``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@functools.cache
def bundled_suffixes() -> PublicSuffixes:
    """The PSL snapshot the daemon loads, parsed once per test session (0.1 s of CPU each
    time; every API test builds a guard)."""
    return PublicSuffixes.load()


def make_guard(directory: Path) -> Guard:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "protected.txt").write_text("protected.example\n", encoding="utf-8")
    # The agent's own names as the daemon derives them from its (here: default) settings.
    settings = default_settings(directory)
    return Guard.load(
        directory,
        reserved=settings.reserved_names(),
        policy_zones=settings.policy_zones(),
        suffixes=bundled_suffixes(),
    )


def add_tokens(store: Store) -> dict[str, str]:
    secrets: dict[str, str] = {}
    for name, role in TOKEN_ROLES.items():
        secret, digest = new_token()
        store.add_token(name, role, digest)
        secrets[name] = secret
    return secrets


def make_context(
    store: Store,
    guard: Guard,
    *,
    public_needs_approval: bool = True,
    feed_sources: Mapping[str, NoticeSource] | None = None,
    **settings: Any,
) -> ApiContext:
    """An ``ApiContext`` wired like the daemon does: real service, real policy engine, the
    external-list check for allows (``feed_sources``: each feed's notice source)."""
    engine = PolicyEngine(store, guard)
    sources = dict(feed_sources or {})
    overrides = ExternalLists(lambda: engine.current().index, sources.get, store.get_decision)
    service = DecisionService(
        store, guard, public_needs_approval=public_needs_approval, overrides=overrides
    )
    settings.setdefault("policy", lambda: engine.current().index)
    return ApiContext(store=store, decisions=service, **settings)


@dataclass
class ApiHarness:
    """The API on a loopback test server. Use ``async with``; ``call()`` returns
    ``(status, json_body)``."""

    store: Store
    context: ApiContext
    tokens: dict[str, str]
    client: TestClient[Any, Any] | None = field(default=None, init=False)

    async def __aenter__(self) -> ApiHarness:
        server = TestServer(create_app(self.context))
        self.client = TestClient(server)
        await self.client.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.client is not None
        await self.client.close()

    async def call(
        self,
        method: str,
        path: str,
        who: str | None = "analyst",
        *,
        json: Any = None,
        data: bytes | str | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        assert self.client is not None
        hdrs = dict(headers or {})
        if who is not None:
            hdrs["Authorization"] = f"Bearer {self.tokens[who]}"
        resp = await self.client.request(
            method, path, json=json, data=data, params=params, headers=hdrs
        )
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body

    def with_settings(self, **settings: Any) -> ApiHarness:
        return ApiHarness(self.store, replace(self.context, **settings), self.tokens)


def decision_body(target: str = "h1.example", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "target": target,
        "scope": "host",
        "action": "block",
        "reason": "hotline report",
        "reference": "CASE-1",
        "source": "hotline",
    }
    body.update(overrides)
    return body
