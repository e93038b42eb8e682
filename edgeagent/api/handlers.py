"""Request handlers. Each takes the request and the authenticated :class:`Principal`.

Handlers only translate HTTP <-> domain: the lifecycle rules live in
:class:`edgeagent.decisions.DecisionService`, the treatment rules in
:class:`edgeagent.policy.PolicyIndex`. Domain errors propagate and are turned into JSON
errors by the middleware in :mod:`edgeagent.api.app`.

The store is synchronous. Writes go to the app's single store-writer thread (keeping
them in arrival order); reads and the daemon's callables run in the default thread pool,
so the event loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from aiohttp import web

from edgeagent.api.auth import AUTHENTICATOR, LOOKUP_LIMITER, Principal
from edgeagent.api.context import CONTEXT, OPENAPI_DOCUMENT, STORE_WRITER, ApiContext, sole_leader
from edgeagent.api.groupcommit import GROUP_COMMIT, Outcome
from edgeagent.api.validation import (
    ApiError,
    AuditQuery,
    DecisionApprove,
    DecisionBulkCreate,
    DecisionCreate,
    DecisionListQuery,
    DecisionNotice,
    DecisionRevoke,
    LookupQuery,
    TokenRevoke,
    bad_input,
    parse_body,
    parse_query,
)
from edgeagent.decisions import (
    DecisionRequest,
    NoticeOutcome,
    NoticeResult,
    NoticeTarget,
    notice_counts,
    target_search,
)
from edgeagent.errors import EdgeAgentError, InvalidTarget, short_hash
from edgeagent.model import Decision, DecisionStatus, DesiredState, Indicator, Scope
from edgeagent.policy import PolicyIndex
from edgeagent.roles import Role
from edgeagent.store.base import AuditRecord, Store, Token
from edgeagent.tally import EntryTally
from edgeagent.tokens import list_tokens as list_token_records
from edgeagent.tokens import revoke_token as revoke_token_record

T = TypeVar("T")

PENDING_SHOWN = 1000  # pending decisions a plan lists; its count is always complete


async def write(app: web.Application, fn: Callable[..., T], /, *args: Any) -> T:
    """Run a blocking store write on the app's writer thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(app[STORE_WRITER], partial(fn, *args))


async def read(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a blocking read (store or daemon callable) in the default thread pool."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def _json(data: Mapping[str, Any], status: int = 200, **headers: str) -> web.Response:
    return web.json_response(data, status=status, headers=headers or None)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def decision_json(d: Decision) -> dict[str, Any]:
    """A decision as the API shows it (roles analyst and above only: it holds the target)."""
    return {
        "id": d.id,
        "target": d.indicator.value,
        "target_ref": d.indicator.ref,
        "scope": d.indicator.scope.value,
        "action": d.action.value,
        "status": d.status.value,
        "reason": d.reason,
        "reference": d.reference,
        "source": d.notice_source.value,
        "notice_received_at": _iso(d.notice_received_at),
        "created_at": _iso(d.created_at),
        "expires_at": _iso(d.expires_at),
        "category": d.category,
        "actor": d.actor,
        "approved_by": d.approved_by,
        "hold": d.hold,
        "jurisdiction": d.jurisdiction,
        "history": [
            {"at": _iso(h.at), "actor": h.actor, "status": h.status.value, "reason": h.reason}
            for h in d.history
        ],
    }


def _audit_json(r: AuditRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "at": _iso(r.at),
        "actor": r.actor,
        "action": r.action,
        "subject": r.subject,
        "detail": dict(r.detail),
        "prev_hash": r.prev_hash,
        "row_hash": r.row_hash,
    }


def page_json(items: list[dict[str, Any]], limit: int, offset: int) -> dict[str, Any]:
    """One page of a list asked for with ``limit + 1`` rows (the extra row, if any, says
    there is a next page; it is not shown)."""
    more = len(items) > limit
    return {
        "items": items[:limit],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if more else None,
    }


def pending_json(d: Decision, *, show_target: bool) -> dict[str, Any]:
    """A pending decision in the plan: every role sees its short hash, analysts and
    above the target itself."""
    item: dict[str, Any] = {
        "id": d.id,
        "scope": d.indicator.scope.value,
        "action": d.action.value,
        "source": d.notice_source.value,
        "reference": d.reference,
        "actor": d.actor,
        "created_at": _iso(d.created_at),
        "target_ref": d.indicator.ref,
    }
    if show_target:
        item["target"] = d.indicator.value
    return item


def notice_json(reference: str, results: list[NoticeResult]) -> dict[str, Any]:
    """The answer to a notice with many targets: counts and one result per target."""
    return {
        "reference": reference,
        "targets": len(results),
        **notice_counts(results),
        "results": [
            {
                "index": r.index,
                "outcome": r.outcome.value,
                "target_ref": r.target_ref,
                "reason": r.reason,
                "decision": r.decision.id if r.decision else None,
                "target": r.decision.indicator.value if r.decision else None,
            }
            for r in results
        ],
    }


def token_json(t: Token) -> dict[str, Any]:
    """A token as an admin sees it: never its secret or the secret's hash."""
    return {
        "id": t.id,
        "name": t.name,
        "role": t.role,
        "created_at": _iso(t.created_at),
        "revoked": t.revoked,
    }


def _path_id(request: web.Request, what: str) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 18:
        raise ApiError(404, "not-found", f"no such {what}", "id")
    return int(text)


def _decision_id(request: web.Request) -> int:
    return _path_id(request, "decision")


def decision_request(body: DecisionNotice, target: str, scope: Scope) -> DecisionRequest:
    return DecisionRequest(
        target=target,
        scope=scope,
        action=body.action,
        reason=body.reason,
        reference=body.reference,
        source=body.source,
        notice_received_at=body.notice_received_at,
        expires_at=body.expires_at,
        category=body.category,
        hold=body.hold,
        jurisdiction=body.jurisdiction,
    )


def _query(request: web.Request, model: type[Any]) -> Any:
    return parse_query(list(request.query.items()), model)


def then_notify(ctx: ApiContext, fn: Callable[[], Decision]) -> Decision:
    """Run a decision write, then tell the daemon the policy may have changed."""
    decision = fn()
    ctx.on_change()
    return decision


def create_then_notify(
    ctx: ApiContext, requests: Sequence[tuple[DecisionRequest, str]]
) -> list[Outcome]:
    """Store decisions in one transaction (:mod:`edgeagent.api.groupcommit`), then tell
    the daemon the policy may have changed if any was stored."""
    outcomes = ctx.decisions.create_many(requests)
    if any(isinstance(o, Decision) for o in outcomes):
        ctx.on_change()
    return outcomes


# --- decisions


async def create_decision(request: web.Request, who: Principal) -> web.Response:
    body = parse_body(await request.read(), DecisionCreate)
    scope = Scope(body.scope)
    try:
        # Canonicalise here too, so that anything the parser rejects — not only the
        # InvalidTarget it raises on purpose — becomes a 400 on "target".
        Indicator.parse(scope, body.target)
    except ValueError as exc:
        if isinstance(exc, EdgeAgentError):
            raise
        raise bad_input("target", f"not a valid {scope.value} target") from None
    req = decision_request(body, body.target, scope)
    decision = await request.app[GROUP_COMMIT].create(req, who.name)
    return _json(decision_json(decision), 201, Location=f"/v1/decisions/{decision.id}")


def notice_then_notify(
    ctx: ApiContext, notice: DecisionRequest, targets: list[NoticeTarget], actor: str
) -> list[NoticeResult]:
    results = ctx.decisions.create_notice(notice, targets, actor)
    if any(r.outcome is NoticeOutcome.ACCEPTED for r in results):
        ctx.on_change()
    return results


async def create_notice(request: web.Request, who: Principal) -> web.Response:
    ctx = request.app[CONTEXT]
    body = parse_body(await request.read(), DecisionBulkCreate)
    targets = [NoticeTarget(t.target, Scope(t.scope)) for t in body.targets]
    # The notice's own target and scope are placeholders: each target brings its own.
    notice = decision_request(body, "", Scope.URL)
    results = await write(request.app, notice_then_notify, ctx, notice, targets, who.name)
    return _json(notice_json(body.reference, results))


def decision_page(store: Store, q: DecisionListQuery) -> dict[str, Any]:
    """One page of decisions matching ``q`` (blocking: one store read)."""
    try:
        search = target_search(q.target) if q.target is not None else None
    except InvalidTarget as exc:
        raise bad_input("target", exc.reason) from None
    found = store.list_decisions(
        status=q.status,
        source=q.source,
        scope=q.scope,
        reference=q.reference,
        target=search,
        limit=q.limit + 1,  # one more tells whether there is a next page
        offset=q.offset,
    )
    return page_json([decision_json(d) for d in found], q.limit, q.offset)


async def list_decisions(request: web.Request, who: Principal) -> web.Response:
    ctx = request.app[CONTEXT]
    q: DecisionListQuery = _query(request, DecisionListQuery)
    return _json(await read(decision_page, ctx.store, q))


async def get_decision(request: web.Request, who: Principal) -> web.Response:
    ctx = request.app[CONTEXT]
    decision = await read(ctx.store.get_decision, _decision_id(request))
    return _json(decision_json(decision))


async def revoke_decision(request: web.Request, who: Principal) -> web.Response:
    ctx = request.app[CONTEXT]
    decision_id = _decision_id(request)
    body = parse_body(await request.read(), DecisionRevoke)
    decision = await write(
        request.app,
        then_notify,
        ctx,
        partial(ctx.decisions.revoke, decision_id, who.name, body.reason),
    )
    return _json(decision_json(decision))


async def approve_decision(request: web.Request, who: Principal) -> web.Response:
    ctx = request.app[CONTEXT]
    decision_id = _decision_id(request)
    raw = await request.read()
    body = parse_body(raw, DecisionApprove) if raw.strip() else DecisionApprove()
    decision = await write(
        request.app,
        then_notify,
        ctx,
        partial(ctx.decisions.approve, decision_id, who.name, body.reason),
    )
    return _json(decision_json(decision))


# --- status and plan


class EntryCounts:
    """Entry counts of the desired state in force, computed once per state (100k+ entries)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tally: EntryTally | None = None
        self._state: DesiredState | None = None

    def of(self, state: DesiredState) -> EntryTally:
        with self._lock:
            if self._state is not state or self._tally is None:
                self._tally = EntryTally.of(state)
                self._state = state
            return self._tally


ENTRY_COUNTS = web.AppKey("edgeagent_api_entry_counts", EntryCounts)


def policy_tally(ctx: ApiContext, counts: EntryCounts) -> EntryTally | None:
    """The entry counts of the policy in force; ``None`` while none is loaded."""
    if ctx.tally is not None:
        return ctx.tally()
    index = ctx.policy()
    return counts.of(index.state) if index is not None else None


def pending_count(store: Store) -> int:
    """The one pending-decision count every view shows."""
    return store.count_decisions(status=DecisionStatus.PENDING_APPROVAL)


def _status_sync(ctx: ApiContext, counts: EntryCounts) -> dict[str, Any]:
    tally = policy_tally(ctx, counts)
    roles = ctx.leader()
    return {
        "leader": bool(roles["leader"]),
        "ha": dict(roles["ha"]),
        # The store's: the version being enforced, even while ``entries`` (the counts
        # of the last policy built, ``entries.version``) still shows the one before.
        "policy_version": ctx.store.policy_version(),
        "policy_loaded": tally is not None,
        "entries": tally.to_json() if tally else {},
        "decisions": {DecisionStatus.PENDING_APPROVAL.value: pending_count(ctx.store)},
        "feeds": dict(ctx.feeds()),
        "publishers": dict(ctx.publishers()),
        "reload": dict(ctx.reload()),
        "database": dict(ctx.database()),
    }


async def status(request: web.Request, who: Principal) -> web.Response:
    return _json(await read(_status_sync, request.app[CONTEXT], request.app[ENTRY_COUNTS]))


async def fleet(request: web.Request, who: Principal) -> web.Response:
    return _json(dict(request.app[CONTEXT].fleet()))


def plan_view(ctx: ApiContext, role: Role, shown: int = PENDING_SHOWN) -> dict[str, Any]:
    """What ``GET /v1/plan`` answers a caller of ``role``, listing at most ``shown``
    pending decisions (blocking: store reads)."""
    pending = ctx.store.list_decisions(status=DecisionStatus.PENDING_APPROVAL, limit=shown)
    return {
        # Counted, not the length of the list: the list stops at PENDING_SHOWN.
        "pending_decisions": pending_count(ctx.store),
        "pending": [pending_json(d, show_target=role >= Role.ANALYST) for d in pending],
        "plan": dict(ctx.plan(role >= Role.SUPERVISOR)),
    }


async def plan(request: web.Request, who: Principal) -> web.Response:
    ctx = request.app[CONTEXT]
    # List entries only for roles that may see them: the NOC gets short hashes and counts,
    # analysts the pending targets, supervisors also what each held generation changes.
    return _json(await read(plan_view, ctx, who.role))


# --- lookup


async def lookup(request: web.Request, who: Principal) -> web.Response:
    q: LookupQuery = _query(request, LookupQuery)
    return _json(await explain_target(request.app, who, q.target))


async def explain_target(app: web.Application, who: Principal, target: str) -> dict[str, Any]:
    """How ``target`` is treated and why: rate-limited per token and audited (by short
    hash), for the API's lookup and the console's alike."""
    ctx = app[CONTEXT]
    wait = app[LOOKUP_LIMITER].take(who.token_id)
    if wait > 0:
        await write(app, ctx.store.append_audit, who.name, "lookup.limited", "lookup", {})
        raise ApiError(
            429,
            "rate-limited",
            "lookup rate limit reached; retry later",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    index: PolicyIndex | None = await read(ctx.policy)
    if index is None:
        raise ApiError(503, "policy-not-loaded", "no policy loaded yet")
    try:
        treatment = index.explain(target)
    except ValueError as exc:
        await write(
            app,
            ctx.store.append_audit,
            who.name,
            "lookup",
            f"target:{short_hash(target)}",
            {"result": "invalid"},
        )
        reason = exc.reason if isinstance(exc, InvalidTarget) else "not a URL, name or address"
        raise bad_input("target", reason) from None
    await write(
        app,
        ctx.store.append_audit,
        who.name,
        "lookup",
        f"target:{short_hash(treatment.canonical)}",
        {
            "kind": treatment.target_kind,
            "dns": treatment.dns,
            "proxy": treatment.proxy,
            "matches": len(treatment.matches),
            "policy_version": index.state.version,
        },
    )
    return {
        "target_kind": treatment.target_kind,
        "canonical": treatment.canonical,
        "policy_version": index.state.version,
        "dns": treatment.dns,
        "proxy": treatment.proxy,
        "matches": [
            {
                "layer": m.layer,
                "effect": m.effect,
                "scope": m.entry.indicator.scope.value,
                "target": m.entry.indicator.value,
                "action": m.entry.action.value,
                "source": m.entry.source,
                "reference": m.entry.reference,
                "category": m.entry.category,
            }
            for m in treatment.matches
        ],
    }


# --- audit


async def audit(request: web.Request, who: Principal) -> web.Response:
    ctx = request.app[CONTEXT]
    q: AuditQuery = _query(request, AuditQuery)
    records = await read(ctx.store.audit_since, q.since, q.limit)
    return _json({"items": [_audit_json(r) for r in records]})


async def audit_verify(request: web.Request, who: Principal) -> web.Response:
    ctx = request.app[CONTEXT]
    result = await read(ctx.store.verify_audit)
    return _json(
        {
            "ok": result.ok,
            "rows": result.rows,
            "first_bad_row": result.first_bad_row,
            "reason": result.reason,
        }
    )


# --- tokens


async def list_tokens(request: web.Request, who: Principal) -> web.Response:
    ctx = request.app[CONTEXT]
    tokens = await write(request.app, list_token_records, ctx.store, who.name)
    return _json({"items": [token_json(t) for t in tokens]})


async def revoke_token(request: web.Request, who: Principal) -> web.Response:
    ctx = request.app[CONTEXT]
    token_id = _path_id(request, "token")
    body = parse_body(await request.read(), TokenRevoke)
    token = await write(
        request.app, revoke_token_record, ctx.store, token_id, who.name, body.reason
    )
    request.app[AUTHENTICATOR].forget(token.id)  # refused from the next request on
    return _json(token_json(token))


# --- documents and probes


async def openapi(request: web.Request, who: Principal) -> web.Response:
    document: dict[str, Any] = request.app[OPENAPI_DOCUMENT]
    return _json(document)


async def healthz(request: web.Request, who: Principal) -> web.Response:
    """Alive: answered by the event loop itself, so a 200 proves the loop runs."""
    return _json({"status": "ok"})


async def readyz(request: web.Request, who: Principal) -> web.Response:
    ctx = request.app[CONTEXT]
    return await ready_response(ctx.readiness, ctx.leader)


async def ready_response(
    readiness: Callable[[], Any], leader: Callable[[], Mapping[str, Any]] = sole_leader
) -> web.Response:
    """200 ``{"ready": true}`` or 503 with the reasons ``readiness()`` gives; ``leader``
    and ``role`` say whether this agent leads (a standby is ready: it serves the API)."""
    reasons = [str(r) for r in await read(readiness)]
    roles = leader()
    body = {
        "ready": not reasons,
        "reasons": reasons,
        "leader": bool(roles["leader"]),
        "role": roles["ha"].get("role", "leader"),
    }
    return _json(body, 200 if not reasons else 503)
