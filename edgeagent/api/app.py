"""Building the control API and the metrics applications, and serving them.

``create_app(ctx)`` wires the route table (:mod:`edgeagent.api.routes`) behind the role
check and an error middleware that answers every failure as
``{"error": {"field", "message", "code"}}``. ``create_metrics_app(registry, readiness)``
serves ``/metrics``, ``/healthz`` and ``/readyz`` for a separate listen address.

Serve both with :func:`start_site`: aiohttp's default access log records client addresses,
and its parser-error records quote the request line; neither may be kept.

Status codes chosen here: four-eyes (the creator approving) is ``403`` with code
``four-eyes``; an oversized body is ``413`` with field ``body``; a target the guardrails
refuse (public suffix, root) is ``400`` on ``target``; a client address with too many
denied requests gets ``429`` before its token is looked up (:mod:`edgeagent.api.denials`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from edgeagent import bulk, connlimits
from edgeagent.api import handlers
from edgeagent.api.auth import (
    ANONYMOUS,
    AUTHENTICATOR,
    LOOKUP_LIMITER,
    Authenticator,
    Denied,
    RateLimiter,
    authorize,
    bearer_secret,
)
from edgeagent.api.context import CONTEXT, OPENAPI_DOCUMENT, STORE_WRITER, ApiContext, sole_leader
from edgeagent.api.denials import DenialKind, DenialLedger, SourceBudget
from edgeagent.api.edge_handlers import release_long_polls
from edgeagent.api.groupcommit import GROUP_COMMIT, DecisionGroupCommit, Outcome
from edgeagent.api.openapi import build_document
from edgeagent.api.routes import ROUTES, Route
from edgeagent.api.tls import make_ssl_context
from edgeagent.api.validation import REQUEST_ZONE, ApiError, bad_input
from edgeagent.decisions import DecisionRequest, FourEyesRequired
from edgeagent.errors import (
    Conflict,
    GuardrailViolation,
    InvalidRequest,
    InvalidTarget,
    InvalidTransition,
    NotFound,
    StorageFull,
    StoreError,
    StoreUnavailable,
)
from edgeagent.limits import ConnectionLimits
from edgeagent.logs import fields
from edgeagent.roles import Role

__all__ = [
    "bound_port",
    "create_app",
    "create_metrics_app",
    "make_ssl_context",
    "start_site",
]

log = logging.getLogger(__name__)

_LIMITED = "too many denied requests from this address"
DENIED_BUDGET = web.AppKey("edgeagent_api_denied_budget", SourceBudget)
DENIALS = web.AppKey("edgeagent_api_denials", DenialLedger)

_HTTP_CODES = {
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
}


def create_app(ctx: ApiContext, routes: Sequence[Route] = ROUTES) -> web.Application:
    """The control API application for ``ctx``. Serve with ``access_log=None``."""
    app = web.Application(
        client_max_size=ctx.max_body_bytes,
        middlewares=[_in_flight_middleware, _error_middleware],
    )
    app[CONTEXT] = ctx
    app[LOOKUP_LIMITER] = RateLimiter(ctx.lookup_rate_per_minute, ctx.clock)
    app[AUTHENTICATOR] = Authenticator(ctx.store, ctx.token_cache_seconds, ctx.clock)
    app[DENIED_BUDGET] = SourceBudget(ctx.denied_per_minute, ctx.clock)
    app[DENIALS] = DenialLedger()
    app[handlers.ENTRY_COUNTS] = handlers.EntryCounts()
    app[OPENAPI_DOCUMENT] = build_document(routes)
    app.cleanup_ctx.append(_store_writer)
    # After the writer: cleaned up before it, so the last counts are still written.
    app.cleanup_ctx.append(_denial_flusher)
    app.cleanup_ctx.append(_decision_group_commit)  # cleaned up before the writer too
    app.on_shutdown.append(release_long_polls)
    for route in routes:
        app.router.add_route(route.method, route.path, _guarded(route), name=route.operation_id)
    return app


async def _store_writer(app: web.Application) -> AsyncIterator[None]:
    """The single thread that performs store writes; drained on shutdown."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeagent-api-store")
    app[STORE_WRITER] = executor
    yield
    # Let writes already accepted finish: their callers may still get an answer.
    executor.shutdown(wait=True, cancel_futures=False)


async def _decision_group_commit(app: web.Application) -> AsyncIterator[None]:
    """``POST /v1/decisions`` gathered into shared transactions on the writer thread."""
    ctx = app[CONTEXT]

    async def commit(requests: Sequence[tuple[DecisionRequest, str]]) -> list[Outcome]:
        return await handlers.write(app, handlers.create_then_notify, ctx, requests)

    group = DecisionGroupCommit(commit)
    app[GROUP_COMMIT] = group
    yield
    await group.close()


async def _denial_flusher(app: web.Application) -> AsyncIterator[None]:
    """Every ``denial_audit_seconds``, one audit row per kind of denial counted meanwhile."""
    seconds = app[CONTEXT].denial_audit_seconds

    async def every_interval() -> None:
        while True:
            await asyncio.sleep(seconds)
            await flush_denials(app)

    task = asyncio.create_task(every_interval(), name="edgeagent-api-denials")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await flush_denials(app)


async def flush_denials(app: web.Application) -> None:
    """Audit the denials counted since the last flush, one row per kind with its count."""
    store = app[CONTEXT].store
    for kind, count in app[DENIALS].drain():
        await handlers.write(
            app, store.append_audit, kind.actor, "auth.denied", kind.subject, kind.detail(count)
        )


async def _audit_denial(request: web.Request, kind: DenialKind) -> None:
    """Audit a denial now if it is the first of its kind this interval, else count it.

    A denial is answered as such even when its audit row cannot be written (a full
    disk, the database away): the caller learns nothing about the store's state."""
    if request.app[DENIALS].record(kind):
        store = request.app[CONTEXT].store
        try:
            await handlers.write(
                request.app,
                store.append_audit,
                kind.actor,
                "auth.denied",
                kind.subject,
                kind.detail(1),
            )
        except StoreError as exc:
            _count_store_failure(request.app, exc)
            log.warning("audit of a denied request not written", extra=fields(error=str(exc)))


def _guarded(route: Route) -> Handler:
    """Wrap ``route.handler`` in authentication and the role check; audit refusals."""
    # The route template, never the raw path: a path may carry a list entry.
    subject = f"route:{route.method} {route.path}"

    async def handler(request: web.Request) -> web.StreamResponse:
        if route.role is Role.PUBLIC:
            return await route.handler(request, ANONYMOUS)
        budget = request.app[DENIED_BUDGET]
        source = budget.source(request.remote)
        try:
            secret = bearer_secret(request)
            auth = request.app[AUTHENTICATOR]
            who = auth.cached(secret)
            if who is None:
                wait = budget.wait(source)
                if wait > 0:
                    # Too many denials from here: no store read for yet another guess.
                    await _audit_denial(request, DenialKind("anonymous", subject, 429, _LIMITED))
                    raise ApiError(
                        429,
                        "rate-limited",
                        _LIMITED + "; retry later",
                        headers={"Retry-After": str(max(1, math.ceil(wait)))},
                    )
                who = await handlers.read(auth.check, secret)
            authorize(who, route.role)
        except Denied as denied:
            budget.spend(source)
            await _audit_denial(
                request, DenialKind(denied.actor, subject, denied.status, denied.reason)
            )
            if denied.status == 401:
                raise ApiError(
                    401,
                    "unauthorized",
                    denied.reason,
                    headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="edgeagent"'},
                ) from None
            raise ApiError(403, "forbidden", denied.reason) from None
        REQUEST_ZONE.set(request.app[CONTEXT].time_zone)  # this request's task only
        return await route.handler(request, who)

    handler.__name__ = route.handler.__name__
    return handler


@web.middleware
async def _in_flight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Bulk work in worker threads (a feed generation) pauses only while requests wait.
    with bulk.request_in_flight():
        return await handler(request)


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except ApiError as exc:
        response = _error(exc)
    except web.HTTPException as exc:
        response = _http_error(exc)
    except FourEyesRequired as exc:
        response = _error(ApiError(403, "four-eyes", str(exc)))
    except Conflict as exc:
        response = _error(ApiError(409, "conflict", str(exc)))
    except InvalidTransition as exc:
        response = _error(ApiError(409, "invalid-transition", str(exc), "status"))
    except NotFound as exc:
        response = _error(ApiError(404, "not-found", f"{exc.kind} not found"))
    except InvalidRequest as exc:
        response = _error(bad_input(exc.field, exc.reason))
    except StoreUnavailable as exc:
        # A full disk or an unreachable database: the same request may succeed later.
        _count_store_failure(request.app, exc)
        response = _error(ApiError(503, _store_code(exc), str(exc), headers={"Retry-After": "30"}))
    except (InvalidTarget, GuardrailViolation) as exc:
        # The reasons name the rule, not the entry (entries appear only as short hashes).
        response = _error(bad_input("target", exc.reason))
    except Exception:
        # Log the type and place only: request data may hold list entries.
        log.exception("unhandled error in %s %s", request.method, _route_label(request))
        response = _error(ApiError(500, "internal", "internal error"))
    _count(request, response.status)
    return response


def _store_code(exc: StoreError) -> str:
    return "storage-full" if isinstance(exc, StorageFull) else "store-unavailable"


def _count_store_failure(app: web.Application, exc: StoreError) -> None:
    metrics = app[CONTEXT].metrics
    if metrics is not None:
        metrics.store_unavailable.labels(reason=_store_code(exc)).inc()


def _error(exc: ApiError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status, headers=exc.headers or None)


def _http_error(exc: web.HTTPException) -> web.Response:
    field = "body" if exc.status == 413 else None
    message = exc.reason if exc.status != 413 else "request body too large"
    headers: dict[str, str] = {}
    if hdrs.ALLOW in exc.headers:
        headers["Allow"] = exc.headers[hdrs.ALLOW]
    code = _HTTP_CODES.get(exc.status, "http-error")
    return _error(ApiError(exc.status, code, message, field, headers=headers))


def _route_label(request: web.Request) -> str:
    info = request.match_info
    if info.http_exception is not None or info.route.resource is None:
        return "unmatched"
    return info.route.resource.canonical


def _count(request: web.Request, status: int) -> None:
    metrics = request.app[CONTEXT].metrics
    if metrics is not None:
        metrics.api_requests.labels(route=_route_label(request), status=str(status)).inc()


# --- metrics app


def create_metrics_app(
    registry: CollectorRegistry,
    readiness: Callable[[], Sequence[str]] | None = None,
    leader: Callable[[], Mapping[str, Any]] = sole_leader,
) -> web.Application:
    """``/metrics`` (Prometheus text), ``/healthz`` and ``/readyz``; no token, no body.

    Meant for a separate listen address reachable by the monitoring system only.
    """

    def _ready() -> Sequence[str]:
        return ()

    check = readiness or _ready

    async def healthz(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.StreamResponse:
        return await handlers.ready_response(check, leader)

    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", make_aiohttp_handler(registry), allow_head=False)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    return app


# --- serving


async def start_site(
    app: web.Application,
    host: str,
    port: int,
    limits: ConnectionLimits,
    *,
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout: float = 10.0,
) -> web.AppRunner:
    """Start serving ``app`` on ``host:port`` under ``limits`` (:mod:`edgeagent.connlimits`)
    with the access log off and aiohttp's own error records stripped of request lines and
    addresses.

    Returns the runner; ``await runner.cleanup()`` drains and stops it. ``port=0`` picks a
    free port: read it back with :func:`bound_port`.
    """
    return await connlimits.serve(
        app,
        limits,
        address=(host, port),
        ssl_context=ssl_context,
        shutdown_timeout=shutdown_timeout,
    )


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port the first site of ``runner`` listens on."""
    for addr in runner.addresses:
        if isinstance(addr, tuple):
            return int(addr[1])
    raise RuntimeError("runner has no TCP site")
