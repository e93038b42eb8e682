"""The route table: every route, the role it needs, and its request/response shapes.

This table is the single source for three things: the aiohttp router
(:func:`edgeagent.api.app.create_app`), the role check wrapped around each handler, and
the OpenAPI document (:mod:`edgeagent.api.openapi`). A route cannot be added without
declaring its role; ``Role.PUBLIC`` is for health probes only (a test holds that line).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel

from edgeagent.api import edge_handlers as eh
from edgeagent.api import handlers as h
from edgeagent.api import intake_handlers as ih
from edgeagent.api import validation as v
from edgeagent.api.auth import Principal
from edgeagent.roles import Role

RouteHandler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint. ``path`` uses aiohttp syntax (``{id:\\d+}``); ``errors`` lists the
    route-specific error statuses (401/403/413 are added from ``role`` and ``body``).

    ``role`` is the lowest role allowed; higher roles may call it too."""

    method: str
    path: str
    role: Role
    handler: RouteHandler
    operation_id: str
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    also: tuple[int, ...] = ()  # other statuses answered with the ``response`` shape


_ID = r"{id:\d+}"

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/decisions",
        Role.ANALYST,
        h.create_decision,
        "createDecision",
        "Record a block or allow decision",
        body=v.DecisionCreate,
        response=v.DecisionOut,
        status=201,
        errors=(400, 409),
    ),
    Route(
        "POST",
        "/v1/decisions/bulk",
        Role.ANALYST,
        h.create_notice,
        "createNotice",
        "Record a notice with many targets (one case reference): a result per target, "
        "accepted, pending approval or refused with its reason",
        body=v.DecisionBulkCreate,
        response=v.NoticeOut,
        errors=(400,),
    ),
    Route(
        "GET",
        "/v1/decisions",
        Role.ANALYST,
        h.list_decisions,
        "listDecisions",
        "List decisions (filters, search by target or case reference, pagination)",
        query=v.DecisionListQuery,
        response=v.DecisionListOut,
        errors=(400,),
    ),
    Route(
        "GET",
        f"/v1/decisions/{_ID}",
        Role.ANALYST,
        h.get_decision,
        "getDecision",
        "One decision with its history",
        response=v.DecisionOut,
        errors=(404,),
    ),
    Route(
        "POST",
        f"/v1/decisions/{_ID}/revoke",
        Role.SUPERVISOR,
        h.revoke_decision,
        "revokeDecision",
        "Revoke an active or pending decision",
        body=v.DecisionRevoke,
        response=v.DecisionOut,
        errors=(400, 404, 409),
    ),
    Route(
        "POST",
        f"/v1/decisions/{_ID}/approve",
        Role.SUPERVISOR,
        h.approve_decision,
        "approveDecision",
        "Approve a pending decision (not by its creator: four-eyes)",
        body=v.DecisionApprove,
        response=v.DecisionOut,
        errors=(400, 404, 409),
    ),
    Route(
        "GET",
        "/v1/status",
        Role.NOC,
        h.status,
        "getStatus",
        "Policy version, entry counts, feeds and publishers",
        response=v.StatusOut,
    ),
    Route(
        "GET",
        "/v1/fleet",
        Role.NOC,
        h.fleet,
        "getFleet",
        "Every resolver and proxy: confirmed version, lag, last canary",
        response=v.FleetOut,
    ),
    Route(
        "GET",
        "/v1/policy/index",
        Role.NOC,
        eh.policy_index,
        "getPolicyIndex",
        "The proxy index for an edge agent as a signed artefact: a delta from ?since= or "
        "the full index, headers X-Edgeagent-Index-* and ETag; ?wait= long-polls for the "
        "next version; 304 when current",
        query=eh.IndexQuery,
        errors=(400, 404, 503),
    ),
    Route(
        "POST",
        "/v1/policy/index/report",
        Role.NOC,
        eh.policy_report,
        "reportPolicyIndex",
        "An edge agent reports the index version it installed and its canary (GET /v1/fleet)",
        body=eh.EdgeReportIn,
        status=204,
        errors=(400, 404),
    ),
    Route(
        "GET",
        "/v1/plan",
        Role.NOC,
        h.plan,
        "getPlan",
        "Pending decisions and held feed generations",
        response=v.PlanOut,
    ),
    Route(
        "GET",
        "/v1/lookup",
        Role.ANALYST,
        h.lookup,
        "lookupTarget",
        "How a target is treated and why (rate-limited, audited)",
        query=v.LookupQuery,
        response=v.LookupOut,
        errors=(400, 429, 503),
    ),
    Route(
        "GET",
        "/v1/audit",
        Role.SUPERVISOR,
        h.audit,
        "listAudit",
        "Audit records since a time",
        query=v.AuditQuery,
        response=v.AuditListOut,
        errors=(400,),
    ),
    Route(
        "GET",
        "/v1/audit/verify",
        Role.SUPERVISOR,
        h.audit_verify,
        "verifyAudit",
        "Recompute the audit hash chain",
        response=v.AuditVerifyOut,
    ),
    Route(
        "GET",
        "/v1/tokens",
        Role.ADMIN,
        h.list_tokens,
        "listTokens",
        "Every API token: holder, role, revoked (never a secret; audited)",
        response=v.TokenListOut,
    ),
    Route(
        "POST",
        f"/v1/tokens/{_ID}/revoke",
        Role.ADMIN,
        h.revoke_token,
        "revokeToken",
        "Revoke a token: refused from the next request on (audited with the reason)",
        body=v.TokenRevoke,
        response=v.TokenOut,
        errors=(400, 404),
    ),
    Route(
        "GET",
        "/v1/intake",
        Role.ANALYST,
        ih.list_intake,
        "listIntake",
        "The triage queue: public reports, quarantined notices, appeals, newest first",
        query=ih.IntakeListQuery,
        errors=(400,),
    ),
    Route(
        "GET",
        f"/v1/intake/{_ID}",
        Role.ANALYST,
        ih.get_intake,
        "getIntakeItem",
        "One intake item with what the person gave",
        errors=(404,),
    ),
    Route(
        "POST",
        f"/v1/intake/{_ID}/accept",
        Role.ANALYST,
        ih.accept_intake,
        "acceptIntakeItem",
        "Accept a report or quarantined notice: its URLs become block decisions (guard and "
        "four-eyes rules apply; public reports start pending approval)",
        body=ih.IntakeOutcome,
        errors=(400, 404, 409),
    ),
    Route(
        "POST",
        f"/v1/intake/{_ID}/reject",
        Role.ANALYST,
        ih.reject_intake,
        "rejectIntakeItem",
        "Reject a report or quarantined notice (kept with the reason)",
        body=ih.IntakeOutcome,
        errors=(400, 404, 409),
    ),
    Route(
        "POST",
        f"/v1/intake/{_ID}/uphold",
        Role.SUPERVISOR,
        ih.uphold_intake,
        "upholdIntakeAppeal",
        "Answer an appeal or challenge: the block stays (sent to the appellant's contact)",
        body=ih.IntakeOutcome,
        errors=(400, 404, 409),
    ),
    Route(
        "POST",
        f"/v1/intake/{_ID}/revoke",
        Role.SUPERVISOR,
        ih.revoke_intake,
        "revokeIntakeAppeal",
        "Answer an appeal or challenge: the blocks behind it end (sent to the contact)",
        body=ih.IntakeOutcome,
        errors=(400, 404, 409),
    ),
    Route("GET", "/v1/openapi.json", Role.NOC, h.openapi, "getOpenApi", "This document"),
    Route(
        "GET",
        "/healthz",
        Role.PUBLIC,
        h.healthz,
        "healthz",
        "Process alive (no token)",
        response=v.HealthOut,
    ),
    Route(
        "GET",
        "/readyz",
        Role.PUBLIC,
        h.readyz,
        "readyz",
        "Ready to serve: policy loaded, publishers verified, feeds fresh (no token)",
        response=v.ReadyOut,
        also=(503,),
    ),
)
