"""The console's pages and actions: each reads or changes through the service layer.

:data:`PAGES` is the console's route table: method, path, the API operation whose role
it needs, handler. A handler gets the console, the request, the session and the form (a
POST) or query (a GET) fields, validates them with the API's own request models, calls
the same service the API route calls, and returns the page's HTML (or a response, for a
download). List entries are shown masked (:func:`render.target_cell`); the full text
appears only on the page that answers a reveal, which is audited first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel

from edgeagent.api import handlers as h
from edgeagent.api.feed_routes import HeldDecision
from edgeagent.api.intake_handlers import IntakeOutcome, decide_item, triage_of
from edgeagent.api.takedown_routes import (
    AssignBody,
    AuthorisationBody,
    CommentBody,
    OutcomeBody,
    TicketReason,
    TicketTransition,
)
from edgeagent.api.validation import (
    ApiError,
    AuditQuery,
    DecisionApprove,
    DecisionBulkCreate,
    DecisionListQuery,
    DecisionRevoke,
    TokenRevoke,
    parse_body,
    parse_query,
)
from edgeagent.console import render as r
from edgeagent.console.exposure import inert
from edgeagent.console.sessions import Session
from edgeagent.decisions import NoticeTarget
from edgeagent.errors import short_hash
from edgeagent.intake.base import IntakeChannel, IntakeItem, IntakeState
from edgeagent.model import Decision, DecisionStatus, NoticeSource, Scope
from edgeagent.takedown.records import Outcome, OutcomeKind
from edgeagent.takedown.report import DISTRIBUTION_MINUTES, TakedownReport, report_csv
from edgeagent.takedown.service import TakedownService
from edgeagent.takedown.tickets import Ticket, TicketState, allowed_next
from edgeagent.tokens import list_tokens, revoke_token

if TYPE_CHECKING:
    from edgeagent.console.app import Console

_SCOPES = tuple(s.value for s in Scope)
DUE_SOON_HOURS = 24


def _body(model: type[BaseModel], data: Mapping[str, Any]) -> Any:
    """Validate form data with the API's request model (the same rules, the same fields)."""
    return parse_body(json.dumps(data).encode(), model)


def _id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 18:
        raise ApiError(404, "not-found", "no such item", "id")
    return int(text)


def _offset(fields: Mapping[str, str]) -> int:
    text = fields.get("offset", "0")
    return int(text) if text.isdigit() and len(text) < 10 else 0


def _now() -> datetime:
    return datetime.now(UTC)


# --- the frame


async def nav_counts(console: Console, session: Session) -> dict[str, int]:
    ctx = console.ctx
    counts = {"reveals": console.reveals.of(session.who.name)}
    pending = await h.read(h.pending_count, ctx.store)
    counts["pending"] = pending
    queue = pending
    if console.may(session, "listIntake"):
        intake = await h.read(
            ctx.store.list_intake_items, state=IntakeState.PENDING, limit=r.NAV_CAP + 1
        )
        queue += len(intake)
    takedown = console.services.takedown
    if takedown is not None and console.may(session, "listTickets"):
        soon = takedown.clock() + timedelta(hours=DUE_SOON_HOURS)
        due = await takedown.count_due(soon, r.NAV_CAP + 1)
        counts["due"] = due
        queue += due
    counts["queue"] = queue
    return counts


async def _page(
    console: Console, session: Session, title: str, body: str, current: str, *, flash: str = ""
) -> str:
    counts = await console.counts(session)
    return r.layout(session, title, body, counts, current=current, flash=flash)


def error_page(session: Session, counts: Mapping[str, int], title: str, message: str) -> str:
    return r.layout(session, title, r.notice("error", message), counts, current="")


def signin_page(problem: str) -> str:
    body = (
        (r.notice("error", problem) if problem else "")
        + '<form method="post" action="/console/signin">'
        '<label for="token">API token</label>'
        '<input type="password" id="token" name="token" autocomplete="off" required>'
        '<button type="submit" id="signin">Sign in</button></form>'
        "<p>Your token stays with you: only the session is kept, and it ends after a "
        "while without use.</p>"
    )
    return r.bare_page("Sign in", body)


def signed_out_page() -> str:
    return r.bare_page("Signed out", '<p><a href="/console/signin">Sign in again</a></p>')


def refused_page(message: str) -> str:
    return r.bare_page(
        "Refused", r.notice("error", message) + '<p><a href="/console/signin">Sign in</a></p>'
    )


async def screen(console: Console, request: web.Request, s: Session, f: Mapping[str, str]) -> str:
    """The privacy screen without JavaScript: a page that shows nothing."""
    return r.bare_page("Privacy screen", '<p><a href="/console/queue">Return</a></p>')


# --- queue


async def queue(console: Console, request: web.Request, s: Session, f: Mapping[str, str]) -> str:
    ctx = console.ctx
    analyst = console.may(s, "listDecisions")
    size = console.settings.page_size
    plan = await h.read(h.plan_view, ctx, s.who.role, size)
    rows = []
    for p in plan["pending"]:
        target = (
            r.target_cell(p["target"], p["target_ref"])
            if analyst
            else f"<code>{inert(p['target_ref'])}</code>"
        )
        link = f'<a href="/console/decisions/{p["id"]}">#{p["id"]}</a>'
        rows.append([link, target, inert(p["reference"]), inert(p["source"]), inert(p["actor"])])
    parts = [
        r.table(
            ("Decision", "Target", "Case", "Source", "Filed by"),
            rows,
            f"Pending approval ({plan['pending_decisions']})",
        )
    ]
    if console.may(s, "listIntake"):
        parts.append(await _intake_section(console, s))
    parts.append(_held_section(console, s, plan["plan"].get("held_generations", [])))
    takedown = console.services.takedown
    if takedown is not None and console.may(s, "listTickets"):
        now = takedown.clock()
        due = await takedown.list_tickets(
            open_only=True, due_before=now + timedelta(hours=DUE_SOON_HOURS), limit=size
        )
        parts.append(
            r.table(
                ("Case", "Reference", "State", "Due"),
                (_ticket_row(t, now) for t in due),
                f"Cases due within {DUE_SOON_HOURS} hours ({r.shown(len(due), size)}), "
                "soonest first",
            )
        )
    if console.may(s, "approveDecision"):
        counts = console.reveals.everyone()
        parts.append(
            r.table(
                ("Person", "Reveals today"),
                ([inert(name), str(n)] for name, n in counts.items()),
                "Reveals today, by person",
            )
        )
    return await _page(console, s, "Queue", "".join(parts), "queue")


async def _intake_section(console: Console, s: Session) -> str:
    items = await h.read(
        console.ctx.store.list_intake_items,
        state=IntakeState.PENDING,
        limit=console.settings.page_size,
    )
    rows = []
    for item in items:
        c = item.content
        what = " ".join(r.target_cell(u, short_hash(u)) for u in c.urls[:5])
        text = inert((c.description or c.statement or c.subject)[:300])
        actions = []
        for state, op in _INTAKE_ACTIONS[item.channel]:
            if console.may(s, op):
                fields = r.reason_input(f"reason-{item.id}-{state}", "Reason", required=True)
                actions.append(
                    r.form(s, f"/console/intake/{item.id}/{state}", fields, state.capitalize())
                )
        rows.append(
            [
                f'<a href="/console/intake/{item.id}">{inert(item.reference)}</a>',
                inert(item.channel.value),
                what or "-",
                text or "-",
                r.when(item.created_at),
                "".join(actions),
            ]
        )
    return r.table(
        ("Reference", "Channel", "URLs", "Text", "Received", "Outcome"),
        rows,
        f"Intake waiting ({r.shown(len(items), console.settings.page_size)})",
    )


_INTAKE_ACTIONS: dict[IntakeChannel, tuple[tuple[str, str], ...]] = {
    IntakeChannel.PUBLIC_REPORT: (("accept", "acceptIntakeItem"), ("reject", "rejectIntakeItem")),
    IntakeChannel.MAIL_QUARANTINE: (
        ("accept", "acceptIntakeItem"),
        ("reject", "rejectIntakeItem"),
    ),
    IntakeChannel.APPEAL: (("uphold", "upholdIntakeAppeal"), ("revoke", "revokeIntakeAppeal")),
    IntakeChannel.CHALLENGE: (
        ("uphold", "upholdIntakeAppeal"),
        ("revoke", "revokeIntakeAppeal"),
    ),
}
_INTAKE_STATES = {
    "accept": (IntakeState.ACCEPTED, "acceptIntakeItem"),
    "reject": (IntakeState.REJECTED, "rejectIntakeItem"),
    "uphold": (IntakeState.UPHELD, "upholdIntakeAppeal"),
    "revoke": (IntakeState.REVOKED, "revokeIntakeAppeal"),
}


def _held_section(console: Console, s: Session, held: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for g in held:
        changes = g.get("changes", {})
        diff = f"+{changes.get('added', '?')} / -{changes.get('removed', '?')}"
        shown = [
            r.target_cell(e.get("target", ""), e.get("target_ref", ""))
            for e in changes.get("added_entries", [])[:5]
        ]
        actions = ""
        if console.may(s, "approveHeldGeneration"):
            for act in ("approve", "discard"):
                fields = r.reason_input(f"held-{g['generation']}-{act}")
                fields += f'<input type="hidden" name="generation" value="{g["generation"]}">'
                actions += r.form(
                    s, f"/console/feeds/{inert(g['feed'])}/{act}", fields, act.capitalize()
                )
        rows.append(
            [
                inert(g["feed"]),
                str(g["generation"]),
                f"{g['entries']} (live {g['live_entries']})",
                inert(diff) + (" " + " ".join(shown) if shown else ""),
                inert(g.get("reason") or ""),
                actions,
            ]
        )
    return r.table(
        ("Feed", "Generation", "Entries", "Change", "Held because", "Decide"),
        rows,
        f"Held feed generations ({len(held)})",
    )


async def intake_outcome(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    state, _ = _INTAKE_STATES[request.match_info["action"]]
    body = _body(IntakeOutcome, {"reason": f.get("reason", "")})
    result = await decide_item(console.app, state, _id(request), s.who.name, body.reason)
    message = (
        f"{result.item.reference}: {result.item.state.value}; {len(result.decisions)} "
        f"decision(s), {len(result.refused)} refused"
    )
    refused = [[f"<code>{inert(x.target_ref)}</code>", inert(x.reason)] for x in result.refused]
    extra = r.table(("URL (short hash)", "Why"), refused, "Refused") if refused else ""
    return await _intake_page(console, s, result.item, extra, r.notice("ok", message))


async def intake_item(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    item = await h.read(console.ctx.store.get_intake_item, _id(request))
    return await _intake_page(console, s, item, "", "")


async def _intake_page(
    console: Console, s: Session, item: IntakeItem, extra: str, flash: str
) -> str:
    """One report, notice or appeal: what the person gave (URLs masked), its outcome,
    the decisions it made, and the outcomes this person may give while it waits."""
    c = item.content
    live = {True: "yes", False: "no", None: "-"}[c.live_video]
    given = [
        ("Category", c.category),
        ("Came across", c.came_across),
        ("Discovered", c.discovered_at),
        ("Description", c.description),
        ("Statement", c.statement),
        ("About (entry reference)", c.subject),
        ("Contact", c.contact),
        ("Claimed source", c.notice_source),
        ("Why quarantined", c.quarantine_reason),
    ]
    facts = [
        ("Reference", f'<span id="intake-reference">{inert(item.reference)}</span>'),
        ("Channel", inert(item.channel.value)),
        ("State", f'<span id="intake-state">{inert(item.state.value)}</span>'),
        ("Received", r.when(item.created_at)),
        ("URLs", "<br>".join(r.target_cell(u, short_hash(u)) for u in c.urls) or "-"),
        *((label, inert(text)) for label, text in given if text),
        ("Live video", live),
    ]
    if item.decided_at is not None:
        facts.append(("Decided", r.when(item.decided_at) + inert(f" by {item.decided_by}")))
        facts.append(("Outcome reason", inert(item.reason)))
    body = ["<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>", extra]
    if item.state is IntakeState.PENDING and item.channel is IntakeChannel.APPEAL:
        appealed = await h.read(triage_of(console.ctx).appealed, item)
        body.append(
            r.table(
                ("Decision", "Target", "Status", "Case", "Source"),
                (
                    [
                        f'<a href="/console/decisions/{d.id}">#{d.id}</a>',
                        r.target_cell(d.indicator.value, d.indicator.ref),
                        inert(d.status.value),
                        inert(d.reference),
                        inert(d.notice_source.value),
                    ]
                    for d in appealed
                ),
                "The block appealed (none: a list's entry, or nothing blocked any more)",
            )
        )
    links = [f'<a href="/console/decisions/{d}">#{d}</a>' for d in item.decision_ids]
    body.append(r.table(("Decision",), ([x] for x in links), "Decisions of this item"))
    if item.state is IntakeState.PENDING:
        for state, op in _INTAKE_ACTIONS[item.channel]:
            if console.may(s, op):
                fields = r.reason_input(f"intake-{state}", "Reason (audited)")
                body.append(
                    r.form(s, f"/console/intake/{item.id}/{state}", fields, state.capitalize())
                )
    title = f"Intake {item.reference}"
    return await _page(console, s, title, "".join(body), "queue", flash=flash)


async def held_generation(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    feeds = console.services.feeds
    if feeds is None:
        raise ApiError(404, "not-found", "no such feed", "name")
    action = request.match_info["action"]
    gen_text = f.get("generation", "")
    data: dict[str, Any] = {"reason": f.get("reason", "")}
    if gen_text.isdigit():
        data["generation"] = int(gen_text)
    body = _body(HeldDecision, data)
    act = feeds.approve if action == "approve" else feeds.discard
    name = request.match_info["name"]
    gen = await h.read(act, name, s.who.name, body.reason, body.generation)
    message = f"feed {gen.feed}: generation {gen.id} {gen.status}"
    return await _page(console, s, "Queue", "", "queue", flash=r.notice("ok", message))


# --- decisions


def _decision_rows(found: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            f'<a href="/console/decisions/{d["id"]}">#{d["id"]}</a>',
            r.target_cell(d["target"], d["target_ref"]),
            inert(d["action"]),
            inert(d["status"]),
            inert(d["reference"]),
            inert(d["source"]),
            inert(d["actor"]),
            r.when(d["created_at"]),
        ]
        for d in found
    ]


async def decisions(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    size = console.settings.page_size
    offset = _offset(f)
    search = {k: f[k] for k in ("target", "reference", "status") if f.get(k)}
    q = parse_query(
        [*search.items(), ("limit", str(size)), ("offset", str(offset))], DecisionListQuery
    )
    page = await h.read(h.decision_page, console.ctx.store, q)
    body = [
        '<form method="get" action="/console/decisions" role="search">',
        r.text_input(
            "target", "Target (URL, name, address)", value=f.get("target", ""), required=False
        ),
        r.text_input("reference", "Case reference", value=f.get("reference", ""), required=False),
        '<button type="submit" id="search">Search</button></form>',
        r.table(
            ("Decision", "Target", "Action", "Status", "Case", "Source", "Filed by", "Created"),
            _decision_rows(page["items"]),
            "Decisions",
        ),
        r.pager("/console/decisions", search, offset, size, page["next_offset"] is not None),
    ]
    if console.may(s, "createNotice"):
        body.append(_notice_form(s))
    return await _page(console, s, "Decisions", "".join(body), "decisions")


def _notice_form(s: Session) -> str:
    sources = "".join(f'<option value="{v.value}">{v.value}</option>' for v in NoticeSource)
    fields = (
        r.text_input("notice-reference", "Case reference", name="reference")
        + '<label for="source">Source</label>'
        f'<select id="source" name="source">{sources}</select>'
        + r.text_input("notice-reason", "Reason (audited)", name="reason")
        + '<label for="targets">Targets, one a line (a line may start with its scope: '
        "<code>domain</code>, <code>url</code>, ...)</label>"
        '<textarea id="targets" name="targets" required spellcheck="false"></textarea>'
        '<label for="action">Action</label><select id="action" name="action">'
        '<option value="block">block</option><option value="allow">allow</option></select>'
        + r.text_input(
            "notice-received",
            "Notice received (YYYY-MM-DD HH:MM; empty: now)",
            name="received",
            required=False,
        )
        + r.text_input(
            "jurisdiction", "Jurisdiction (ISO 3166 code, e.g. DE; optional)", required=False
        )
        + '<label for="hold">Law-enforcement hold (notices to the hosting team only)</label>'
        '<select id="hold" name="hold"><option value="">as the source asks (police: on)</option>'
        '<option value="on">on</option><option value="off">off</option></select>'
    )
    return '<h2 id="add">Add a decision or a notice</h2>' + r.form(
        s, "/console/decisions/notice", fields, "File the notice"
    )


def notice_targets(text: str) -> list[dict[str, str]]:
    """The notice's targets: one a line, blank lines and ``#`` comments skipped; a line
    may start with its scope (``domain bad.example``), else it is a URL."""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head, _, rest = line.partition(" ")
        if head in _SCOPES and rest.strip():
            found.append({"target": rest.strip(), "scope": head})
        else:
            found.append({"target": line, "scope": Scope.URL.value})
    return found


def _notice_options(f: Mapping[str, str]) -> dict[str, Any]:
    """The notice's optional fields as the API's body has them (empty: not given)."""
    options: dict[str, Any] = {}
    if f.get("received", "").strip():
        options["notice_received_at"] = f["received"].strip()
    if f.get("jurisdiction", "").strip():
        options["jurisdiction"] = f["jurisdiction"].strip()
    if f.get("hold") in ("on", "off"):
        options["hold"] = f["hold"] == "on"
    return options


async def file_notice(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    ctx = console.ctx
    targets = notice_targets(f.get("targets", ""))
    body = _body(
        DecisionBulkCreate,
        {
            "action": f.get("action", "block"),
            "reason": f.get("reason", ""),
            "reference": f.get("reference", ""),
            "source": f.get("source", ""),
            "targets": targets,
            **_notice_options(f),
        },
    )
    wanted = [NoticeTarget(t.target, Scope(t.scope)) for t in body.targets]
    notice = h.decision_request(body, "", Scope.URL)
    results = await h.write(console.app, h.notice_then_notify, ctx, notice, wanted, s.who.name)
    out = h.notice_json(body.reference, results)
    rows = [
        [
            str(x["index"] + 1),
            inert(x["outcome"]),
            f'<a href="/console/decisions/{x["decision"]}">#{x["decision"]}</a>'
            if x["decision"]
            else "-",
            r.target_cell(x["target"], x["target_ref"]) if x["target"] else inert(x["target_ref"]),
            inert(x["reason"] or ""),
        ]
        for x in out["results"]
    ]
    table = r.table(("#", "Outcome", "Decision", "Target", "Why"), rows, "The notice")
    message = f"Notice {body.reference}: {out['targets']} target(s) filed"
    return await _page(
        console, s, "Notice filed", table, "decisions", flash=r.notice("ok", message)
    )


async def decision(console: Console, request: web.Request, s: Session, f: Mapping[str, str]) -> str:
    d = await h.read(console.ctx.store.get_decision, _id(request))
    return await _decision_page(console, s, d, revealed=None)


async def _decision_page(
    console: Console, s: Session, d: Decision, *, revealed: str | None, flash: str = ""
) -> str:
    rows = [
        ("Target", r.target_cell(d.indicator.value, d.indicator.ref)),
        ("Scope", inert(d.indicator.scope.value)),
        ("Action", inert(d.action.value)),
        ("Status", f'<span id="status">{inert(d.status.value)}</span>'),
        ("Case reference", inert(d.reference)),
        ("Source", inert(d.notice_source.value)),
        ("Reason", inert(d.reason)),
        ("Filed by", inert(d.actor)),
        ("Approved by", inert(d.approved_by or "-")),
        ("Created", r.when(d.created_at)),
    ]
    body = [
        "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>",
    ]
    if d.status is DecisionStatus.PENDING_APPROVAL:
        own = d.actor == s.who.name
        rule = f"Four-eyes: filed by {d.actor}; a second person (a supervisor) must approve it."
        if own:
            rule += " You filed it, so you cannot approve it."
        body.append(f'<h2>Approval</h2><p class="rule" id="four-eyes">{inert(rule)}</p>')
        if not own and console.may(s, "approveDecision"):
            fields = r.reason_input("approve-reason", "Reason", required=False)
            body.append(r.form(s, f"/console/decisions/{d.id}/approve", fields, "Approve"))
    if d.status in (DecisionStatus.ACTIVE, DecisionStatus.PENDING_APPROVAL) and console.may(
        s, "revokeDecision"
    ):
        fields = r.reason_input("revoke-reason", "Reason (audited)")
        body.append(
            "<h2>Revoke</h2>" + r.form(s, f"/console/decisions/{d.id}/revoke", fields, "Revoke")
        )
    body.append(
        r.table(
            ("When", "Who", "Status", "Reason"),
            (
                [r.when(e.at), inert(e.actor), inert(e.status.value), inert(e.reason)]
                for e in d.history
            ),
            "History",
        )
    )
    reveal = _reveal(s, f"/console/decisions/{d.id}/reveal", revealed)
    # The answer to a reveal right under the facts; the form to ask for one last.
    if revealed is not None:
        body.insert(1, reveal)
    else:
        body.append(reveal)
    return await _page(console, s, f"Decision #{d.id}", "".join(body), "decisions", flash=flash)


def _reveal(s: Session, action: str, revealed: str | None) -> str:
    """The revealed text (after an audited reveal), else the form that asks for it."""
    if revealed is not None:
        return (
            '<h2>Full text (revealed, audited)</h2><code class="revealed" id="revealed">'
            f"{inert(revealed)}</code>"
        )
    return (
        "<h2>Reveal the full text</h2><p>Only when the work needs it: each reveal is "
        "audited with its reason and counted.</p>"
        + r.form(s, action, r.reason_input("reveal-reason", "Why you need to see it"), "Reveal")
    )


async def approve(console: Console, request: web.Request, s: Session, f: Mapping[str, str]) -> str:
    body = _body(DecisionApprove, {"reason": f.get("reason", "")})
    return await _decide(console, s, _id(request), "approve", body.reason)


async def revoke(console: Console, request: web.Request, s: Session, f: Mapping[str, str]) -> str:
    body = _body(DecisionRevoke, {"reason": f.get("reason", "")})
    return await _decide(console, s, _id(request), "revoke", body.reason)


async def _decide(console: Console, s: Session, decision_id: int, verb: str, reason: str) -> str:
    """Approve or revoke through the decision service (its rules: four-eyes, states)."""
    ctx = console.ctx
    act = ctx.decisions.approve if verb == "approve" else ctx.decisions.revoke

    def run() -> Decision:
        return h.then_notify(ctx, lambda: act(decision_id, s.who.name, reason))

    d = await h.write(console.app, run)
    done = r.notice("ok", f"{verb.capitalize()}d.")
    return await _decision_page(console, s, d, revealed=None, flash=done)


def _reveal_reason(f: Mapping[str, str]) -> str:
    """The reason a reveal gives: required, checked as every audited reason is."""
    body = _body(TicketReason, {"reason": f.get("reason", "")})
    reason: str = body.reason
    return reason


async def reveal_decision(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    decision_id = _id(request)
    reason = _reveal_reason(f)
    d = await h.read(console.ctx.store.get_decision, decision_id)
    count = await h.write(
        console.app, console.reveals.record, s.who.name, f"decision:{d.id}", reason
    )
    flash = r.notice("ok", f"Revealed; audited. Your reveals today: {count}.")
    return await _decision_page(console, s, d, revealed=d.indicator.value, flash=flash)


# --- tickets


def _ticket_row(t: Ticket, now: datetime) -> list[str]:
    return [
        f'<a href="/console/tickets/{t.id}">#{t.id}</a>',
        inert(t.reference),
        inert(t.state.value),
        _countdown(t, now),
    ]


def _countdown(t: Ticket, now: datetime) -> str:
    """Time left to the deadline by ``now``, the takedown service's clock (the one its
    timers use: a step back of the wall clock does not add to it)."""
    if t.closed or t.removed_at is not None:
        return "removed" if t.removed_at else "closed"
    left = (t.deadline - now).total_seconds() / 60
    if left < 0:
        return f'<span class="late">{math.ceil(-left)} min late</span>'
    return f'<span class="due">{math.floor(left)} min left</span> ({r.when(t.deadline)})'


async def tickets(console: Console, request: web.Request, s: Session, f: Mapping[str, str]) -> str:
    takedown = _takedown(console)
    size = console.settings.page_size
    offset = _offset(f)
    found = await takedown.list_tickets(limit=size + 1, offset=offset)
    table = r.table(
        ("Case", "Reference", "State", "Deadline"),
        (_ticket_row(t, takedown.clock()) for t in found[:size]),
        "Takedown cases, newest first",
    )
    body = table + r.pager("/console/tickets", {}, offset, size, len(found) > size)
    return await _page(console, s, "Cases", body, "tickets")


def _takedown(console: Console) -> TakedownService:
    takedown = console.services.takedown
    if takedown is None:
        raise ApiError(404, "not-found", "takedown is not enabled")
    return takedown


async def ticket(console: Console, request: web.Request, s: Session, f: Mapping[str, str]) -> str:
    t = await _takedown(console).get(_id(request))
    return await _ticket_page(console, s, t, revealed=None)


async def _ticket_page(
    console: Console, s: Session, t: Ticket, *, revealed: str | None, flash: str = ""
) -> str:
    facts = [
        ("Reference", inert(t.reference)),
        ("State", f'<span id="state">{inert(t.state.value)}</span>'),
        ("Source", inert(t.source)),
        ("Customer", inert(t.customer_id)),
        ("Service", inert(t.service_id)),
        ("Assigned to", inert(t.assignee or "nobody")),
        ("Jurisdiction", inert(t.jurisdiction or "-")),
        ("Law-enforcement hold", _hold(t)),
        ("Legal hold", "yes" if t.legal_hold else "no"),
        ("Notice received", r.when(t.notice_received_at)),
        ("SLA", _countdown(t, _takedown(console).clock())),
        *_records(t),
    ]
    body = ["<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"]
    proposer = t.found_legal_proposed_by
    if proposer:
        rule = (
            f"Found legal: proposed by {proposer}; a second person must confirm it "
            "(confirming revokes the case's blocks)."
        )
        if proposer == s.who.name:
            rule += " You proposed it, so you cannot confirm it."
        body.append(f'<p class="rule" id="found-legal">{inert(rule)}</p>')
    body.append(
        r.table(
            ("Target", "Status", "Addresses"),
            (
                [r.target_cell(u.url, u.ref), inert(u.status), inert(", ".join(u.addresses))]
                for u in t.urls
            ),
            "Listed locations (masked)",
        )
    )
    body.append(_reveal(s, f"/console/tickets/{t.id}/reveal", revealed))
    body.append(
        r.table(
            ("When", "Who", "Action", "From", "To", "Reason"),
            (
                [
                    r.when(e.at),
                    inert(e.actor),
                    inert(e.action),
                    inert(e.from_state),
                    inert(e.to_state),
                    inert(e.reason),
                ]
                for e in t.events
            ),
            "Timeline",
        )
    )
    if console.may(s, "transitionTicket"):
        body.append("<h2>Next step</h2>")
        for nxt in allowed_next(t.state):
            if nxt is TicketState.FOUND_LEGAL and proposer == s.who.name:
                continue  # the rule above says why: the proposer cannot confirm
            fields = f'<input type="hidden" name="to" value="{nxt.value}">'
            fields += r.reason_input(f"to-{nxt.value}", "Reason")
            fields += "".join(
                r.text_input(f"to-{nxt.value}-{name}", label, name=name)
                for name, label in _RECORD_FIELDS.get(nxt, ())
            )
            body.append(
                r.form(s, f"/console/tickets/{t.id}/transition", fields, f"Move to {nxt.value}")
            )
    if console.may(s, "authoriseTicket") and t.authorisation is None and not t.closed:
        fields = "".join(
            r.text_input(f"auth-{name}", label, name=name)
            for name, label in (
                ("by", "Authorised by (officer or agency)"),
                ("reference", "Their reference"),
                ("at", "When (YYYY-MM-DD HH:MM)"),
            )
        )
        body.append(
            "<h2>Law-enforcement authorisation</h2>"
            + r.form(s, f"/console/tickets/{t.id}/authorisation", fields, "Record authorisation")
        )
    if console.may(s, "recordTicketOutcome"):
        kinds = "".join(f'<option value="{k.value}">{k.value}</option>' for k in OutcomeKind)
        fields = (
            '<label for="outcome-kind">Measure</label>'
            f'<select id="outcome-kind" name="kind">{kinds}</select>'
            + r.reason_input("outcome-reason")
        )
        body.append(
            "<h2>Customer account</h2>"
            + r.form(s, f"/console/tickets/{t.id}/outcome", fields, "Record measure")
        )
    if console.may(s, "assignTicket"):
        fields = r.text_input(
            "assignee", "Assign to (token holder; empty: nobody)", value=t.assignee, required=False
        )
        body.append(
            "<h2>Assignment</h2>" + r.form(s, f"/console/tickets/{t.id}/assign", fields, "Assign")
        )
    if console.may(s, "commentTicket"):
        fields = (
            '<label for="comment">Comment</label>'
            '<textarea id="comment" name="text" required></textarea>'
        )
        body.append(
            "<h2>Comment</h2>"
            + r.form(s, f"/console/tickets/{t.id}/comment", fields, "Add comment")
        )
    flags = (
        ("hold", "holdTicket", "Set law-enforcement hold", not t.hold),
        ("release", "releaseTicket", "Release law-enforcement hold", t.hold),
        ("legal-hold", "setTicketLegalHold", "Set legal hold", not t.legal_hold),
        ("legal-hold-release", "releaseTicketLegalHold", "Release legal hold", t.legal_hold),
    )
    for path, op, label, offered in flags:
        if offered and console.may(s, op):
            fields = r.reason_input(f"{path}-reason", "Reason")
            body.append(r.form(s, f"/console/tickets/{t.id}/{path}", fields, label))
    if console.may(s, "getTicketEvidence"):
        body.append(
            "<h2>Evidence</h2><p>The case's evidence bundle (metadata and its audit rows, "
            "with a SHA-256 manifest) as a file; the export is audited.</p>"
            + r.form(s, f"/console/tickets/{t.id}/evidence", "", "Export evidence bundle")
        )
    return await _page(console, s, f"Case #{t.id}", "".join(body), "tickets", flash=flash)


def _hold(t: Ticket) -> str:
    if not t.hold:
        return "no"
    return (
        '<strong id="hold">yes: notices go to the hosting team only, never to the customer</strong>'
    )


def _records(t: Ticket) -> list[tuple[str, str]]:
    """What was recorded on the case: authorisation, referral, preservation, measures."""
    found = []
    if t.authorisation is not None:
        a = t.authorisation
        found.append(("Authorisation", inert(f"{a.by}, ref {a.reference}, ") + r.when(a.at)))
    if t.referral is not None:
        f = t.referral
        found.append(("Referred to", inert(f"{f.recipient}, ref {f.reference}, ") + r.when(f.at)))
    if t.preservation is not None:
        p = t.preservation
        found.append(
            (
                "Preserved",
                inert(f"at {p.location} by {p.preserved_by}, ")
                + r.when(p.at)
                + f"; sha256 <code>{inert(' '.join(p.content_sha256))}</code>",
            )
        )
    found += [("Measure", inert(f"{o.kind.value}: {o.reason}")) for o in t.outcomes]
    return found


# The record a move needs (referred, removed-and-preserved): its fields on the form.
_RECORD_FIELDS: dict[TicketState, tuple[tuple[str, str], ...]] = {
    TicketState.REFERRED: (
        ("recipient", "Referred to (a configured recipient)"),
        ("reference", "Their reference"),
        ("at", "When (YYYY-MM-DD HH:MM)"),
    ),
    TicketState.REMOVED_AND_PRESERVED: (
        ("location", "Where the copy is preserved"),
        ("preserved_by", "Preserved by (hosting side)"),
        ("content_sha256", "SHA-256 of each file (space-separated)"),
        ("at", "When (YYYY-MM-DD HH:MM)"),
    ),
}


async def ticket_transition(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    data: dict[str, Any] = {"to": f.get("to", ""), "reason": f.get("reason", "")}
    if f.get("to") == TicketState.REFERRED.value:
        data["referral"] = {k: f.get(k, "") for k in ("recipient", "reference", "at")}
    if f.get("to") == TicketState.REMOVED_AND_PRESERVED.value:
        data["preservation"] = {
            "location": f.get("location", ""),
            "preserved_by": f.get("preserved_by", ""),
            "content_sha256": f.get("content_sha256", "").split(),
            "at": f.get("at", ""),
        }
    body = _body(TicketTransition, data)
    t = await _takedown(console).transition(
        _id(request),
        body.to,
        s.who.name,
        body.reason,
        referral=body.referral.record() if body.referral else None,
        preservation=body.preservation.record() if body.preservation else None,
    )
    done = (
        f"Now {t.state}."
        if t.state is body.to
        else f"Proposed {body.to}: a second person confirms."
    )
    return await _ticket_page(console, s, t, revealed=None, flash=r.notice("ok", done))


async def ticket_authorise(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    body = _body(AuthorisationBody, {k: f.get(k, "") for k in ("by", "reference", "at")})
    t = await _takedown(console).record_authorisation(_id(request), s.who.name, body.record())
    return await _ticket_page(console, s, t, revealed=None, flash=r.notice("ok", "Recorded."))


async def ticket_outcome(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    body = _body(OutcomeBody, {"kind": f.get("kind", ""), "reason": f.get("reason", "")})
    record = Outcome(body.kind, body.reason, _now())
    t = await _takedown(console).record_outcome(_id(request), s.who.name, record)
    return await _ticket_page(console, s, t, revealed=None, flash=r.notice("ok", "Recorded."))


async def ticket_assign(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    body = _body(AssignBody, {"assignee": f.get("assignee", "").strip(), "reason": ""})
    t = await _takedown(console).assign(_id(request), s.who.name, body.assignee, body.reason)
    return await _ticket_page(console, s, t, revealed=None, flash=r.notice("ok", "Assigned."))


async def ticket_comment(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    body = _body(CommentBody, {"text": f.get("text", "")})
    t = await _takedown(console).comment(_id(request), s.who.name, body.text)
    return await _ticket_page(console, s, t, revealed=None, flash=r.notice("ok", "Comment added."))


async def ticket_flag(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    takedown = _takedown(console)
    body = _body(TicketReason, {"reason": f.get("reason", "")})
    flag = request.match_info["flag"]
    setter, value = {
        "hold": (takedown.set_hold, True),
        "release": (takedown.set_hold, False),
        "legal-hold": (takedown.set_legal_hold, True),
        "legal-hold-release": (takedown.set_legal_hold, False),
    }[flag]
    t = await setter(_id(request), s.who.name, value, body.reason)
    return await _ticket_page(console, s, t, revealed=None, flash=r.notice("ok", "Recorded."))


async def reveal_ticket(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    reason = _reveal_reason(f)
    t = await _takedown(console).get(_id(request))
    count = await h.write(console.app, console.reveals.record, s.who.name, f"ticket:{t.id}", reason)
    flash = r.notice("ok", f"Revealed; audited. Your reveals today: {count}.")
    return await _ticket_page(console, s, t, revealed="\n".join(u.url for u in t.urls), flash=flash)


async def ticket_evidence(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> web.Response:
    """The evidence bundle as a download (a POST: the export is an audited act)."""
    ticket_id = _id(request)
    bundle = await _takedown(console).evidence(ticket_id, s.who.name)
    return web.Response(
        text=json.dumps(bundle, indent=2, sort_keys=True),
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="evidence-ticket-{ticket_id}.json"'},
    )


# --- lookup, fleet


async def lookup(console: Console, request: web.Request, s: Session, f: Mapping[str, str]) -> str:
    form = r.form(s, "/console/lookup", r.text_input("target", "URL, name or address"), "Explain")
    result = ""
    if request.method == "POST":
        target = f.get("target", "").strip()
        if not target:
            raise ApiError(400, "invalid", "give a URL, name or address", "target")
        who = s.who
        out = await h.explain_target(console.app, who, target)
        rows = [
            [
                inert(m["layer"]),
                inert(m["effect"]),
                r.target_cell(m["target"]),
                inert(m["action"]),
                inert(m["source"]),
                inert(m["reference"] or ""),
            ]
            for m in out["matches"]
        ]
        result = (
            f'<p id="verdict">{inert(out["target_kind"])} '
            f"{r.target_cell(out['canonical'])}: DNS <strong>{inert(out['dns'])}</strong>, "
            f"proxy <strong>{inert(out['proxy'])}</strong> (policy v{out['policy_version']})</p>"
            + r.table(("Layer", "Effect", "Entry", "Action", "Source", "Case"), rows, "Why")
        )
    intro = "<p>Why is this blocked? The lookup is audited (by short hash).</p>"
    return await _page(console, s, "Lookup", intro + form + result, "lookup")


async def fleet(console: Console, request: web.Request, s: Session, f: Mapping[str, str]) -> str:
    data = await h.read(console.ctx.fleet)
    members = [
        [
            inert(str(m.get("name", ""))),
            inert(f"{m.get('enforcer', '')} / {m.get('kind', '')}"),
            inert(str(m.get("region") or "-")),
            inert(str(m.get("confirmed", "-"))),
            _lag(m.get("lag")),
            _yes_no(m.get("canary_ok")),
            _yes_no(m.get("reachable")),
            r.when(_unix(m.get("checked_at"))),
        ]
        for m in data.get("members", [])
    ]
    enforcers = [
        [inert(name), inert(str(e.get("pending_version") or "-")), inert(str(e.get("retries", 0)))]
        for name, e in sorted(data.get("enforcers", {}).items())
        if isinstance(e, Mapping)
    ]
    body = r.table(
        ("Name", "Enforcer / kind", "Region", "Confirmed", "Lag", "Canary", "Reachable", "Checked"),
        members,
        "Resolvers and proxies",
    ) + r.table(("Enforcer", "Version still to publish", "Retries"), enforcers, "Enforcers")
    return await _page(console, s, "Fleet", body, "fleet")


def _lag(value: object) -> str:
    if value is None:
        return "unknown"
    return f'<span class="late">{value}</span>' if value else "0"


def _yes_no(value: object) -> str:
    if value is None:
        return "not yet"
    return "yes" if value else '<span class="late">NO</span>'


def _unix(value: object) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else None


# --- reports


async def _report(console: Console, f: Mapping[str, str]) -> TakedownReport:
    """The takedown report of the last ``days`` (default 30), aggregated by the store."""
    text = f.get("days", "30")
    days = int(text) if text.isdigit() and 0 < int(text) < 3660 else 30
    end = _now()
    return await _takedown(console).report(end - timedelta(days=days), end)


def distribution_svg(counts: Sequence[int]) -> str:
    """Time to takedown as an inline bar chart (markup only: no script, no style):
    ``counts`` of removed tickets per bucket of :data:`DISTRIBUTION_MINUTES`."""
    bounds = DISTRIBUTION_MINUTES
    labels = [f"<= {b} min" for b in bounds] + [f"> {bounds[-1]} min"]
    top = max(counts) or 1
    bar_w, gap, height = 60, 14, 160
    width = len(counts) * (bar_w + gap) + gap
    parts = [
        f'<svg class="chart" role="img" aria-labelledby="chart-title" viewBox="0 0 {width} '
        f'{height + 50}" width="{width}" height="{height + 50}" xmlns="http://www.w3.org/2000/svg">'
        '<title id="chart-title">Time to takedown: tickets per bucket</title>'
    ]
    for i, (label, n) in enumerate(zip(labels, counts, strict=True)):
        x = gap + i * (bar_w + gap)
        bh = round(height * n / top)
        parts.append(
            f'<rect x="{x}" y="{height - bh + 10}" width="{bar_w}" height="{bh}" fill="#14304f">'
            f"<title>{inert(label)}: {n}</title></rect>"
            f'<text x="{x + bar_w / 2}" y="{height - bh + 5}" text-anchor="middle" '
            f'font-size="12">{n}</text>'
            f'<text x="{x + bar_w / 2}" y="{height + 28}" text-anchor="middle" '
            f'font-size="10">{inert(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _period_form(days: str) -> str:
    options = "".join(
        f'<option value="{d}"{" selected" if str(d) == days else ""}>last {d} days</option>'
        for d in (7, 30, 31, 90, 365)
    )
    return (
        '<form method="get" action="/console/reports"><label for="days">Period</label>'
        f'<select id="days" name="days">{options}</select>'
        '<button type="submit">Show</button></form>'
    )


def _minutes(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _share(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f} %"


async def reports(console: Console, request: web.Request, s: Session, f: Mapping[str, str]) -> str:
    rep = await _report(console, f)
    data = rep.to_json()
    rows = [
        [
            inert(group),
            str(row["count"]),
            str(row["removed"]),
            _minutes(row["median_minutes"]),
            _share(row["within_60_share"]),
            _share(row["within_120_share"]),
        ]
        for group, row in [("all", data["total"]), *data["by_source"].items()]
    ]
    body = (
        _period_form(f.get("days", "30"))
        + f"<p>Notices received from {r.when(data['from'])} to {r.when(data['to'])}.</p>"
        + distribution_svg(rep.distribution)
        + r.table(
            ("Source", "Tickets", "Removed", "Median (min)", "Within 60 min", "Within 120 min"),
            rows,
            "Time to takedown by source",
        )
        + f'<p><a href="/console/reports.csv?days={inert(f.get("days", "30"))}" download>'
        "Export as CSV</a></p>"
    )
    return await _page(console, s, "Reports", body, "reports")


async def reports_csv(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> web.Response:
    rep = await _report(console, f)
    return web.Response(
        text=report_csv(rep),
        content_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="takedown-report.csv"'},
    )


# --- audit, tokens


async def audit(console: Console, request: web.Request, s: Session, f: Mapping[str, str]) -> str:
    since = f.get("since") or _now().strftime("%Y-%m-%d")
    q = parse_query([("since", since), ("limit", str(console.settings.page_size))], AuditQuery)
    records = await h.read(console.ctx.store.audit_since, q.since, q.limit)
    rows = [
        [
            str(a.id),
            r.when(a.at),
            inert(a.actor),
            inert(a.action),
            inert(a.subject),
            inert(json.dumps(dict(a.detail), sort_keys=True, default=str)[:300]),
        ]
        for a in records
    ]
    more = ""
    if len(records) == q.limit:
        nxt = records[-1].at.isoformat()
        more = r.pager("/console/audit", {"since": nxt}, 0, q.limit, True)
    verify = ""
    if console.may(s, "verifyAudit"):
        verify = '<p><a href="/console/audit/verify" id="verify">Verify the hash chain</a></p>'
    search = (
        '<form method="get" action="/console/audit">'
        + r.text_input("since", "Since (date or time)", value=since)
        + '<button type="submit">Show</button></form>'
    )
    body = (
        search
        + verify
        + r.table(("#", "At", "Actor", "Action", "Subject", "Detail"), rows, "Audit log")
        + more
    )
    return await _page(console, s, "Audit log", body, "audit")


# How long the page waits for the chain check before it says the check goes on.
CHAIN_WAIT_SECONDS = 0.05


async def audit_verify(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    answer = await console.chain.ask(CHAIN_WAIT_SECONDS)
    result = answer.result
    if result is None:
        flash = r.notice(
            "ok", f"Checking the whole chain (since {answer.started_at:%H:%M:%S} UTC)."
        )
        body = (
            '<p id="chain">checking</p><p>The check goes on in the background: '
            '<a href="/console/audit/verify">see its result</a>.</p>'
        )
        return await _page(console, s, "Audit log", body, "audit", flash=flash)
    checked = f"checked from {answer.started_at:%H:%M:%S} UTC"
    if result.ok:
        flash = r.notice("ok", f"The chain is intact: {result.rows} rows ({checked}).")
    else:
        flash = r.notice(
            "error", f"Broken at row {result.first_bad_row}: {result.reason} ({checked})."
        )
    return await _page(
        console,
        s,
        "Audit log",
        '<p id="chain">' + ("intact" if result.ok else "broken") + "</p>",
        "audit",
        flash=flash,
    )


async def tokens(console: Console, request: web.Request, s: Session, f: Mapping[str, str]) -> str:
    found = await h.write(console.app, list_tokens, console.ctx.store, s.who.name)
    return await _tokens_page(console, s, found)


async def _tokens_page(console: Console, s: Session, found: Sequence[Any], flash: str = "") -> str:
    rows = []
    for t in found:
        action = "-"
        if not t.revoked:
            fields = r.reason_input(f"token-{t.id}-reason", "Reason")
            action = r.form(s, f"/console/tokens/{t.id}/revoke", fields, "Revoke")
        rows.append(
            [
                str(t.id),
                inert(t.name),
                inert(t.role),
                r.when(t.created_at),
                "revoked" if t.revoked else "active",
                action,
            ]
        )
    body = r.table(("#", "Holder", "Role", "Created", "State", "Revoke"), rows, "API tokens")
    body += (
        "<p>New tokens: <code>edgeagent token create</code> (the secret is shown once, "
        "to the person who creates it).</p>"
    )
    return await _page(console, s, "Tokens", body, "tokens", flash=flash)


async def token_revoke(
    console: Console, request: web.Request, s: Session, f: Mapping[str, str]
) -> str:
    body = _body(TokenRevoke, {"reason": f.get("reason", "")})
    token = await h.write(
        console.app, revoke_token, console.ctx.store, _id(request), s.who.name, body.reason
    )
    console.sessions.end_token(token.id)
    found = await h.write(console.app, list_tokens, console.ctx.store, s.who.name)
    return await _tokens_page(console, s, found, r.notice("ok", f"Token {token.id} revoked."))


_ID = r"{id:\d+}"
PAGES: tuple[tuple[str, str, str, Any], ...] = (
    ("GET", "/console/queue", "getPlan", queue),
    ("GET", "/console/screen", "getPlan", screen),
    ("GET", "/console/intake/" + _ID, "getIntakeItem", intake_item),
    ("POST", "/console/intake/" + _ID + "/{action:accept}", "acceptIntakeItem", intake_outcome),
    ("POST", "/console/intake/" + _ID + "/{action:reject}", "rejectIntakeItem", intake_outcome),
    ("POST", "/console/intake/" + _ID + "/{action:uphold}", "upholdIntakeAppeal", intake_outcome),
    ("POST", "/console/intake/" + _ID + "/{action:revoke}", "revokeIntakeAppeal", intake_outcome),
    (
        "POST",
        "/console/feeds/{name:[A-Za-z0-9_.-]{1,64}}/{action:approve}",
        "approveHeldGeneration",
        held_generation,
    ),
    (
        "POST",
        "/console/feeds/{name:[A-Za-z0-9_.-]{1,64}}/{action:discard}",
        "discardHeldGeneration",
        held_generation,
    ),
    ("GET", "/console/decisions", "listDecisions", decisions),
    ("POST", "/console/decisions/notice", "createNotice", file_notice),
    ("GET", f"/console/decisions/{_ID}", "getDecision", decision),
    ("POST", f"/console/decisions/{_ID}/approve", "approveDecision", approve),
    ("POST", f"/console/decisions/{_ID}/revoke", "revokeDecision", revoke),
    ("POST", f"/console/decisions/{_ID}/reveal", "getDecision", reveal_decision),
    ("GET", "/console/tickets", "listTickets", tickets),
    ("GET", f"/console/tickets/{_ID}", "getTicket", ticket),
    ("POST", f"/console/tickets/{_ID}/transition", "transitionTicket", ticket_transition),
    ("POST", f"/console/tickets/{_ID}/assign", "assignTicket", ticket_assign),
    ("POST", f"/console/tickets/{_ID}/authorisation", "authoriseTicket", ticket_authorise),
    ("POST", f"/console/tickets/{_ID}/outcome", "recordTicketOutcome", ticket_outcome),
    ("POST", f"/console/tickets/{_ID}/comment", "commentTicket", ticket_comment),
    ("POST", f"/console/tickets/{_ID}/{{flag:hold}}", "holdTicket", ticket_flag),
    ("POST", f"/console/tickets/{_ID}/{{flag:release}}", "releaseTicket", ticket_flag),
    ("POST", f"/console/tickets/{_ID}/{{flag:legal-hold}}", "setTicketLegalHold", ticket_flag),
    (
        "POST",
        f"/console/tickets/{_ID}/{{flag:legal-hold-release}}",
        "releaseTicketLegalHold",
        ticket_flag,
    ),
    ("POST", f"/console/tickets/{_ID}/reveal", "getTicket", reveal_ticket),
    ("POST", f"/console/tickets/{_ID}/evidence", "getTicketEvidence", ticket_evidence),
    ("GET", "/console/lookup", "lookupTarget", lookup),
    ("POST", "/console/lookup", "lookupTarget", lookup),
    ("GET", "/console/fleet", "getFleet", fleet),
    ("GET", "/console/reports", "getTakedownReport", reports),
    ("GET", "/console/reports.csv", "getTakedownReport", reports_csv),
    ("GET", "/console/audit", "listAudit", audit),
    ("GET", "/console/audit/verify", "verifyAudit", audit_verify),
    ("GET", "/console/tokens", "listTokens", tokens),
    ("POST", f"/console/tokens/{_ID}/revoke", "revokeToken", token_revoke),
)
