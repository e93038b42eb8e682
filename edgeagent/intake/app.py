"""The public listener: the report page, the appeal page and the takedown challenge page.

Privacy contract (see :mod:`edgeagent.intake.base`): handlers read the form, the CSRF
cookie and, for the rate limit only, the peer address, which is turned into a keyed
hash held in memory for at most the limiter's window (:mod:`.ratelimit`). Nothing else
about the visitor is read, stored, logged or counted; the access log is off and aiohttp's
error records are redacted (the daemon serves the pages by
:func:`edgeagent.connlimits.serve`, under the ``[listeners]`` limits). Pages carry no
script and load nothing from elsewhere, so they work the same with JavaScript off.

Order of checks on a submission: size (413), per-source rate (429), CSRF (403), the
fields (400, the form shown again with every problem), the day's cap (503), then the
item is queued and its reference shown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from edgeagent.intake import page
from edgeagent.intake.base import IntakeChannel, IntakeContent, Submit
from edgeagent.intake.csrf import COOKIE_NAME, FIELD_NAME, CsrfTokens
from edgeagent.intake.form import (
    FormInvalid,
    FormProblem,
    appeal_content,
    challenge_content,
    report_content,
)
from edgeagent.intake.ratelimit import DailyCap, SourceLimiter
from edgeagent.intake.settings import IntakeSettings
from edgeagent.metrics import Metrics

Parse = Callable[[Mapping[str, str], IntakeSettings], IntakeContent]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Render = Callable[[Mapping[str, str] | None, tuple[FormProblem, ...], str], str]

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True, slots=True)
class _Form:
    path: str
    channel: IntakeChannel
    parse: Parse
    render: Render


class PublicPages:
    """The pages' state: limits, CSRF key and the queue they feed."""

    def __init__(
        self,
        settings: IntakeSettings,
        submit: Submit,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.submit = submit
        self.metrics = metrics
        self.csrf = CsrfTokens()
        self.limiter = SourceLimiter(
            settings.rate_per_source, settings.rate_window_seconds, clock=clock
        )
        self.cap = DailyCap(settings.daily_cap)

    def _refused(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.intake_refused.labels(reason).inc()

    def _page(
        self, text: str, status: int = 200, cookie: str | None = None, **extra: str
    ) -> web.Response:
        resp = web.Response(
            text=text,
            status=status,
            content_type="text/html",
            charset="utf-8",
            headers={**_HEADERS, **extra},
        )
        if cookie is not None:
            resp.set_cookie(
                COOKIE_NAME, cookie, httponly=True, samesite="Strict", path="/", secure=False
            )
        return resp

    def _with_token(
        self, request: web.Request, render: Callable[[str], str], status: int = 200
    ) -> web.Response:
        cookie, token = self.csrf.issue(request.cookies.get(COOKIE_NAME))
        return self._page(render(token), status, cookie)

    def routes(self) -> list[web.RouteDef]:
        s = self.settings
        forms = (
            _Form(
                "/report",
                IntakeChannel.PUBLIC_REPORT,
                report_content,
                lambda f, p, t: page.report_page(s, t, f, p),
            ),
            _Form(
                "/appeal",
                IntakeChannel.APPEAL,
                appeal_content,
                lambda f, p, t: page.appeal_page(s, t, (f or {}).get("ref", ""), f, p),
            ),
            _Form(
                "/challenge",
                IntakeChannel.CHALLENGE,
                challenge_content,
                lambda f, p, t: page.challenge_page(s, t, f, p),
            ),
        )
        out = [
            web.get("/", self._home),
            web.get("/static/intake.css", self._css),
        ]
        for form in forms:
            out += [web.get(form.path, self._show(form)), web.post(form.path, self._post(form))]
        return out

    async def _home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/report", headers=_HEADERS)

    async def _css(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=page.asset("intake.css"),
            content_type="text/css",
            headers={**_HEADERS, "Cache-Control": "max-age=3600"},
        )

    def _show(self, form: _Form) -> Handler:
        async def show(request: web.Request) -> web.StreamResponse:
            # Only the appeal's opaque reference is read from the query string.
            initial = {"ref": request.query.get("ref", "")[:64]}
            return self._with_token(request, lambda t: form.render(initial, (), t))

        return show

    def _post(self, form: _Form) -> Handler:
        async def post(request: web.Request) -> web.StreamResponse:
            return await self._submit(request, form)

        return post

    async def _submit(self, request: web.Request, form: _Form) -> web.StreamResponse:
        s = self.settings
        back = form.path
        if request.content_type not in _FORM_TYPES:
            self._refused("bad-form")
            return self._page(page.refused_page(s, "This was not sent from the form.", back), 415)
        try:
            raw = await request.post()
        except web.HTTPRequestEntityTooLarge:
            self._refused("too-large")
            return self._page(
                page.refused_page(s, "That was too long to send. Please shorten it.", back), 413
            )
        if not self.limiter.allow(request.remote or ""):
            self._refused("rate-limited")
            return self._page(
                page.refused_page(
                    s, "Too many submissions from your connection. Please try later.", back
                ),
                429,
                **{"Retry-After": str(s.rate_window_seconds)},
            )
        fields = {k: v for k, v in raw.items() if isinstance(v, str)}
        if not self.csrf.valid(request.cookies.get(COOKIE_NAME), fields.get(FIELD_NAME)):
            self._refused("csrf")
            return self._with_token(
                request,
                lambda t: form.render(fields, (FormProblem("form", _EXPIRED),), t),
                403,
            )
        try:
            content = form.parse(fields, s)
        except FormInvalid as exc:
            self._refused("invalid")
            problems = exc.problems
            return self._with_token(request, lambda t: form.render(fields, problems, t), 400)
        if not self.cap.take():
            self._refused("daily-cap")
            if self.metrics is not None:
                self.metrics.intake_daily_cap_reached.set(1)
            return self._page(
                page.refused_page(
                    s,
                    "We cannot take more reports online today. Please report to "
                    f"{s.hotline_name} instead, or try again tomorrow.",
                    back,
                ),
                503,
            )
        if self.metrics is not None:
            self.metrics.intake_daily_cap_reached.set(0)
        item = await asyncio.to_thread(self.submit, form.channel, content)
        return self._page(page.received_page(s, item.reference, bool(content.contact)))


_EXPIRED = "the form had expired; nothing was sent. Please check it and send it again"


def create_public_pages_app(pages: PublicPages) -> web.Application:
    """The pages' aiohttp app; request bodies above ``max_form_bytes`` are refused."""
    app = web.Application(client_max_size=pages.settings.max_form_bytes)
    app.add_routes(pages.routes())
    return app
