"""Control API routes for takedown tickets, evidence and the time-to-takedown report.

Include them with::

    from edgeagent.api.takedown_routes import takedown_routes
    app = create_app(ctx, routes=(*ROUTES, *takedown_routes(service)))

Roles: ``analyst`` reads tickets, moves them and reads the report, and asks where an own
address sits on the agent host's segments (which may send one ARP/ND probe, under the
service's probe rules; audited); ``supervisor`` sets and releases the law-enforcement
hold and the legal hold, and exports evidence (the bundle is itself audited). Ticket
bodies hold URLs: they are shown to ``analyst`` and above only, like decisions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress, StringConstraints

from edgeagent.api.auth import Principal
from edgeagent.api.routes import Route
from edgeagent.api.validation import (
    ApiError,
    OptionalText,
    Reference,
    Text,
    ZonedDatetime,
    bad_input,
    parse_body,
    parse_query,
)
from edgeagent.roles import Role
from edgeagent.takedown.records import (
    Authorisation,
    Outcome,
    OutcomeKind,
    Preservation,
    Referral,
)
from edgeagent.takedown.service import TakedownService
from edgeagent.takedown.tickets import Ticket, TicketState, ticket_to_json

_ID = r"{id:\d+}"
_Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class AuthorisationBody(_Body):
    """``POST /v1/tickets/{id}/authorisation``: a law-enforcement authorisation to isolate."""

    by: Text = Field(description="the officer or agency who authorised")
    reference: Reference = Field(description="their reference")
    at: ZonedDatetime = Field(description="when they authorised")

    def record(self) -> Authorisation:
        return Authorisation(self.by, self.reference, self.at)


class ReferralBody(_Body):
    """Where the case went: required to move to ``referred``."""

    recipient: Reference = Field(
        description="a hotline or agency of [takedown] referral_recipients"
    )
    reference: Reference = Field(description="the recipient's reference")
    at: ZonedDatetime = Field(description="when it was referred")

    def record(self) -> Referral:
        return Referral(self.recipient, self.reference, self.at)


class PreservationBody(_Body):
    """Where and by whom the content was preserved: required for ``removed-and-preserved``."""

    location: Text = Field(description="where the preserved copy is kept")
    preserved_by: Text = Field(description="who at the hosting side preserved it")
    content_sha256: Annotated[list[_Sha256], Field(min_length=1, max_length=1000)] = Field(
        description="SHA-256 of each preserved file, as the hosting team computed it "
        "(the agent never fetches content)"
    )
    at: ZonedDatetime = Field(description="when it was preserved")

    def record(self) -> Preservation:
        hashes = tuple(h.lower() for h in self.content_sha256)
        return Preservation(self.location, self.preserved_by, hashes, self.at)


class TicketTransition(_Body):
    """``POST /v1/tickets/{id}/transition``."""

    to: TicketState = Field(description="target state")
    reason: Text = Field(description="why (audited)")
    authorisation: AuthorisationBody | None = Field(
        default=None,
        description="a law-enforcement authorisation, recorded before the move",
    )
    referral: ReferralBody | None = Field(default=None, description="required for referred")
    preservation: PreservationBody | None = Field(
        default=None, description="required for removed-and-preserved"
    )


class OutcomeBody(_Body):
    """``POST /v1/tickets/{id}/outcomes``: a measure on the customer's account."""

    kind: OutcomeKind
    reason: Text = Field(description="why (audited)")
    at: ZonedDatetime | None = Field(default=None, description="when it was taken (default now)")


class TicketReason(_Body):
    """A change that needs only its reason (hold, release)."""

    reason: Text = Field(description="why (audited)")


class AssignBody(_Body):
    """``POST /v1/tickets/{id}/assign``."""

    assignee: OptionalText = Field(description="an active token identity; empty: nobody")
    reason: OptionalText = ""


class CommentBody(_Body):
    """``POST /v1/tickets/{id}/comments``."""

    text: Text = Field(description="the comment (kept on the ticket; audited by hash only)")


class TicketListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: TicketState | None = None
    open: bool = False
    due_before: ZonedDatetime | None = Field(
        default=None,
        description="only tickets whose content is still public with a deadline before "
        "this, soonest first",
    )
    assignee: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        default=None, description="only tickets assigned to this identity (empty: unassigned)"
    )
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


# TakedownService.set_hold or .set_legal_hold, called on the service per request.
FlagSetter = Callable[[TakedownService, int, str, bool, str], Awaitable[Ticket]]


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
            due_before=q.due_before,
            assignee=q.assignee,
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
            ticket_id,
            body.to,
            who.name,
            body.reason,
            authorisation=body.authorisation.record() if body.authorisation else None,
            referral=body.referral.record() if body.referral else None,
            preservation=body.preservation.record() if body.preservation else None,
        )
        # A first person's found-legal is a proposal: accepted, not yet done.
        status = 200 if ticket.state is body.to else 202
        return web.json_response(ticket_to_json(ticket), status=status)

    async def assign(request: web.Request, who: Principal) -> web.StreamResponse:
        ticket_id = _ticket_id(request)
        body = parse_body(await request.read(), AssignBody)
        ticket = await service.assign(ticket_id, who.name, body.assignee, body.reason)
        return web.json_response(ticket_to_json(ticket))

    async def comment(request: web.Request, who: Principal) -> web.StreamResponse:
        ticket_id = _ticket_id(request)
        body = parse_body(await request.read(), CommentBody)
        ticket = await service.comment(ticket_id, who.name, body.text)
        return web.json_response(ticket_to_json(ticket), status=201)

    async def outcome(request: web.Request, who: Principal) -> web.StreamResponse:
        ticket_id = _ticket_id(request)
        body = parse_body(await request.read(), OutcomeBody)
        record = Outcome(body.kind, body.reason, body.at or datetime.now(UTC))
        ticket = await service.record_outcome(ticket_id, who.name, record)
        return web.json_response(ticket_to_json(ticket))

    async def authorise(request: web.Request, who: Principal) -> web.StreamResponse:
        ticket_id = _ticket_id(request)
        body = parse_body(await request.read(), AuthorisationBody)
        ticket = await service.record_authorisation(ticket_id, who.name, body.record())
        return web.json_response(ticket_to_json(ticket))

    def flag(setter: FlagSetter, value: bool, path: str, op: str, summary: str) -> Route:
        """A supervisor's route that sets or clears one of the ticket's holds (audited)."""

        async def handler(request: web.Request, who: Principal) -> web.StreamResponse:
            ticket_id = _ticket_id(request)
            body = parse_body(await request.read(), TicketReason)
            ticket = await setter(service, ticket_id, who.name, value, body.reason)
            return web.json_response(ticket_to_json(ticket))

        path = f"/v1/tickets/{_ID}/{path}"
        return Route(
            "POST",
            path,
            Role.SUPERVISOR,
            handler,
            op,
            summary,
            TicketReason,
            errors=(400, 404, 409),
        )

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
            "Takedown tickets, newest first; due_before gives the due-soon view (soonest "
            "first), assignee a person's work; dates with or without a zone",
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
            "Move a ticket to the next state (refusals name the allowed ones); referred "
            "needs the referral, removed-and-preserved the preservation details; "
            "found-legal from a first person is a proposal (202), a second person "
            "confirms it and the case's blocks are revoked",
            body=TicketTransition,
            errors=(400, 403, 404, 409),
            also=(202,),
        ),
        Route(
            "POST",
            f"/v1/tickets/{_ID}/assign",
            Role.ANALYST,
            assign,
            "assignTicket",
            "Assign the ticket to a person (an active token identity; empty: nobody)",
            body=AssignBody,
            errors=(400, 404, 409),
        ),
        Route(
            "POST",
            f"/v1/tickets/{_ID}/comments",
            Role.ANALYST,
            comment,
            "commentTicket",
            "Add a comment to the ticket (audited by hash)",
            body=CommentBody,
            status=201,
            errors=(400, 404, 409),
        ),
        Route(
            "POST",
            f"/v1/tickets/{_ID}/outcomes",
            Role.ANALYST,
            outcome,
            "recordTicketOutcome",
            "Record a measure on the customer's account (e.g. suspended)",
            body=OutcomeBody,
            errors=(400, 404, 409),
        ),
        Route(
            "POST",
            f"/v1/tickets/{_ID}/authorisation",
            Role.ANALYST,
            authorise,
            "authoriseTicket",
            "Record a law-enforcement authorisation (who, reference, when); where one was "
            "awaited, the hosting team then gets the instruction to isolate",
            body=AuthorisationBody,
            errors=(400, 404, 409),
        ),
        flag(
            TakedownService.set_hold,
            True,
            "hold",
            "holdTicket",
            "Law-enforcement hold: from now on notices reach the hosting team only",
        ),
        flag(
            TakedownService.set_hold,
            False,
            "release",
            "releaseTicket",
            "Release the law-enforcement hold (later notices may reach the customer)",
        ),
        flag(
            TakedownService.set_legal_hold,
            True,
            "legal-hold",
            "setTicketLegalHold",
            "Legal hold: the ticket's record is kept past its retention until released",
        ),
        flag(
            TakedownService.set_legal_hold,
            False,
            "legal-hold/release",
            "releaseTicketLegalHold",
            "Release the legal hold (the record is then purged once past its retention)",
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
