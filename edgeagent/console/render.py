"""The console's HTML: the page frame and the small pieces every page is built from.

Values reach the HTML only through :func:`edgeagent.console.exposure.inert` (or
:func:`target_cell` for list entries, masked). No inline script or style: the one
stylesheet and the one script come from ``/console/static/`` (the CSP allows nothing
else). Pieces here are pure functions returning strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache
from importlib import resources
from urllib.parse import urlencode

from edgeagent.console.exposure import inert, masked
from edgeagent.console.sessions import CSRF_FIELD, Session

NavCounts = Mapping[str, int]
# The navigation counts lists up to this many items (more show as "99+"): a count must
# not cost a page its speed when thousands of cases are due.
NAV_CAP = 99

# (path, label, count key) in the order of the navigation.
_NAV: tuple[tuple[str, str, str], ...] = (
    ("queue", "Queue", "queue"),
    ("decisions", "Decisions", "pending"),
    ("tickets", "Cases", "due"),
    ("lookup", "Lookup", ""),
    ("fleet", "Fleet", ""),
    ("reports", "Reports", ""),
    ("audit", "Audit", ""),
    ("tokens", "Tokens", ""),
)


@cache
def asset(name: str) -> str:
    return resources.files("edgeagent.console").joinpath("assets", name).read_text("utf-8")


def when(value: datetime | str | None) -> str:
    """A time as shown: ISO 8601 to the minute, UTC."""
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return inert(value.strftime("%Y-%m-%d %H:%M %Z").strip())


def target_cell(target: str, ref: str = "") -> str:
    """A list entry, masked: never a link, never the full text."""
    return f'<code class="target" title="entry {inert(ref)}">{inert(masked(target))}</code>'


def csrf_field(session: Session) -> str:
    return f'<input type="hidden" name="{CSRF_FIELD}" value="{inert(session.csrf)}">'


def form(session: Session, action: str, fields: str, button: str, *, cls: str = "") -> str:
    """A POST form with the session's CSRF token."""
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<form method="post" action="{inert(action)}"{klass}>{csrf_field(session)}'
        f'{fields}<button type="submit">{inert(button)}</button></form>'
    )


def text_input(
    element_id: str, label: str, *, name: str = "", value: str = "", required: bool = True
) -> str:
    """A labelled text field; ``name`` (default: the id) is the form field it fills."""
    req = " required" if required else ""
    return (
        f'<label for="{element_id}">{inert(label)}</label>'
        f'<input type="text" id="{element_id}" name="{name or element_id}" '
        f'value="{inert(value)}" maxlength="2000" autocomplete="off"{req}>'
    )


def reason_input(element_id: str, label: str = "Reason (audited)", *, required: bool = True) -> str:
    """The reason field of an action (several forms on one page: distinct ids)."""
    return text_input(element_id, label, name="reason", required=required)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], caption: str) -> str:
    """A table of already-rendered cells (escape values before)."""
    head = "".join(f'<th scope="col">{inert(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}">None.</td></tr>'
    return (
        f"<table><caption>{inert(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def pager(path: str, query: Mapping[str, str], offset: int, size: int, more: bool) -> str:
    """Previous / next links of a paginated list (the query kept)."""
    links = []
    if offset > 0:
        q = urlencode({**query, "offset": str(max(0, offset - size))})
        links.append(f'<a rel="prev" href="{inert(path)}?{inert(q)}">Previous {size}</a>')
    if more:
        q = urlencode({**query, "offset": str(offset + size)})
        links.append(f'<a rel="next" href="{inert(path)}?{inert(q)}">Next {size}</a>')
    shown = f"Showing from {offset + 1}." if offset else ""
    return f'<nav class="pager" aria-label="pages">{shown} {" ".join(links)}</nav>'


def notice(kind: str, message: str) -> str:
    """A message after an action: ``kind`` is ``ok`` or ``error``."""
    role = "status" if kind == "ok" else "alert"
    return f'<div class="flash {kind}" role="{role}">{inert(message)}</div>'


def layout(
    session: Session, title: str, body: str, counts: NavCounts, *, current: str, flash: str = ""
) -> str:
    links = []
    for path, label, key in _NAV:
        badge = f' <span class="count">{_count(counts[key])}</span>' if key in counts else ""
        here = ' aria-current="page"' if path == current else ""
        links.append(f'<li><a href="/console/{path}"{here}>{label}{badge}</a></li>')
    who = session.who
    signout = form(session, "/console/signout", "", "Sign out", cls="inline")
    reveals = counts.get("reveals", 0)
    return asset("layout.html").format(
        title=inert(title),
        nav="".join(links),
        who=inert(who.name),
        role=inert(who.role.label),
        reveals=reveals,
        signout=signout,
        screened=" screened" if session.screened else "",
        flash=flash,
        body=body,
    )


def _count(n: int) -> str:
    return f"{NAV_CAP}+" if n > NAV_CAP else str(n)


def shown(n: int, limit: int) -> str:
    """How many a list of at most ``limit`` rows holds: ``50+`` when it is full."""
    return f"{n}+" if n >= limit else str(n)


def bare_page(title: str, body: str) -> str:
    """A page outside a session (sign-in, signed out)."""
    return asset("bare.html").format(title=inert(title), body=body)
