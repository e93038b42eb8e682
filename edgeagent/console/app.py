"""The console's routes on the control API's application (under ``/console/``).

The console is one more client of the service layer the API uses (decisions, intake
triage, takedown service, feed runner, audit, tokens): it adds no rule. Each page and
each action names the API operation it stands for (``operationId`` of the route table),
and the signed-in person needs exactly the role that operation needs; a refusal is
audited like the API's (``auth.denied``).

Every response carries the security headers (:data:`HEADERS`: ``default-src 'self'``,
no inline script or style, no framing). Every POST needs the session's CSRF token. A
person signs in with an API token (or the single sign-on header from a trusted proxy,
:mod:`edgeagent.console.settings`); the token is never kept, only the session, which
ends with the token's revocation too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web

from edgeagent.api import handlers as h
from edgeagent.api.auth import AUTHENTICATOR, Denied, Principal
from edgeagent.api.context import CONTEXT, ApiContext
from edgeagent.api.routes import Route
from edgeagent.api.validation import REQUEST_ZONE, ApiError
from edgeagent.console import pages
from edgeagent.console.chaincheck import ChainCheck
from edgeagent.console.render import asset
from edgeagent.console.reveals import RevealCounter
from edgeagent.console.sessions import COOKIE_NAME, CSRF_FIELD, Session, Sessions
from edgeagent.console.settings import ConsoleSettings
from edgeagent.decisions import FourEyesRequired
from edgeagent.errors import (
    EdgeAgentError,
    GuardrailViolation,
    InvalidRequest,
    InvalidTarget,
    NotFound,
    StoreUnavailable,
)
from edgeagent.feeds.runner import FeedRunner
from edgeagent.roles import Role
from edgeagent.takedown.service import TakedownService

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'none'; object-src 'none'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

PageHandler = Callable[
    ["Console", web.Request, Session, Mapping[str, str]], Awaitable[str | web.Response]
]


@dataclass(frozen=True, slots=True)
class Services:
    """The parts of the agent the console works with besides the API context."""

    takedown: TakedownService | None = None
    feeds: FeedRunner | None = None


class Console:
    """The console's state on one API application: sessions, reveal counts, roles."""

    def __init__(
        self,
        app: web.Application,
        settings: ConsoleSettings,
        routes: Sequence[Route],
        services: Services,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.settings = settings
        self.services = services
        self.roles = {r.operation_id: r.role for r in routes}
        self.sessions = Sessions(settings.idle_minutes * 60.0, settings.max_hours * 3600.0, clock)
        self.reveals = RevealCounter(app[CONTEXT].store, app[CONTEXT].time_zone)
        self.chain = ChainCheck(app[CONTEXT].store.verify_audit)
        self.clock = clock

    @property
    def ctx(self) -> ApiContext:
        return self.app[CONTEXT]

    def role_of(self, operation_id: str) -> Role:
        return self.roles[operation_id]

    def may(self, session: Session, operation_id: str) -> bool:
        role = self.roles.get(operation_id)
        return role is not None and session.who.role >= role

    # --- responses

    def html(self, text: str, status: int = 200) -> web.Response:
        return web.Response(
            text=text, status=status, content_type="text/html", charset="utf-8", headers=HEADERS
        )

    def redirect(self, location: str) -> web.Response:
        return web.Response(status=303, headers={**HEADERS, hdrs.LOCATION: location})

    # --- sign-in

    def trusted_proxy(self, request: web.Request) -> bool:
        try:
            peer = ipaddress.ip_address(request.remote or "")
        except ValueError:
            return False
        return any(peer in net for net in self.settings.trusted_proxies)

    async def sign_in(self, request: web.Request) -> web.StreamResponse:
        """``GET``: the form (or, behind the trusted proxy, single sign-on at once);
        ``POST``: a token. A new session either way, whatever cookie came in."""
        header = self.settings.sso_header
        if request.method == "GET":
            if header and header in request.headers and self.trusted_proxy(request):
                who = await self._sso(request.headers[header])
                if who is None:
                    return self.html(pages.signin_page("Single sign-on: unknown person."), 401)
                return await self._start(request, who)
            return self.html(pages.signin_page(""))
        if request.content_type not in _FORM_TYPES:
            return self.html(pages.signin_page("This was not sent from the form."), 415)
        fields = await _fields(request)
        secret = fields.get("token", "").strip() or None
        try:
            who = await h.read(request.app[AUTHENTICATOR].check, secret)
        except Denied as denied:
            await self._audit_denied(denied.actor, "console:signin", denied.status, denied.reason)
            return self.html(pages.signin_page("That token was not accepted."), 401)
        return await self._start(request, who)

    async def _sso(self, name: str) -> Principal | None:
        """The holder of the unrevoked token named ``name`` (the proxy vouches for them)."""
        tokens = await h.read(self.ctx.store.list_tokens)
        for token in tokens:
            if token.name == name and not token.revoked:
                try:
                    return Principal(token.name, Role.parse(token.role), token.id)
                except ValueError:
                    break
        await self._audit_denied("anonymous", "console:sso", 401, "no such token holder")
        return None

    async def _start(self, request: web.Request, who: Principal) -> web.StreamResponse:
        old = request.cookies.get(COOKIE_NAME)
        if old:
            self.sessions.end(old)  # never carried over: a fresh identifier at every sign-in
        session = self.sessions.start(who)
        await h.write(self.app, self.ctx.store.append_audit, who.name, "console.signin", "console")
        resp = self.redirect("/console/queue")
        resp.set_cookie(
            COOKIE_NAME,
            session.sid,
            httponly=True,
            samesite="Strict",
            path="/console/",
            secure=request.secure,
        )
        return resp

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        session = self.sessions.get(request.cookies.get(COOKIE_NAME))
        if session is not None:
            fields = await _fields(request)
            if not session.csrf_ok(fields.get(CSRF_FIELD)):
                return self.html(pages.refused_page("The form had expired."), 403)
            self.sessions.end(session.sid)
        resp = self.html(pages.signed_out_page())
        resp.del_cookie(COOKIE_NAME, path="/console/")
        return resp

    # --- pages and actions

    async def _audit_denied(self, actor: str, subject: str, status: int, reason: str) -> None:
        detail = {"status": status, "reason": reason}
        await h.write(self.app, self.ctx.store.append_audit, actor, "auth.denied", subject, detail)

    async def _live(self, session: Session) -> bool:
        """Is the session's token still unrevoked? (A revoked token ends its sessions.)"""
        tokens = await h.read(self.ctx.store.list_tokens)
        return any(t.id == session.who.token_id and not t.revoked for t in tokens)

    def guarded(self, operation_id: str, handler: PageHandler) -> Callable[..., Any]:
        """``handler`` behind the session, the role of ``operation_id`` and, for a POST,
        the CSRF token; domain refusals become a page with the reason."""
        needed = self.role_of(operation_id)

        async def run(request: web.Request) -> web.StreamResponse:
            session = self.sessions.get(request.cookies.get(COOKIE_NAME))
            if session is not None and not await self._live(session):
                self.sessions.end_token(session.who.token_id)
                session = None
            if session is None:
                if request.method == "GET":
                    return self.redirect("/console/signin")
                return self.html(pages.refused_page("Your session has ended: sign in again."), 401)
            fields: Mapping[str, str] = {}
            if request.method == "POST":
                if request.content_type not in _FORM_TYPES:
                    return self.html(pages.refused_page("This was not sent from a form."), 415)
                fields = await _fields(request)
                if not session.csrf_ok(fields.get(CSRF_FIELD)):
                    await self._audit_denied(
                        session.who.name, f"console:{operation_id}", 403, "csrf"
                    )
                    return self.html(pages.refused_page("The form had expired."), 403)
            else:
                fields = dict(request.query)
            if session.who.role < needed:
                reason = f"role {session.who.role.label} below required {needed.label}"
                await self._audit_denied(session.who.name, f"console:{operation_id}", 403, reason)
                return self.html(await self.frame(session, "Not allowed", reason), 403)
            REQUEST_ZONE.set(self.ctx.time_zone)  # dates without a zone: the team's
            try:
                result = await handler(self, request, session, fields)
            except ApiError as exc:
                message = f"{exc.field}: {exc.message}" if exc.field else exc.message
                return self.html(await self.frame(session, "Refused", message), exc.status)
            except EdgeAgentError as exc:
                status, message = _refusal(exc)
                return self.html(await self.frame(session, "Refused", message), status)
            if isinstance(result, web.Response):
                result.headers.update(HEADERS)
                return result
            return self.html(result)

        return run

    async def frame(self, session: Session, title: str, message: str) -> str:
        return pages.error_page(session, await self.counts(session), title, message)

    async def counts(self, session: Session) -> dict[str, int]:
        """The navigation's counts for this person."""
        return await pages.nav_counts(self, session)


def _refusal(exc: EdgeAgentError) -> tuple[int, str]:
    """The status and message of a domain refusal, as the API answers it."""
    if isinstance(exc, NotFound):
        return 404, f"{exc.kind} not found"
    if isinstance(exc, InvalidRequest):
        return 400, f"{exc.field}: {exc.reason}"
    if isinstance(exc, InvalidTarget | GuardrailViolation):
        return 400, f"target: {exc.reason}"
    if isinstance(exc, FourEyesRequired):
        return 403, str(exc)
    if isinstance(exc, StoreUnavailable):
        return 503, str(exc)
    return 409, str(exc)


async def _fields(request: web.Request) -> dict[str, str]:
    raw = await request.post()
    return {k: v for k, v in raw.items() if isinstance(v, str)}


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    types = {"console.css": "text/css", "console.js": "text/javascript"}
    if name not in types:
        raise web.HTTPNotFound()
    return web.Response(
        text=asset(name),
        content_type=types[name],
        headers={**HEADERS, "Cache-Control": "max-age=300"},
    )


CONSOLE = web.AppKey("edgeagent_console", Console)


def add_console(
    app: web.Application,
    settings: ConsoleSettings,
    routes: Sequence[Route],
    services: Services,
    clock: Callable[[], float] = time.monotonic,
) -> Console:
    """Serve the console on ``app`` (the API application, before it starts)."""
    console = Console(app, settings, routes, services, clock)
    app[CONSOLE] = console

    async def home(request: web.Request) -> web.StreamResponse:
        return console.redirect("/console/queue")

    app.router.add_get("/console", home, allow_head=False)
    app.router.add_get("/console/", home, allow_head=False)
    app.router.add_get("/console/static/{name}", _static, allow_head=False)
    app.router.add_route("GET", "/console/signin", console.sign_in)
    app.router.add_route("POST", "/console/signin", console.sign_in)
    app.router.add_post("/console/signout", console.sign_out)
    for method, path, operation_id, handler in pages.PAGES:
        if operation_id in console.roles:
            app.router.add_route(method, path, console.guarded(operation_id, handler))
    app.on_startup.append(_seed_reveals)
    return console


async def _seed_reveals(app: web.Application) -> None:
    await asyncio.to_thread(app[CONSOLE].reveals.seed)
