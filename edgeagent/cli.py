"""``edgeagent`` command line. The only module that prints.

Exit codes: 0 success, 1 a check failed (e.g. the audit chain), 2 bad usage or bad
config, 3 the requested object does not exist, a rule or guardrail refused, or the token
may not do it.

Commands that change a ticket act as a token identity, exactly as the API does: the
secret comes from ``--token-file FILE`` or ``$EDGEAGENT_TOKEN`` and is checked against
the token store (revoked tokens and too low a role are refused, and audited). Dates and
times are accepted with or without a zone; without one they are in ``[agent]
time_zone``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeagent import __version__
from edgeagent.config import DEFAULT_CONFIG_PATH, Settings, load_config, summary
from edgeagent.errors import ConfigError, EdgeAgentError, InvalidTarget

if TYPE_CHECKING:
    from edgeagent.service import Agent
    from edgeagent.takedown.service import TakedownService
    from edgeagent.takedown.tickets import Ticket

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


class UsageError(Exception):
    """The command cannot run as asked (exit 2); the message says what to do instead."""


class NotPermitted(Exception):
    """The token may not do this (exit 3); the refusal is audited."""


ROLES = ("noc", "analyst", "supervisor", "admin")


def _err(text: str) -> None:
    print(f"edgeagent: {text}", file=sys.stderr)


def resolve_config(explicit: str | None) -> tuple[Path | None, bool]:
    """Which config to read: ``-c``, else ``$EDGEAGENT_CONFIG``, else the default path.

    Returns (path, explicit). ``None`` means the embedded defaults: allowed only when no
    path was asked for and the default file does not exist.
    """
    if explicit:
        return Path(explicit), True
    env = os.environ.get("EDGEAGENT_CONFIG")  # an empty value means "not set"
    if env:
        return Path(env), True
    if DEFAULT_CONFIG_PATH.exists():
        return DEFAULT_CONFIG_PATH, False
    return None, False


def _settings(args: argparse.Namespace) -> tuple[Settings, Path | None]:
    path, _ = resolve_config(args.config)
    if path is None:
        _err(f"no config at {DEFAULT_CONFIG_PATH}: using the embedded defaults")
    return load_config(path), path


def _agent(args: argparse.Namespace) -> Agent:
    from edgeagent.service import Agent

    settings, _ = _settings(args)
    _refuse_foreign_state_dir(settings.agent.state_dir)
    return Agent.build(settings)


def _refuse_foreign_state_dir(state_dir: Path) -> None:
    """Root must not create files in a state directory another user owns.

    The daemon runs as its own user (``edgeagent`` under the shipped unit); a store, ticket
    store or serial file created by root there (mode 0600) would lock the daemon out.
    """
    if os.geteuid() != 0 or not state_dir.exists():
        return
    owner = state_dir.stat().st_uid
    if owner != 0:
        import pwd

        try:
            name = pwd.getpwuid(owner).pw_name
        except KeyError:
            name = str(owner)
        raise UsageError(
            f"{state_dir} belongs to {name}: run this as that user "
            f"(sudo -u {name} edgeagent ...), so the daemon can still open what it writes"
        )


# -- commands


def cmd_check_config(args: argparse.Namespace) -> int:
    path, _ = resolve_config(args.config)
    settings = load_config(path)
    print(f"config OK: {path if path else '<embedded defaults>'}")
    for warning in settings.warnings:
        print(f"  warning: {warning}")
    for line in summary(settings):
        print(f"  {line}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from edgeagent import logs
    from edgeagent.service import Agent, Daemon

    settings, path = _settings(args)
    logs.configure(settings.agent.log_level, settings.agent.log_format)
    agent = Agent.build(settings)
    try:
        asyncio.run(Daemon(agent, path).run())
    finally:
        agent.close()
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    agent = _agent(args)
    try:
        plan = agent.plan()
    finally:
        agent.close()
    if args.json:
        print(json.dumps(plan, indent=2))
        return EXIT_OK
    print(f"policy version {plan['policy_version']}")
    held = plan["held_generations"]
    if not held:
        print("no held feed generations")
    for h in held:
        print(
            f"HELD feed {h['feed']} generation {h['generation']}: {h['entries']} entries "
            f"(live {h['live_entries']}) — {h['reason']}"
        )
    print(f"pending decisions: {plan['pending_decisions']}")
    for reason, n in sorted(plan["refused_entries"].items()):
        print(f"refused by guardrails: {n} ({reason})")
    return EXIT_OK


def cmd_lookup(args: argparse.Namespace) -> int:
    agent = _agent(args)
    try:
        snap = agent.policy()
        treatment = snap.index.explain(args.target)
        agent.store.append_audit(
            f"cli:{os.environ.get('USER', 'unknown')}",
            "lookup",
            f"target:{treatment.canonical and _ref(treatment.canonical)}",
            {"dns": treatment.dns, "proxy": treatment.proxy},
        )
    finally:
        agent.close()
    print(f"{treatment.target_kind}: {treatment.canonical}")
    print(f"  DNS:   {treatment.dns}")
    print(f"  proxy: {treatment.proxy}")
    if not treatment.matches:
        print("  no entry applies")
    for m in treatment.matches:
        e = m.entry
        sources = ", ".join(snap.state.sources_of(e))
        print(
            f"  - {m.layer} {m.effect}: {e.indicator.scope} {e.indicator.value} "
            f"[{e.action}] from {sources}" + (f" ref {e.reference}" if e.reference else "")
        )
    return EXIT_OK


def cmd_fleet_status(args: argparse.Namespace) -> int:
    """Ask the running daemon's API for ``GET /v1/fleet`` and print one line per target."""
    import urllib.error
    import urllib.request

    token = os.environ.get("EDGEAGENT_TOKEN", "")
    if args.token_file:
        token = Path(args.token_file).read_text(encoding="utf-8").strip()
    if not token:
        raise UsageError("give a noc token: --token-file FILE or $EDGEAGENT_TOKEN")
    url = args.url
    if url is None:
        settings, _ = _settings(args)
        api = settings.api
        scheme = "https" if api.tls_cert_file is not None else "http"
        host = f"[{api.host}]" if ":" in api.host else api.host
        url = f"{scheme}://{host}:{api.port}"
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--url must be http:// or https://, not {url!r}")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url.rstrip("/") + "/v1/fleet", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            fleet = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        _err(f"cannot read {url}/v1/fleet: {exc}")
        return EXIT_FAILED
    if args.json:
        print(json.dumps(fleet, indent=2))
        return EXIT_OK
    print(
        f"{'NAME':<20} {'ENFORCER':<8} {'KIND':<8} {'REGION':<10} {'CONFIRMED':>10} "
        f"{'LAG':>4} {'CANARY':<7} CHECKED"
    )
    for m in fleet["members"]:
        canary = {True: "ok", False: "FAIL", None: "-"}[m["canary_ok"]]
        if m["reachable"] is False:
            canary = "DOWN"
        checked = (
            datetime.fromtimestamp(m["checked_at"], UTC).strftime("%H:%M:%SZ")
            if m["checked_at"] is not None
            else "never"
        )
        print(
            f"{m['name']:<20} {m['enforcer']:<8} {m['kind']:<8} {m['region'] or '-':<10} "
            f"{_dash(m['confirmed']):>10} {_dash(m['lag']):>4} {canary:<7} {checked}"
        )
    for kind, c in sorted(fleet["enforcers"].items()):
        if c["pending_version"] is not None:
            print(f"{kind}: version {c['pending_version']} pending, {c['retries']} retries")
    down = [m["name"] for m in fleet["members"] if m["reachable"] is False]
    return EXIT_FAILED if down else EXIT_OK


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _ref(text: str) -> str:
    from edgeagent.errors import short_hash

    return short_hash(text)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    agent = _agent(args)
    try:
        result = agent.store.verify_audit()
    finally:
        agent.close()
    if result.ok:
        print(f"audit chain OK: {result.rows} rows")
        return EXIT_OK
    print(f"audit chain BROKEN at row {result.first_bad_row}: {result.reason}")
    return EXIT_FAILED


def cmd_token_create(args: argparse.Namespace) -> int:
    from edgeagent.tokens import new_token

    agent = _agent(args)
    try:
        secret, digest = new_token()
        token = agent.store.add_token(args.name, args.role, digest)
        agent.store.append_audit(
            f"cli:{os.environ.get('USER', 'unknown')}",
            "token.create",
            f"token:{token.id}",
            {"name": args.name, "role": args.role},
        )
    finally:
        agent.close()
    print(f"token {token.id} for {args.name} ({args.role}); shown once, store it now:")
    print(secret)
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    """One sync now, per feed; a progress line on stderr for long parses."""
    agent = _agent(args)

    shown = False

    def progress(feed: str, n: int) -> None:
        nonlocal shown
        if n >= 100_000:  # only long parses get a progress line
            shown = True
            print(f"\r{feed}: {n:,} lines parsed", end="", file=sys.stderr, flush=True)

    async def run() -> list[Any]:
        try:
            if args.feed:
                return [await agent.feeds.sync(args.feed, progress)]
            return await agent.feeds.sync_all(progress)
        finally:
            await agent.feeds.close()

    try:
        results = asyncio.run(run())
    finally:
        agent.close()
    if shown:
        print("", file=sys.stderr)
    failed = 0
    for r in results:
        line = f"{r.feed:<20} {r.outcome!s:<9} entries {r.entries:>9,}"
        line += f"  +{r.added:,} -{r.removed:,}"
        rejected = sum(r.rejects.values())
        if rejected:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.rejects.items()))
            line += f"  rejected {rejected:,} ({reasons})"
        if r.reject_samples:
            line += f"  e.g. {', '.join(r.reject_samples)}"
        if r.reason:
            line += f"  — {r.reason}"
        print(f"{line}  [{r.duration:.2f}s]")
        failed += r.outcome == "failed"
    if not results:
        print("no enabled feeds")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_feed_held(args: argparse.Namespace) -> int:
    """Approve or discard a feed's held generation (audited with the operator's name)."""
    agent = _agent(args)
    actor = f"cli:{os.environ.get('USER', 'unknown')}"
    try:
        act = agent.feeds.approve if args.feed_command == "approve" else agent.feeds.discard
        gen = act(args.name, actor, args.reason, args.generation)
    finally:
        agent.close()
    print(
        f"feed {args.name}: generation {gen.id} ({gen.entry_count:,} entries) is now {gen.status}"
    )
    return EXIT_OK


def cmd_intake_list(args: argparse.Namespace) -> int:
    """The triage queue, newest first: one line per item, no content."""
    from edgeagent.intake.base import IntakeChannel, IntakeState

    agent = _agent(args)
    try:
        items = agent.store.list_intake_items(
            state=IntakeState(args.state) if args.state else None,
            channel=IntakeChannel(args.channel) if args.channel else None,
            limit=args.limit,
        )
    finally:
        agent.close()
    for item in items:
        print(
            f"{item.id:>6}  {item.reference}  {item.channel.value:<16} {item.state.value:<9} "
            f"{item.created_at:%Y-%m-%d %H:%M}Z  urls={len(item.content.urls)}"
        )
    if not items:
        print("no intake items")
    return EXIT_OK


def cmd_intake_show(args: argparse.Namespace) -> int:
    """One item with what the person gave, as JSON."""
    from edgeagent.api.intake_handlers import intake_json

    agent = _agent(args)
    try:
        item = agent.store.get_intake_item(args.id)
    finally:
        agent.close()
    print(json.dumps(intake_json(item), indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_intake_outcome(args: argparse.Namespace) -> int:
    """Accept/reject a report, uphold/revoke an appeal (audited with the operator's name)."""
    from edgeagent.intake.listener import triage_for

    agent = _agent(args)
    actor = f"cli:{os.environ.get('USER', 'unknown')}"
    try:
        triage = triage_for(agent)
        act = {
            "accept": triage.accept,
            "reject": triage.reject,
            "uphold": triage.uphold,
            "revoke": triage.revoke,
        }[args.intake_command]
        result = act(args.id, actor, args.reason)
    finally:
        agent.close()
    print(f"intake {result.item.id} ({result.item.reference}) is now {result.item.state.value}")
    for d in result.decisions:
        print(f"  decision {d.id}: {d.action.value} {d.indicator.ref} ({d.status.value})")
    for r in result.refused:
        print(f"  refused {r.target_ref}: {r.reason}")
    return EXIT_OK


def _when(agent: Agent, text: str | None, option: str) -> datetime | None:
    """``text`` as an aware time; without a zone, in ``[agent] time_zone``."""
    from edgeagent.localtime import parse_when, zone

    if text is None:
        return None
    try:
        return parse_when(text, zone(agent.settings.agent.time_zone))
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _takedown(agent: Agent) -> TakedownService:
    if agent.takedown is None:
        raise UsageError("takedown is not enabled in this config ([takedown] enabled = true)")
    return agent.takedown


def cmd_report_takedown(args: argparse.Namespace) -> int:
    """Time-to-takedown report as CSV (stdout, or a file written atomically)."""
    from edgeagent.atomic import write_atomic
    from edgeagent.takedown.report import report_csv

    agent = _agent(args)
    try:
        service = _takedown(agent)
        end = _when(agent, args.to, "--to") or datetime.now(UTC)
        start = _when(agent, args.from_, "--from") or end - timedelta(days=30)
        if start >= end:
            _err("--from must be before --to")
            return EXIT_USAGE
        text = report_csv(asyncio.run(service.report(start, end)))
    finally:
        agent.close()
    if args.output:
        write_atomic(Path(args.output), text.encode(), 0o640)
        print(f"report {start.isoformat()} .. {end.isoformat()} written to {args.output}")
    else:
        print(text, end="")
    return EXIT_OK


# -- tickets


def _token_identity(args: argparse.Namespace, agent: Agent, role: str) -> str:
    """The identity of the token the command acts as, if it holds ``role`` or more."""
    from edgeagent.api.auth import Denied, Role, authenticate, authorize

    secret = os.environ.get("EDGEAGENT_TOKEN", "")
    if args.token_file:
        try:
            secret = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"--token-file: cannot read it ({exc.strerror})") from None
    if not secret:
        raise UsageError(
            "this command changes state: give --token-file FILE or set EDGEAGENT_TOKEN "
            "(create one with `edgeagent token create`)"
        )
    try:
        who = authenticate(agent.store, secret)
        authorize(who, Role.parse(role))
    except Denied as denied:
        detail = {"status": denied.status, "reason": denied.reason}
        agent.store.append_audit(denied.actor, "auth.denied", f"cli:ticket {args.action}", detail)
        raise NotPermitted(denied.reason) from None
    return who.name


def _ticket_json(t: Ticket) -> str:
    from edgeagent.takedown.tickets import ticket_to_json

    return json.dumps(ticket_to_json(t), indent=2)


def cmd_ticket_list(args: argparse.Namespace) -> int:
    from edgeagent.takedown.ticket_text import ticket_line

    agent = _agent(args)
    try:
        service = _takedown(agent)
        found = asyncio.run(
            service.list_tickets(
                state=args.state,
                open_only=args.open,
                due_before=_when(agent, args.due_before, "--due-before"),
                assignee=args.assignee,
                limit=args.limit,
            )
        )
    finally:
        agent.close()
    if args.json:
        print("[" + ",\n".join(_ticket_json(t) for t in found) + "]")
        return EXIT_OK
    now = datetime.now(UTC)
    for t in found:
        print(ticket_line(t, now))
    if not found:
        print("no tickets")
    return EXIT_OK


def cmd_ticket_show(args: argparse.Namespace) -> int:
    from edgeagent.localtime import zone
    from edgeagent.takedown.ticket_text import ticket_lines

    agent = _agent(args)
    try:
        t = asyncio.run(_takedown(agent).get(args.id))
        local = zone(agent.settings.agent.time_zone)
    finally:
        agent.close()
    if args.json:
        print(_ticket_json(t))
        return EXIT_OK
    for line in ticket_lines(t, datetime.now(UTC), local):
        print(line)
    return EXIT_OK


def _records(agent: Agent, args: argparse.Namespace) -> dict[str, Any]:
    """The authorisation, referral and preservation records the options give."""
    from edgeagent.takedown.records import Authorisation, Preservation, Referral

    def given(*names: str) -> bool:
        values = [getattr(args, n) for n in names]
        if any(v is not None and v != [] for v in values) and not all(values):
            options = ", ".join("--" + n.replace("_", "-") for n in names)
            raise UsageError(f"give all of {options}, or none")
        return all(values)

    records: dict[str, Any] = {}
    if given("authorised_by", "authorisation_ref", "authorised_at"):
        at = _when(agent, args.authorised_at, "--authorised-at")
        assert at is not None
        records["authorisation"] = Authorisation(args.authorised_by, args.authorisation_ref, at)
    if given("referred_to", "referral_ref", "referred_at"):
        at = _when(agent, args.referred_at, "--referred-at")
        assert at is not None
        records["referral"] = Referral(args.referred_to, args.referral_ref, at)
    if given("preserved_where", "preserved_by", "content_sha256", "preserved_at"):
        at = _when(agent, args.preserved_at, "--preserved-at")
        assert at is not None
        hashes = tuple(h.lower() for h in args.content_sha256)
        if not all(len(h) == 64 and all(c in "0123456789abcdef" for c in h) for h in hashes):
            raise UsageError("--content-sha256: 64 hex digits, as the hosting team computed it")
        records["preservation"] = Preservation(args.preserved_where, args.preserved_by, hashes, at)
    return records


def cmd_ticket_change(args: argparse.Namespace) -> int:
    """Every ticket change: who acts comes from the token, the rules from the service."""
    from edgeagent.takedown.records import Authorisation, Outcome, OutcomeKind

    agent = _agent(args)
    try:
        service = _takedown(agent)
        actor = _token_identity(args, agent, TICKET_ROLES[args.action])
        tid, action = args.id, args.action
        change: Callable[[], Awaitable[Ticket]]
        if action == "transition":
            records = _records(agent, args)
            change = partial(service.transition, tid, args.state, actor, args.reason, **records)
        elif action == "authorise":
            at = _when(agent, args.at, "--at") or datetime.now(UTC)
            record = Authorisation(args.by, args.reference, at)
            change = partial(service.record_authorisation, tid, actor, record)
        elif action in ("hold", "release"):
            change = partial(service.set_hold, tid, actor, action == "hold", args.reason)
        elif action == "legal-hold":
            change = partial(service.set_legal_hold, tid, actor, not args.release, args.reason)
        elif action == "assign":
            change = partial(service.assign, tid, actor, args.assignee, args.reason)
        elif action == "comment":
            change = partial(service.comment, tid, actor, args.text)
        else:
            at = _when(agent, args.at, "--at") or datetime.now(UTC)
            outcome = Outcome(OutcomeKind(args.kind), args.reason, at)
            change = partial(service.record_outcome, tid, actor, outcome)
        t = asyncio.run(change())
    finally:
        agent.close()
    if action == "transition" and t.state.value != args.state:
        print(
            f"ticket {t.id}: {args.state} proposed by {actor}; "
            "a second person must confirm it (the same command, another token)"
        )
    else:
        print(f"ticket {t.id}: {t.state.value}; {action} recorded as {actor}")
    return EXIT_OK


# The lowest role for each ticket change, as in the control API.
TICKET_ROLES = {
    "transition": "analyst",
    "authorise": "analyst",
    "assign": "analyst",
    "comment": "analyst",
    "outcome": "analyst",
    "hold": "supervisor",
    "release": "supervisor",
    "legal-hold": "supervisor",
}


def _add_ticket_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    from edgeagent.takedown.records import OutcomeKind
    from edgeagent.takedown.tickets import TicketState

    states = [s.value for s in TicketState]
    ticket = sub.add_parser("ticket", help="takedown tickets: the NTD team's daily work")
    actions = ticket.add_subparsers(dest="action", required=True, metavar="ACTION")

    tl = actions.add_parser("list", parents=[common], help="tickets, newest first")
    tl.add_argument("--state", choices=states, metavar="STATE", help=", ".join(states))
    tl.add_argument("--open", action="store_true", help="only open tickets")
    tl.add_argument(
        "--due-before",
        metavar="WHEN",
        help="only content still public due before WHEN, soonest first",
    )
    tl.add_argument(
        "--assignee", metavar="NAME", help='only those assigned to NAME ("" unassigned)'
    )
    tl.add_argument("--limit", type=int, default=100)
    tl.add_argument("--json", action="store_true", help="machine-readable output")
    tl.set_defaults(func=cmd_ticket_list)

    ts = actions.add_parser("show", parents=[common], help="one ticket: the whole case")
    ts.add_argument("id", type=int, metavar="ID", help="ticket id")
    ts.add_argument("--json", action="store_true", help="machine-readable output")
    ts.set_defaults(func=cmd_ticket_show)

    def change(name: str, text: str) -> argparse.ArgumentParser:
        role = TICKET_ROLES[name]
        cp: argparse.ArgumentParser = actions.add_parser(
            name, parents=[common], help=f"{text} ({role})", description=text
        )
        cp.add_argument("id", type=int, metavar="ID", help="ticket id")
        cp.add_argument(
            "--token-file",
            metavar="FILE",
            help="the token to act as (default: $EDGEAGENT_TOKEN)",
        )
        cp.set_defaults(func=cmd_ticket_change)
        return cp

    tt = change("transition", "move a ticket to its next state (audited)")
    tt.add_argument("state", choices=states, metavar="STATE", help=", ".join(states))
    tt.add_argument("--reason", required=True, help="why (audited)")
    for option, text in (
        ("--authorised-by", "law-enforcement authorisation: who authorised"),
        ("--authorisation-ref", "... their reference"),
        ("--authorised-at", "... when (WHEN)"),
        ("--referred-to", "referral (needed for referred): a recipient of the config"),
        ("--referral-ref", "... their reference"),
        ("--referred-at", "... when (WHEN)"),
        ("--preserved-where", "preservation (needed for removed-and-preserved): where"),
        ("--preserved-by", "... by whom at the hosting side"),
        ("--preserved-at", "... when (WHEN)"),
    ):
        tt.add_argument(option, metavar="WHEN" if option.endswith("-at") else "TEXT", help=text)
    tt.add_argument(
        "--content-sha256",
        action="append",
        default=[],
        metavar="HEX",
        help="... SHA-256 of a preserved file, from the hosting team (repeat per file)",
    )
    ta = change("authorise", "record a law-enforcement authorisation (then: isolate)")
    ta.add_argument("--by", required=True, help="the officer or agency who authorised")
    ta.add_argument("--reference", required=True, help="their reference")
    ta.add_argument("--at", metavar="WHEN", help="when they authorised (default: now)")
    for name, text in (
        ("hold", "law-enforcement hold: notices to the hosting team only"),
        ("release", "release the law-enforcement hold"),
    ):
        change(name, text).add_argument("--reason", required=True, help="why (audited)")
    lh = change("legal-hold", "keep the ticket's record past its retention (or --release)")
    lh.add_argument("--reason", required=True, help="why (audited)")
    lh.add_argument("--release", action="store_true", help="release the legal hold")
    tas = change("assign", "assign the ticket to a token identity")
    tas.add_argument("assignee", help='a token name ("" for nobody)')
    tas.add_argument("--reason", default="", help="why (audited)")
    tc = change("comment", "add a comment (audited by hash)")
    tc.add_argument("text")
    to = change("outcome", "record a measure on the customer's account")
    to.add_argument("kind", choices=[k.value for k in OutcomeKind])
    to.add_argument("--reason", required=True, help="why (audited)")
    to.add_argument("--at", metavar="WHEN", help="when it was taken (default: now)")


def cmd_lab(args: argparse.Namespace) -> int:
    from edgeagent import logs

    try:
        from edgeagent.lab import Lab, run_lab
    except ModuleNotFoundError as exc:
        missing = (exc.name or "edgeagent").partition(".")[0]
        if missing == "edgeagent":
            raise
        # A dependency only the lab has (installed by the `lab` extra).
        raise UsageError(
            f"the lab needs {missing}: install edgeagent with its lab extra "
            "(pip install 'edgeagent[lab]')"
        ) from None

    logs.configure("warning", "text")

    def announce(lab: Lab) -> None:
        info = lab.info
        print(f"edgeagent lab ready in {info['dir']}")
        print(f"  API      {info.get('api')}")
        print(f"  metrics  {info.get('metrics')}")
        for key in ("resolvers", "proxy", "origin", "stop_page", "hosted_example"):
            if key in info:
                print(f"  {key:<8} {json.dumps(info[key])}")
        print(f"  tokens and URLs: {lab.plan.info_path}")
        print("  try:  TOKEN=$(jq -r .tokens.analyst " + str(lab.plan.info_path) + ")")
        print("Ctrl-C stops the lab and removes its directory.", flush=True)

    run_lab(Path(args.dir) if args.dir else None, args.keep, announce)
    return EXIT_OK


# -- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"config file (default: $EDGEAGENT_CONFIG, else {DEFAULT_CONFIG_PATH})",
    )
    p = argparse.ArgumentParser(
        prog="edgeagent",
        description="Keeps child sexual abuse material out of reach at an ISP's edge.",
    )
    p.add_argument("--version", action="version", version=f"edgeagent {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str):  # type: ignore[no-untyped-def]
        sp = sub.add_parser(name, parents=[common], help=help_, description=help_)
        sp.set_defaults(func=func)
        return sp

    add("run", cmd_run, "run the daemon (API, feeds, publishers, verifier)")
    add("check-config", cmd_check_config, "validate the config and print a summary")
    add("plan", cmd_plan, "show held feed generations and pending decisions").add_argument(
        "--json", action="store_true", help="machine-readable output"
    )
    lk = add("lookup", cmd_lookup, "how a URL, name or address is treated, and why")
    lk.add_argument("target", help="URL, host name or IP address")

    sy = add("sync", cmd_sync, "sync feeds now and print per-feed counts")
    sy.add_argument("--feed", metavar="NAME", help="only this feed")

    feed = sub.add_parser("feed", help="held feed generations")
    feed_sub = feed.add_subparsers(dest="feed_command", required=True, metavar="ACTION")
    for action, text in (
        ("approve", "make the held generation live"),
        ("discard", "discard the held generation; the live one stays"),
    ):
        fp = feed_sub.add_parser(action, parents=[common], help=text, description=text)
        fp.add_argument("name", help="feed name (see `edgeagent plan`)")
        fp.add_argument("--reason", required=True, help="why (audited)")
        fp.add_argument(
            "--generation", type=int, help="the generation you reviewed (default: the held one)"
        )
        fp.set_defaults(func=cmd_feed_held)

    intake = sub.add_parser("intake", help="the triage queue: reports, notices, appeals")
    intake_sub = intake.add_subparsers(dest="intake_command", required=True, metavar="ACTION")
    il = intake_sub.add_parser("list", parents=[common], help="list items, newest first")
    il.add_argument("--state", choices=("pending", "accepted", "rejected", "upheld", "revoked"))
    il.add_argument(
        "--channel", choices=("public-report", "mail-quarantine", "appeal", "challenge")
    )
    il.add_argument("--limit", type=int, default=100)
    il.set_defaults(func=cmd_intake_list)
    ish = intake_sub.add_parser("show", parents=[common], help="one item as JSON")
    ish.add_argument("id", type=int)
    ish.set_defaults(func=cmd_intake_show)
    for action, text in (
        ("accept", "accept a report or notice: its URLs become block decisions"),
        ("reject", "reject a report or notice (kept with the reason)"),
        ("uphold", "answer an appeal or challenge: the block stays"),
        ("revoke", "answer an appeal or challenge: the blocks behind it end"),
    ):
        ip = intake_sub.add_parser(action, parents=[common], help=text, description=text)
        ip.add_argument("id", type=int)
        ip.add_argument("--reason", required=True, help="why (audited; sent to an appellant)")
        ip.set_defaults(func=cmd_intake_outcome)
    fleet = sub.add_parser("fleet", help="the resolvers and proxies the daemon verifies")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")
    fs = fleet_sub.add_parser(
        "status",
        parents=[common],
        help="every resolver and proxy: confirmed serial, lag, last canary (exit 1: one down)",
    )
    fs.add_argument("--url", help="the daemon's API (default: [api] host and port)")
    fs.add_argument("--token-file", help="file holding a noc token (default: $EDGEAGENT_TOKEN)")
    fs.add_argument("--json", action="store_true", help="machine-readable output")
    fs.set_defaults(func=cmd_fleet_status)

    report = sub.add_parser("report", help="reports")
    report_sub = report.add_subparsers(dest="report_command", required=True, metavar="KIND")
    rt = report_sub.add_parser(
        "takedown",
        parents=[common],
        help="time to takedown (count, median, p90, share within 60/120 min) as CSV",
    )
    rt.add_argument(
        "--from", dest="from_", metavar="WHEN", help="notices from (default: 30 days ago)"
    )
    rt.add_argument("--to", metavar="WHEN", help="notices before (default: now)")
    rt.add_argument("-o", "--output", help="write the CSV to this file instead of stdout")
    rt.set_defaults(func=cmd_report_takedown)

    _add_ticket_commands(sub, common)

    lab = sub.add_parser("lab", help="run the agent and its peers on loopback for trying it out")
    lab.add_argument("--dir", help="lab directory (default: a new temporary directory)")
    lab.add_argument("--keep", action="store_true", help="keep the lab directory on exit")
    lab.set_defaults(func=cmd_lab)

    audit = sub.add_parser("audit", help="audit log commands")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    av = audit_sub.add_parser(
        "verify", parents=[common], help="verify the audit hash chain; names the first bad row"
    )
    av.set_defaults(func=cmd_audit_verify)

    token = sub.add_parser("token", help="API token commands")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    tc = token_sub.add_parser("create", parents=[common], help="create an API token")
    tc.add_argument("--role", required=True, choices=ROLES)
    tc.add_argument("--name", required=True, help="who holds it (the audit actor)")
    tc.set_defaults(func=cmd_token_create)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        _err(f"invalid config {exc.source}: {len(exc.problems)} problem(s)")
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidTarget as exc:
        _err(f"invalid target: {exc.reason}")
        return EXIT_USAGE
    except UsageError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except NotPermitted as exc:
        _err(f"not permitted: {exc}")
        return EXIT_REFUSED
    except EdgeAgentError as exc:
        _err(str(exc))
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
