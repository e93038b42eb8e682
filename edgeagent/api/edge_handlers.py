"""``/v1/policy/index``: the proxy index for edge agents, and their reports.

``GET /v1/policy/index?since=<version>&digest=<hex>&wait=<seconds>`` answers the signed
artefact an edge holding that index needs (:mod:`edgeagent.proxy.distribution`): a
delta or the full index, with the signed fields in headers and an ``ETag``. When the
edge is current it waits up to ``wait`` seconds for the next version (long poll) and
otherwise answers 304, as it does for an ``If-None-Match`` naming the current index.
``POST /v1/policy/index/report`` records what an edge installed (``GET /v1/fleet``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from aiohttp import web
from pydantic import Field

from edgeagent import bulk
from edgeagent.api.auth import Principal
from edgeagent.api.context import CONTEXT
from edgeagent.api.validation import ApiError, _Body, _Query, parse_body, parse_query
from edgeagent.enforcement.base import EdgeFeed
from edgeagent.proxy.artefact import EdgeReport

MAX_WAIT_SECONDS = 300


class IndexQuery(_Query):
    since: Annotated[int, Field(ge=0, description="the version the edge holds")] | None = None
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="of that index")] = ""
    wait: Annotated[int, Field(ge=0, le=MAX_WAIT_SECONDS)] = 0


class EdgeReportIn(_Body):
    edge: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    version: Annotated[int, Field(ge=-1, description="installed version; -1: none")]
    digest: Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")]
    canary_ok: bool | None = None
    error: Annotated[str, Field(max_length=200)] = ""


def _feed(request: web.Request) -> EdgeFeed:
    feed = request.app[CONTEXT].edge_feed()
    if feed is None:
        raise ApiError(404, "not-found", "this agent serves no index to edges")
    return feed


async def release_long_polls(app: web.Application) -> None:
    """On shutdown, which aiohttp runs before it waits for the requests in flight: the
    long polls answer now (304) instead of holding the agent's stop for their ``wait``."""
    feed = app[CONTEXT].edge_feed()
    if feed is not None:
        feed.release()


async def policy_index(request: web.Request, who: Principal) -> web.StreamResponse:
    feed = _feed(request)
    q = parse_query(list(request.query.items()), IndexQuery)
    try:
        artefact = await asyncio.to_thread(feed.artefact, q.since, q.digest)
        if artefact is None and q.since is not None and q.wait:
            with bulk.request_aside():  # a long poll: no one waits for the GIL here
                await feed.wait(q.since, q.wait, q.digest)
            artefact = await asyncio.to_thread(feed.artefact, q.since, q.digest)
    except LookupError:
        raise ApiError(503, "unavailable", "no index published yet") from None
    if artefact is None:
        return web.Response(status=304)
    if request.headers.get("If-None-Match") == artefact.etag:
        return web.Response(status=304, headers={"ETag": artefact.etag})
    return web.Response(body=artefact.body, headers=artefact.headers())


async def policy_report(request: web.Request, who: Principal) -> web.StreamResponse:
    feed = _feed(request)
    body = parse_body(await request.read(), EdgeReportIn)
    feed.report(
        EdgeReport(body.edge, body.version, body.digest, body.canary_ok, time.time(), body.error)
    )
    return web.Response(status=204)
