"""Control API routes for takedown tickets, evidence and the time-to-takedown report.

Include them with::

    from edgeagent.api.takedown_routes import takedown_routes
    app = create_app(ctx, routes=(*ROUTES, *takedown_routes(service)))

Roles: ``analyst`` reads tickets, moves them and reads the report, and asks where an own
address sits on the agent host's segments (which may send one ARP/ND probe, under the
service's probe rules; audited); ``supervisor`` exports evidence (the bundle is itself
audited). Ticket bodies hold URLs: they are shown to
``analyst`` and above only, like decisions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress

from edgeagent.api.auth import Principal, Role
from edgeagent.api.routes import Route
from edgeagent.api.validation import (
    ApiError,
    Reference,
    Text,
    ZonedDatetime,
    bad_input,
    parse_body,
    parse_query,
)
from edgeagent.takedown.service import TakedownService
from edgeagent.takedown.tickets import TicketState, ticket_to_json

_ID = r"{id:\d+}"


class TicketTransition(BaseModel):
    """``POST /v1/tickets/{id}/transition``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    to: TicketState = Field(description="target state")
    reason: Text = Field(description="why (audited)")
    authorisation: Reference | None = Field(
        default=None,
        description="law-enforcement authorisation reference, recorded before the move",
    )


class TicketListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: TicketState | None = None
    open: bool = False
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=1_000_000_000)


class TakedownReportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)

    start: ZonedDatetime | None = Field(
        default=None, alias="from", description="notices received from (default: 30 days ago)"
    )
    end: ZonedDatetime | None = Field(
        default=None, alias="to", description="notices received before (default: now)"
    )


class SegmentQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: IPvAnyAddress = Field(description="an address in the own prefixes")


def _ticket_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 18:
        raise ApiError(404, "not-found", "no such ticket", "id")
    return int(text)


def takedown_routes(service: TakedownService) -> tuple[Route, ...]:
    """The takedown routes bound to ``service`` (see the module docstring)."""

    async def list_tickets(request: web.Request, who: Principal) -> web.StreamResponse:
        q = parse_query(list(request.query.items()), TicketListQuery)
        found = await service.list_tickets(
            state=q.state.value if q.state else None,
            open_only=q.open,
            limit=q.limit + 1,
            offset=q.offset,
        )
        more = len(found) > q.limit
        return web.json_response(
            {
                "items": [ticket_to_json(t) for t in found[: q.limit]],
                "limit": q.limit,
                "offset": q.offset,
                "next_offset": q.offset + q.limit if more else None,
            }
        )

    async def get_ticket(request: web.Request, who: Principal) -> web.StreamResponse:
        ticket = await service.get(_ticket_id(request))
        return web.json_response(ticket_to_json(ticket))

    async def transition(request: web.Request, who: Principal) -> web.StreamResponse:
        ticket_id = _ticket_id(request)
        body = parse_body(await request.read(), TicketTransition)
        ticket = await service.transition(
            ticket_id, body.to, who.name, body.reason, authorisation=body.authorisation
        )
        return web.json_response(ticket_to_json(ticket))

    async def evidence(request: web.Request, who: Principal) -> web.StreamResponse:
        bundle = await service.evidence(_ticket_id(request), who.name)
        return web.json_response(bundle)

    async def report(request: web.Request, who: Principal) -> web.StreamResponse:
        q = parse_query(list(request.query.items()), TakedownReportQuery)
        end = q.end or datetime.now(UTC)
        start = q.start or end - timedelta(days=30)
        if start >= end:
            raise bad_input("from", "must be before 'to'")
        rep = await service.report(start, end)
        return web.json_response(rep.to_json())

    async def segment(request: web.Request, who: Principal) -> web.StreamResponse:
        q = parse_query(list(request.query.items()), SegmentQuery)
        detail = await service.locate_on_segment(str(q.address), who.name)
        return web.json_response(detail.to_json())

    on_segment = Route(
        "GET",
        "/v1/segment",
        Role.ANALYST,
        segment,
        "getSegmentDetail",
        "Where an own address sits on the agent host's segments: interface, next hop, MAC "
        "(may send one ARP/ND probe; never outside the own prefixes)",
        query=SegmentQuery,
        errors=(400,),
    )
    return (
        Route(
            "GET",
            "/v1/tickets",
            Role.ANALYST,
            list_tickets,
            "listTickets",
            "Takedown tickets, newest first",
            query=TicketListQuery,
            errors=(400,),
        ),
        Route(
            "GET",
            f"/v1/tickets/{_ID}",
            Role.ANALYST,
            get_ticket,
            "getTicket",
            "One takedown ticket with URLs, answers and every action",
            errors=(404,),
        ),
        Route(
            "POST",
            f"/v1/tickets/{_ID}/transition",
            Role.ANALYST,
            transition,
            "transitionTicket",
            "Move a ticket to the next state (refusals name the allowed ones)",
            body=TicketTransition,
            errors=(400, 404, 409),
        ),
        Route(
            "GET",
            f"/v1/tickets/{_ID}/evidence",
            Role.SUPERVISOR,
            evidence,
            "getTicketEvidence",
            "Evidence bundle (metadata only) with SHA-256 manifest; the export is audited",
            errors=(404,),
        ),
        Route(
            "GET",
            "/v1/reports/takedown",
            Role.ANALYST,
            report,
            "getTakedownReport",
            "Time to takedown: count, median, p90, share within 60/120 min, by source",
            query=TakedownReportQuery,
            errors=(400,),
        ),
    ) + ((on_segment,) if service.segments is not None else ())
