"""Handlers and shapes of the triage queue routes (``/v1/intake``), listed in the route table.

Items hold what the person gave, URLs and a contact included: they are shown to
``analyst`` and above only, like decisions. Reports and quarantined notices are accepted or
rejected by an analyst; appeals and challenges are upheld or revoked by a supervisor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from edgeagent.api.auth import Principal
from edgeagent.api.context import CONTEXT, ApiContext
from edgeagent.api.handlers import page_json, read, write
from edgeagent.api.validation import ApiError, Text, parse_body, parse_query
from edgeagent.intake.base import IntakeChannel, IntakeItem, IntakeState
from edgeagent.intake.triage import Triage, TriageResult
from edgeagent.model import Entry


class IntakeOutcome(BaseModel):
    """``POST /v1/intake/{id}/accept|reject|uphold|revoke``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    reason: Text = Field(description="why (audited; sent to an appellant who left a contact)")


class IntakeListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: IntakeState | None = None
    channel: IntakeChannel | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=1_000_000_000)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def intake_json(item: IntakeItem) -> dict[str, Any]:
    c = item.content
    return {
        "id": item.id,
        "reference": item.reference,
        "channel": item.channel.value,
        "state": item.state.value,
        "created_at": _iso(item.created_at),
        "decided_at": _iso(item.decided_at),
        "decided_by": item.decided_by,
        "reason": item.reason,
        "decision_ids": list(item.decision_ids),
        "content": {
            "urls": list(c.urls),
            "category": c.category,
            "came_across": c.came_across,
            "live_video": c.live_video,
            "discovered_at": c.discovered_at,
            "description": c.description,
            "statement": c.statement,
            "contact": c.contact,
            "subject": c.subject,
            "notice_source": c.notice_source,
            "quarantine_reason": c.quarantine_reason,
            "attachments": list(c.attachments),
        },
    }


def result_json(result: TriageResult) -> dict[str, Any]:
    return {
        "item": intake_json(result.item),
        "decisions": [{"id": d.id, "status": d.status.value} for d in result.decisions],
        "refused": [{"target_ref": r.target_ref, "reason": r.reason} for r in result.refused],
    }


def triage_of(ctx: ApiContext) -> Triage:
    """The daemon's triage (with appeal key and notifier), or one over the API's store."""
    if ctx.triage is not None:
        return ctx.triage

    def entries() -> tuple[Entry, ...]:
        index = ctx.policy()
        return () if index is None else index.state.blocks

    return Triage(ctx.decisions, entries=entries, metrics=ctx.metrics)


def _item_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 18:
        raise ApiError(404, "not-found", "no such intake item", "id")
    return int(text)


async def list_intake(request: web.Request, who: Principal) -> web.Response:
    ctx = request.app[CONTEXT]
    q = parse_query(list(request.query.items()), IntakeListQuery)
    found = await read(
        ctx.store.list_intake_items,
        state=q.state,
        channel=q.channel,
        limit=q.limit + 1,
        offset=q.offset,
    )
    return web.json_response(page_json([intake_json(i) for i in found], q.limit, q.offset))


async def get_intake(request: web.Request, who: Principal) -> web.Response:
    ctx = request.app[CONTEXT]
    item = await read(ctx.store.get_intake_item, _item_id(request))
    return web.json_response(intake_json(item))


async def _outcome(request: web.Request, who: Principal, state: IntakeState) -> web.Response:
    ctx = request.app[CONTEXT]
    item_id = _item_id(request)
    body = parse_body(await request.read(), IntakeOutcome)
    triage = triage_of(ctx)
    action = {
        IntakeState.ACCEPTED: triage.accept,
        IntakeState.REJECTED: triage.reject,
        IntakeState.UPHELD: triage.uphold,
        IntakeState.REVOKED: triage.revoke,
    }[state]

    def run() -> TriageResult:
        result = action(item_id, who.name, body.reason)
        if result.decisions:
            ctx.on_change()
        return result

    return web.json_response(result_json(await write(request.app, run)))


async def accept_intake(request: web.Request, who: Principal) -> web.Response:
    return await _outcome(request, who, IntakeState.ACCEPTED)


async def reject_intake(request: web.Request, who: Principal) -> web.Response:
    return await _outcome(request, who, IntakeState.REJECTED)


async def uphold_intake(request: web.Request, who: Principal) -> web.Response:
    return await _outcome(request, who, IntakeState.UPHELD)


async def revoke_intake(request: web.Request, who: Principal) -> web.Response:
    return await _outcome(request, who, IntakeState.REVOKED)
