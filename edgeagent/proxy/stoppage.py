"""The stop page: why access was refused, how to appeal, where to find help.

Served by the agent (``create_stop_page_app``). Squid's ``deny_info`` redirects a refused
request to ``http://<stop-page-host>:<port>/blocked?source=%o`` (``%o`` is the source
label the helper returned); no URL is passed, so the stop page never learns which page was
refused. The response is HTTP 451 (RFC 7725) with a ``Link: <...>; rel="blocked-by"``
header naming the blocking party, or 403 if configured.

With an appeal key the helper answers ``<source>.<reference>``: the reference is an
opaque keyed hash of the blocking entry (:mod:`edgeagent.intake.entryref`), and the page
adds it to the appeal link (``?ref=...``) so an appeal names the entry without anyone
typing or seeing its URL. A malformed reference is dropped.

Privacy contract: the handler reads only ``source`` and ``Accept-Language``; it stores and
logs nothing (no client address, URL or time). Counting is the caller's ``on_hit(source)``
callback (the daemon wires it to ``edgeagent_stop_page_hits_total``); unknown sources are
counted as ``unknown`` so a client cannot create metric labels. Run the app with
``access_log=None`` (:func:`start_stop_page` does, and ends with
:func:`edgeagent.listeners.stop`), because aiohttp's default access log
records client addresses.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from string import Template
from typing import TYPE_CHECKING

from edgeagent import listeners
from edgeagent.intake.entryref import is_ref
from edgeagent.limits import ConnectionLimits

if TYPE_CHECKING:
    from aiohttp import web

OnHit = Callable[[str], None]

LANGUAGES = ("en", "fr")


@dataclass(frozen=True, slots=True)
class HelpResource:
    """A link to support shown on every stop page."""

    label: str
    url: str


@dataclass(frozen=True, slots=True)
class StopPageSource:
    """How the page names one list source: the hotline or authority that identified it."""

    authority: str  # e.g. "the Example Hotline"
    authority_url: str = ""


@dataclass(frozen=True, slots=True)
class StopPageSettings:
    """Everything the stop page shows; defaults use reserved names only."""

    status: int = 451
    operator: str = "Your internet provider"
    blocked_by_url: str = "https://isp.example/blocking-policy"
    appeal_contact: str = "https://isp.example/appeal"
    appeal_email: str = "appeal@isp.example"
    help_resources: tuple[HelpResource, ...] = (
        HelpResource(
            "Confidential help for people worried about their thoughts or behaviour",
            "https://help.example/",
        ),
        HelpResource("Report child sexual abuse material to a hotline", "https://hotline.example/"),
    )
    sources: Mapping[str, StopPageSource] = field(
        default_factory=lambda: {
            "decision": StopPageSource("our notice-and-takedown team"),
            "unavailable": StopPageSource("our filtering service"),
        }
    )
    default_source: StopPageSource = StopPageSource("a child protection hotline or authority")

    def __post_init__(self) -> None:
        if self.status not in (451, 403):
            raise ValueError("stop page status must be 451 or 403")


_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Access refused",
        "lead": "This page was not shown because $authority identified it as child sexual "
        "abuse material. $operator blocks such pages as the law and our policy require. "
        "Only this page is blocked; the rest of the site is not affected by this block.",
        "appeal_h": "If you think this is a mistake",
        "appeal": "Tell us, and we will review the block. You do not have to give your name "
        "and we do not record who saw this page.",
        "appeal_link": "Report a mistake or appeal",
        "help_h": "Help and support",
        "unavailable": "The filtering service could not check this page, so it was not shown.",
    },
    "fr": {
        "title": "Accès refusé",
        "lead": "Cette page n'a pas été affichée parce que $authority l'a identifiée comme "
        "un contenu d'abus sexuel sur enfant. $operator bloque ces pages comme la loi et "
        "notre politique l'exigent. Seule cette page est bloquée ; le reste du site ne "
        "l'est pas.",
        "appeal_h": "Si vous pensez qu'il s'agit d'une erreur",
        "appeal": "Signalez-le-nous et nous réexaminerons le blocage. Vous n'avez pas à "
        "donner votre nom et nous n'enregistrons pas qui a vu cette page.",
        "appeal_link": "Signaler une erreur ou faire appel",
        "help_h": "Aide et soutien",
        "unavailable": "Le service de filtrage n'a pas pu vérifier cette page ; elle n'a "
        "donc pas été affichée.",
    },
}

_PAGE = Template("""<!doctype html>
<html lang="$lang">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>$title</title>
<style>
body{font-family:sans-serif;background:#f4f1ea;color:#1d1d1d;margin:0}
main{max-width:40em;margin:3em auto;padding:2em;background:#fff;border-top:.6em solid #b3261e}
h1{color:#b3261e} a{color:#0b57d0}
</style></head>
<body><main>
<h1>$title</h1>
<p id="reason">$lead</p>
<h2>$appeal_h</h2>
<p>$appeal</p>
<p><a id="appeal" href="$appeal_url">$appeal_link</a> ·
<a href="mailto:$appeal_email">$appeal_email</a></p>
<h2>$help_h</h2>
<ul id="help">$help</ul>
</main></body></html>
""")


def choose_language(accept_language: str, available: tuple[str, ...] = LANGUAGES) -> str:
    """Best of ``available`` for an ``Accept-Language`` header (q-values honoured).

    Falls back to the first available language.
    """
    best, best_q = available[0], 0.0
    for position, item in enumerate(accept_language.split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-", 1)[0]
        # Earlier entries win ties, as listed order expresses preference too.
        q -= position * 1e-6
        if primary in available and q > best_q:
            best, best_q = primary, q
    return best


def split_source(raw: str) -> tuple[str, str]:
    """``(label, entry reference)`` of the ``source`` parameter (reference may be empty)."""
    label, _, ref = raw.partition(".")
    return label, ref if is_ref(ref) else ""


def appeal_link(base: str, ref: str) -> str:
    """The appeal URL, carrying the opaque entry reference when there is one."""
    if not ref:
        return base
    return f"{base}{'&' if '?' in base else '?'}ref={ref}"


def render_stop_page(settings: StopPageSettings, source: str, lang: str, ref: str = "") -> str:
    """The stop page HTML for ``source`` (a label) in ``lang``; all values HTML-escaped."""
    texts = _TEXTS[lang]
    esc = html.escape
    info = settings.sources.get(source, settings.default_source)
    lead_key = "unavailable" if source == "unavailable" else "lead"
    lead = Template(esc(texts[lead_key])).substitute(
        authority=esc(info.authority), operator=esc(settings.operator)
    )
    items = "".join(
        f'<li><a href="{esc(r.url)}">{esc(r.label)}</a></li>' for r in settings.help_resources
    )
    return _PAGE.substitute(
        lang=lang,
        title=esc(texts["title"]),
        lead=lead,
        appeal_h=esc(texts["appeal_h"]),
        appeal=esc(texts["appeal"]),
        appeal_url=esc(appeal_link(settings.appeal_contact, ref)),
        appeal_link=esc(texts["appeal_link"]),
        appeal_email=esc(settings.appeal_email),
        help_h=esc(texts["help_h"]),
        help=items,
    )


def create_stop_page_app(
    settings: StopPageSettings | None = None, on_hit: OnHit | None = None
) -> web.Application:
    """aiohttp app serving the stop page on every path (``/blocked?source=<label>``).

    Known source labels are those in ``settings.sources`` plus any label passed in
    ``settings.sources``; any other value is shown with ``default_source`` and counted as
    ``unknown``.
    """
    from aiohttp import web

    cfg = settings or StopPageSettings()

    async def handle(request: web.Request) -> web.Response:
        label, ref = split_source(request.query.get("source", ""))
        source = label if label in cfg.sources else "unknown"
        if on_hit is not None:
            on_hit(source)
        lang = choose_language(request.headers.get("Accept-Language", ""))
        headers = {
            "Link": f'<{cfg.blocked_by_url}>; rel="blocked-by"',
            "Cache-Control": "no-store",
            "Content-Language": lang,
            "Vary": "Accept-Language",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        }
        if request.method == "HEAD":
            return web.Response(status=cfg.status, headers=headers)
        return web.Response(
            status=cfg.status,
            text=render_stop_page(cfg, source, lang, ref),
            content_type="text/html",
            charset="utf-8",
            headers=headers,
        )

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    app.router.add_route("HEAD", "/{tail:.*}", handle)
    return app


async def start_stop_page(
    app: web.Application, host: str, port: int, limits: ConnectionLimits
) -> listeners.Listener:
    """Start ``app`` on ``host:port`` with the access log OFF (it would log client addresses)
    and aiohttp's parser-error records redacted (they would log the request line too), by
    :func:`edgeagent.listeners.start`.

    After a config reload the new stop page starts on the same address before the old one
    stops (:mod:`edgeagent.listeners`), so a refused request always finds a stop page.
    """
    return await listeners.start(app, host, port, limits)
