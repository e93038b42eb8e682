"""Server-rendered HTML of the public pages, from the templates in ``assets/``.

Every value that reaches a page (config texts, what the person typed, references) goes
through :func:`html.escape` here, in one place; templates hold no logic and no script,
and the pages load nothing from elsewhere (one stylesheet from the same listener).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from string import Template

from edgeagent.intake.form import CAME_ACROSS, FormProblem
from edgeagent.intake.settings import IntakeSettings

_esc = html.escape


@cache
def asset(name: str) -> str:
    return resources.files("edgeagent.intake").joinpath("assets", name).read_text("utf-8")


def _template(name: str) -> Template:
    return Template(asset(name))


def _options(choices: Iterable[tuple[str, str]], selected: str) -> str:
    return "\n".join(
        f'<option value="{_esc(v)}"{" selected" if v == selected else ""}>{_esc(label)}</option>'
        for v, label in choices
    )


def _problems(problems: Iterable[FormProblem]) -> str:
    items = "".join(
        f'<li><a href="#{_esc(p.field)}">{_esc(p.field)}</a>: {_esc(p.message)}</li>'
        for p in problems
    )
    if not items:
        return ""
    return (
        '<div id="problems" class="problems" role="alert"><p>Please check:</p>'
        f"<ul>{items}</ul></div>"
    )


def layout(settings: IntakeSettings, title: str, body: str) -> str:
    return _template("layout.html").substitute(
        title=_esc(title), operator=_esc(settings.operator), body=body
    )


def report_page(
    settings: IntakeSettings,
    csrf: str,
    form: Mapping[str, str] | None = None,
    problems: Iterable[FormProblem] = (),
) -> str:
    f = form or {}
    live = f.get("live_video", "")
    radios = "".join(
        f'<label><input type="radio" name="live_video" value="{v}" id="live-{v}"'
        f"{' checked' if live == v else ''}> {label}</label>"
        for v, label in (("yes", "Yes"), ("no", "No"), ("", "I do not know"))
    ).replace('id="live-"', 'id="live-unknown"')
    anonymous = f.get("anonymous", "yes") != "no"
    body = _template("report.html").substitute(
        position=_esc(settings.position),
        handling=_esc(settings.handling),
        hotline_url=_esc(settings.hotline_url),
        hotline_name=_esc(settings.hotline_name),
        problems=_problems(problems),
        csrf=_esc(csrf),
        max_urls=settings.max_urls,
        max_text=settings.max_text_chars,
        urls=_esc(f.get("urls", "")),
        categories=_options(((c, c) for c in settings.categories), f.get("category", "")),
        came_across=_options(CAME_ACROSS.items(), f.get("came_across", "")),
        live_video=radios,
        discovered_at=_esc(f.get("discovered_at", "")),
        description=_esc(f.get("description", "")),
        anon_yes="checked" if anonymous else "",
        anon_no="" if anonymous else "checked",
        contact=_esc(f.get("contact", "")),
    )
    return layout(settings, "Report child sexual abuse material", body)


def appeal_page(
    settings: IntakeSettings,
    csrf: str,
    ref: str,
    form: Mapping[str, str] | None = None,
    problems: Iterable[FormProblem] = (),
) -> str:
    f = form or {}
    note = (
        "This appeal is about the page whose stop page you came from."
        if ref
        else "Please say which page was blocked, as exactly as you can."
    )
    body = _template("appeal.html").substitute(
        problems=_problems(problems),
        csrf=_esc(csrf),
        ref=_esc(ref),
        ref_note=_esc(note),
        max_text=settings.max_text_chars,
        statement=_esc(f.get("statement", "")),
        contact=_esc(f.get("contact", "")),
    )
    return layout(settings, "Appeal a block", body)


def challenge_page(
    settings: IntakeSettings,
    csrf: str,
    form: Mapping[str, str] | None = None,
    problems: Iterable[FormProblem] = (),
) -> str:
    f = form or {}
    body = _template("challenge.html").substitute(
        problems=_problems(problems),
        csrf=_esc(csrf),
        max_text=settings.max_text_chars,
        case_reference=_esc(f.get("case_reference", "")),
        statement=_esc(f.get("statement", "")),
        contact=_esc(f.get("contact", "")),
    )
    return layout(settings, "Challenge a takedown", body)


def received_page(settings: IntakeSettings, reference: str, contact_given: bool) -> str:
    after = (
        "We will contact you if we need to, and tell you the outcome."
        if contact_given
        else "You chose not to leave a contact, so we cannot reply. Thank you for telling us."
    )
    body = _template("received.html").substitute(reference=_esc(reference), next=_esc(after))
    return layout(settings, "Received", body)


def refused_page(settings: IntakeSettings, message: str, back: str) -> str:
    body = _template("refused.html").substitute(message=_esc(message), back=_esc(back))
    return layout(settings, "Not sent", body)
