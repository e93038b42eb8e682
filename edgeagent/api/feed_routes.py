"""Control API routes for feeds: status, sync now, approve or discard a held generation.

Include them with ``create_app(ctx, routes=(*ROUTES, *feed_routes(runner)))``. Feed
status carries counts and reasons, never entries, so ``noc`` may read it; a sync is an
analyst's request; approving or discarding a held generation is a supervisor's decision
(four-eyes with the system that held it), and is audited with the reason given.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from edgeagent import bulk
from edgeagent.api.auth import Principal
from edgeagent.api.routes import Route
from edgeagent.api.validation import ApiError, Text, parse_body
from edgeagent.feeds.base import SyncResult
from edgeagent.feeds.runner import FeedRunner
from edgeagent.roles import Role
from edgeagent.store.base import Generation

_NAME = r"{name:[A-Za-z0-9_.-]{1,64}}"


class HeldDecision(BaseModel):
    """``POST /v1/feeds/{name}/approve`` and ``.../discard``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    reason: Text = Field(description="why (audited)")
    generation: int | None = Field(
        default=None, ge=1, description="the held generation reviewed (default: the held one)"
    )


def _result_json(r: SyncResult) -> dict[str, Any]:
    return {
        "feed": r.feed,
        "outcome": str(r.outcome),
        "reason": r.reason,
        "generation": r.generation_id,
        "entries": r.entries,
        "added": r.added,
        "removed": r.removed,
        "rejects": dict(r.rejects),
        "reject_samples": list(r.reject_samples),  # short hashes only
        "refused": dict(r.refused),
        "bytes": r.bytes_decoded,
        "duration": r.duration,
    }


def generation_json(g: Generation) -> dict[str, Any]:
    return {
        "feed": g.feed,
        "generation": g.id,
        "status": str(g.status),
        "entries": g.entry_count,
        "created_at": g.created_at.isoformat(),
        "hold_reason": g.hold_reason,
    }


def feed_routes(runner: FeedRunner) -> tuple[Route, ...]:
    """The feed routes bound to ``runner``."""

    def name_of(request: web.Request) -> str:
        name = request.match_info["name"]
        if name not in runner.specs:
            raise ApiError(404, "not-found", "no such feed", "name")
        return name

    async def list_feeds(request: web.Request, who: Principal) -> web.StreamResponse:
        return web.json_response({"feeds": await asyncio.to_thread(runner.status)})

    async def get_feed(request: web.Request, who: Principal) -> web.StreamResponse:
        name = name_of(request)
        status = (await asyncio.to_thread(runner.status))[name]
        held = await asyncio.to_thread(runner.store.held_generation, name)
        status["held"] = None
        if held is not None:
            status["held"] = generation_json(held)
            diff = await asyncio.to_thread(runner.held_diffs.of, name)
            if diff is not None and diff.held == held.id:
                # What approving it would change; the entries only for a supervisor.
                status["held"]["changes"] = diff.to_json(entries=who.role >= Role.SUPERVISOR)
        return web.json_response(status)

    async def sync(request: web.Request, who: Principal) -> web.StreamResponse:
        with bulk.request_aside():  # the sync's own bulk work must not pause for it
            result = await runner.sync(name_of(request))
        await asyncio.to_thread(
            runner.store.append_audit,
            who.name,
            "feed.sync",
            f"feed:{result.feed}",
            {"outcome": str(result.outcome), "reason": result.reason},
        )
        return web.json_response(_result_json(result))

    async def approve(request: web.Request, who: Principal) -> web.StreamResponse:
        name = name_of(request)
        body = parse_body(await request.read(), HeldDecision)
        gen = await asyncio.to_thread(runner.approve, name, who.name, body.reason, body.generation)
        return web.json_response(generation_json(gen))

    async def discard(request: web.Request, who: Principal) -> web.StreamResponse:
        name = name_of(request)
        body = parse_body(await request.read(), HeldDecision)
        gen = await asyncio.to_thread(runner.discard, name, who.name, body.reason, body.generation)
        return web.json_response(generation_json(gen))

    return (
        Route("GET", "/v1/feeds", Role.NOC, list_feeds, "listFeeds", "Every feed's state"),
        Route(
            "GET",
            f"/v1/feeds/{_NAME}",
            Role.NOC,
            get_feed,
            "getFeed",
            "One feed's state and its held generation, if any, with what it would change "
            "(added/removed counts; the entries for a supervisor)",
            errors=(404,),
        ),
        Route(
            "POST",
            f"/v1/feeds/{_NAME}/sync",
            Role.ANALYST,
            sync,
            "syncFeed",
            "Fetch, verify and load the feed now; the result says live, held, unchanged or failed",
            errors=(404,),
        ),
        Route(
            "POST",
            f"/v1/feeds/{_NAME}/approve",
            Role.SUPERVISOR,
            approve,
            "approveHeldGeneration",
            "Make the held generation live (audited)",
            body=HeldDecision,
            errors=(400, 404),
        ),
        Route(
            "POST",
            f"/v1/feeds/{_NAME}/discard",
            Role.SUPERVISOR,
            discard,
            "discardHeldGeneration",
            "Discard the held generation; the live one stays (audited)",
            body=HeldDecision,
            errors=(400, 404),
        ),
    )
