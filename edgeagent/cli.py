"""``edgeagent`` command line. The only module that prints.

Exit codes: 0 success, 1 a check failed (e.g. the audit chain) or the API could not be
reached, 2 bad usage or bad config, 3 the requested object does not exist, a guardrail,
a role or four-eyes refused, or a notice had refused targets.

Commands that change state act as a checked identity (:mod:`edgeagent.identity`): a
token (``--token-file`` or ``$EDGEAGENT_TOKEN``) or, for the service user, ``--actor``.
With a token, the decision, feed and token commands go through the daemon's API
(:mod:`edgeagent.casework`); with ``--actor`` they work on the store directly. The
ticket commands work on the ticket store, as the checked identity, with the role each
change needs in the API. Dates and times are accepted with or without a zone; without
one they are in ``[agent] time_zone``.
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
from edgeagent.apiclient import ApiCallFailed
from edgeagent.config import DEFAULT_CONFIG_PATH, Settings, load_config, summary
from edgeagent.errors import ConfigError, EdgeAgentError, InvalidTarget
from edgeagent.identity import IdentityMissing
from edgeagent.roles import Role

if TYPE_CHECKING:
    from edgeagent.apiclient import ApiClient
    from edgeagent.casework import Casework
    from edgeagent.identity import Credentials, Identity
    from edgeagent.service import Agent
    from edgeagent.takedown.service import TakedownService
    from edgeagent.takedown.tickets import Ticket

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3
DEFAULT_FLEET_RESOLVERS = 6  # `edgeagent lab --fleet`: one of each kind and more BIND


class UsageError(Exception):
    """The command cannot run as asked (exit 2); the message says what to do instead."""


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


# -- identity


def _offered(args: argparse.Namespace) -> Credentials:
    from edgeagent.identity import credentials

    return credentials(getattr(args, "token_file", None), getattr(args, "actor", None))


def _identity(agent: Agent, offered: Credentials, needed: Role) -> Identity:
    from edgeagent.identity import check

    return check(agent.store, offered, agent.settings.agent.state_dir, needed)


def _optional_identity(agent: Agent, offered: Credentials) -> Identity | None:
    """The identity, if one was offered (read-only commands)."""

    return _identity(agent, offered, Role.NOC) if offered.given else None


def _casework(args: argparse.Namespace) -> tuple[Casework, Agent | None]:
    """Through the API with a token; else on the store as the ``--actor`` (the agent is
    returned to be closed)."""
    from edgeagent.casework import LocalCasework, RemoteCasework

    offered = _offered(args)
    if offered.secret is not None:
        return RemoteCasework(_api_client(args, offered.secret)), None
    if offered.actor is None:
        from edgeagent.identity import missing

        raise missing()
    agent = _agent(args)
    from edgeagent.api.validation import REQUEST_ZONE

    REQUEST_ZONE.set(agent.settings.agent.zone)
    return LocalCasework(agent, offered), agent


def _api_client(args: argparse.Namespace, secret: str) -> ApiClient:
    """A client of the API ``--api``, ``$EDGEAGENT_API`` or the ``[api]`` section names."""
    from edgeagent.apiclient import ApiClient, chosen_api_url, configured_api_url

    url = chosen_api_url(args.api)
    if url is None:
        api = _settings(args)[0].api
        url = configured_api_url(api.host, api.port, api.tls_cert_file is not None)
    return ApiClient(url, secret)


def _with_casework(
    args: argparse.Namespace, work: Callable[[Casework], Any], *, changes: bool = True
) -> Any:
    """``work`` through the API or on the store (see :func:`_casework`)."""
    casework, agent = _casework(args)
    try:
        done = work(casework)
    finally:
        if agent is not None:
            agent.close()
    if agent is not None and changes:
        _err("written to the store: the daemon applies it within seconds")
    return done


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


def cmd_render(args: argparse.Namespace) -> int:
    from edgeagent.render.inventory import load_inventory
    from edgeagent.render.writing import rendering, write_rendering

    path, _ = resolve_config(args.config)
    settings = load_config(path)
    inventory = load_inventory(Path(args.inventory))
    written = write_rendering(Path(args.out), rendering(inventory, settings))
    print(f"rendered {len(written)} files into {args.out}")
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
    """Held generations (with what each changes) and pending decisions, like ``/v1/plan``:
    targets for an analyst's identity, the changed entries for a supervisor's."""
    from edgeagent.api.handlers import PENDING_SHOWN, pending_count, pending_json
    from edgeagent.model import DecisionStatus

    agent = _agent(args)
    try:
        who = _optional_identity(agent, _offered(args))
        role = who.role if who is not None else Role.NOC
        if args.entries and role < Role.SUPERVISOR:
            raise UsageError("--entries needs a supervisor's identity (--token-file or --actor)")
        plan = agent.plan(entries=args.entries)
        count = pending_count(agent.store)
        pending = agent.store.list_decisions(
            status=DecisionStatus.PENDING_APPROVAL, limit=PENDING_SHOWN
        )
        items = [pending_json(d, show_target=role >= Role.ANALYST) for d in pending]
    finally:
        agent.close()
    if args.json:
        print(json.dumps({"pending_decisions": count, "pending": items, "plan": plan}, indent=2))
        return EXIT_OK
    print(f"policy version {plan['policy_version']}")
    held = plan["held_generations"]
    if not held:
        print("no held feed generations")
    for h in held:
        changes = h.get("changes", {})
        change = f", +{changes['added']:,} -{changes['removed']:,}" if changes else ""
        print(
            f"HELD feed {h['feed']} generation {h['generation']}: {h['entries']:,} entries "
            f"(live {h['live_entries']:,}{change}) — {h['reason']}"
        )
        for key, sign in (("added_entries", "+"), ("removed_entries", "-")):
            for e in changes.get(key, ()):
                print(f"    {sign} {e['action']} {e['scope']} {e['target']}")
        if changes.get("truncated"):
            print("    (more changes than shown)")
    print(f"pending decisions: {count}")
    for item in items:
        what = item.get("target", item["target_ref"])
        print(
            f"  #{item['id']} {item['action']} {item['scope']} {what} "
            f"({item['source']}, ref {item['reference']}, by {item['actor']})"
        )
    for reason, n in sorted(plan["refused_entries"].items()):
        print(f"refused by guardrails: {n} ({reason})")
    return EXIT_OK


def cmd_lookup(args: argparse.Namespace) -> int:
    from edgeagent.identity import os_account

    agent = _agent(args)
    try:
        who = _optional_identity(agent, _offered(args))
        snap = agent.policy()
        treatment = snap.index.explain(args.target)
        agent.store.append_audit(
            who.name if who is not None else f"os:{os_account()}",
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


def cmd_edge_keygen(args: argparse.Namespace) -> int:
    """Write an Ed25519 key pair for signing the proxy index served to edge agents."""
    from edgeagent.proxy.artefact import new_key_pair

    private_path, public_path = Path(args.private), Path(args.public)
    for path in (private_path, public_path):
        if path.exists():
            _err(f"{path} exists; not overwritten")
            return 2
    private, public = new_key_pair()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private)
    public_path.write_bytes(public)
    print(f"private key {private_path} (0600: [proxy] signing_key_file on the centre)")
    print(f"public key  {public_path} ([edge] public_key_file on every edge)")
    return 0


def cmd_fleet_status(args: argparse.Namespace) -> int:
    """Ask the running daemon's API for ``GET /v1/fleet`` and print one line per target."""
    from edgeagent.apiclient import ApiCallFailed

    offered = _offered(args)
    if offered.secret is None:
        raise UsageError("give a noc token: --token-file FILE or $EDGEAGENT_TOKEN")
    try:
        fleet = _api_client(args, offered.secret).call("GET", "/v1/fleet")
    except ApiCallFailed as exc:
        _err(str(exc))
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
    """An admin's job; the service user may create tokens until an admin token exists."""
    from edgeagent.identity import bootstrap_actor
    from edgeagent.tokens import create_token

    agent = _agent(args)
    try:
        offered = _offered(args)
        state_dir = agent.settings.agent.state_dir
        actor = None if offered.given else bootstrap_actor(agent.store, state_dir)
        if actor is None:
            actor = _identity(agent, offered, Role.ADMIN).name
        secret, token = create_token(agent.store, args.name, args.role, actor)
    finally:
        agent.close()
    print(f"token {token.id} for {args.name} ({args.role}); shown once, store it now:")
    print(secret)
    return EXIT_OK


def cmd_token_list(args: argparse.Namespace) -> int:
    listed = _with_casework(args, lambda work: work.tokens(), changes=False)
    if args.json:
        print(json.dumps(listed, indent=2))
        return EXIT_OK
    for t in listed["items"]:
        state = "revoked" if t["revoked"] else "active"
        print(f"{t['id']:>5}  {t['name']:<24} {t['role']:<10} {state:<8} {t['created_at']}")
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace) -> int:
    token = _with_casework(args, lambda work: work.revoke_token(args.id, args.reason))
    print(f"token {token['id']} of {token['name']} ({token['role']}) revoked")
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    """One sync now, per feed; a progress line on stderr for long parses."""

    agent = _agent(args)
    try:
        who = _identity(agent, _offered(args), Role.ANALYST)
    except EdgeAgentError:
        agent.close()
        raise

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
        for r in results:
            agent.store.append_audit(
                who.name,
                "feed.sync",
                f"feed:{r.feed}",
                {"outcome": str(r.outcome), "reason": r.reason},
            )
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
    """Approve or discard a feed's held generation (audited with the identity's name)."""
    body: dict[str, Any] = {"reason": args.reason}
    if args.generation is not None:
        body["generation"] = args.generation
    gen = _with_casework(
        args, lambda work: work.held_generation(args.name, args.feed_command, body)
    )
    print(
        f"feed {args.name}: generation {gen['generation']} ({gen['entries']:,} entries) "
        f"is now {gen['status']}"
    )
    return EXIT_OK


# -- decisions

_SCOPES = ("domain", "host", "url", "url-prefix", "ip", "cidr")


def _notice_targets(args: argparse.Namespace) -> list[tuple[str, dict[str, str]]]:
    """``(where, {"target", "scope"})`` for each target on the command line and in
    ``--file`` (one a line; ``#`` comments and blank lines skipped; a line may start
    with its scope: ``domain bad.example``)."""
    found = [
        (f"argument {i}", {"target": t, "scope": args.scope}) for i, t in enumerate(args.targets, 1)
    ]
    if args.file:
        try:
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise UsageError(f"cannot read {args.file}: {reason}") from None
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            head, _, rest = line.partition(" ")
            if head in _SCOPES and rest.strip():
                found.append((f"line {n}", {"target": rest.strip(), "scope": head}))
            else:
                found.append((f"line {n}", {"target": line, "scope": args.scope}))
    if not found:
        raise UsageError("no targets: give them as arguments or with --file")
    return found


def cmd_decision_add(args: argparse.Namespace) -> int:
    """One notice, one case reference, any number of targets; a result per target."""
    from edgeagent.api.validation import BULK_MAX_TARGETS

    targets = _notice_targets(args)
    notice: dict[str, Any] = {
        "action": args.action,
        "reason": args.reason,
        "reference": args.reference,
        "source": args.source,
        "category": args.category,
    }
    if args.received:
        notice["notice_received_at"] = args.received
    if args.expires:
        notice["expires_at"] = args.expires
    if args.jurisdiction:
        notice["jurisdiction"] = args.jurisdiction
    if args.hold is not None:
        notice["hold"] = args.hold

    def send(work: Casework) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for start in range(0, len(targets), BULK_MAX_TARGETS):
            chunk = [t for _, t in targets[start : start + BULK_MAX_TARGETS]]
            answer = work.notice({**notice, "targets": chunk})
            results.extend({**r, "index": r["index"] + start} for r in answer["results"])
        return results

    results = _with_casework(args, send)
    counts = {"accepted": 0, "pending": 0, "refused": 0}
    if args.json:
        print(json.dumps({"reference": args.reference, "results": results}, indent=2))
    for r in results:
        counts[r["outcome"]] += 1
        if args.json:
            continue
        where = targets[r["index"]][0]
        if r["outcome"] == "refused":
            print(f"  {where}: refused ({r['target_ref']}): {r['reason']}")
        else:
            print(f"  {where}: {r['outcome']}, decision {r['decision']}: {r['target']}")
    if not args.json:
        print(
            f"notice {args.reference}: {counts['accepted']} accepted, "
            f"{counts['pending']} pending approval, {counts['refused']} refused"
        )
    return EXIT_REFUSED if counts["refused"] else EXIT_OK


def _decision_line(d: dict[str, Any]) -> str:
    approved = f", approved by {d['approved_by']}" if d.get("approved_by") else ""
    return (
        f"#{d['id']} {d['status']:<16} {d['action']:<5} {d['scope']:<10} {d['target']}  "
        f"({d['source']}, ref {d['reference']}, by {d['actor']}{approved})"
    )


def cmd_decision_list(args: argparse.Namespace) -> int:
    query = {
        key: str(value)
        for key, value in (
            ("status", args.status),
            ("source", args.source),
            ("scope", args.scope),
            ("reference", args.reference),
            ("target", args.target),
            ("limit", args.limit),
            ("offset", args.offset),
        )
        if value is not None
    }
    page = _with_casework(args, lambda work: work.decisions(query), changes=False)
    if args.json:
        print(json.dumps(page, indent=2))
        return EXIT_OK
    for d in page["items"]:
        print(_decision_line(d))
    if not page["items"]:
        print("no decisions match")
    if page["next_offset"] is not None:
        print(f"more: --offset {page['next_offset']}")
    return EXIT_OK


def _print_decision(d: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(d, indent=2))
        return
    print(_decision_line(d))
    print(f"  reason: {d['reason']}")
    print(f"  notice received {d['notice_received_at']}, created {d['created_at']}")
    if d.get("expires_at"):
        print(f"  expires {d['expires_at']}")
    for h in d["history"]:
        print(f"  {h['at']}  {h['status']:<16} by {h['actor']}: {h['reason']}")


def cmd_decision_show(args: argparse.Namespace) -> int:
    decision = _with_casework(args, lambda work: work.decision(args.id), changes=False)
    _print_decision(decision, args)
    return EXIT_OK


def cmd_decision_revoke(args: argparse.Namespace) -> int:
    _print_decision(_with_casework(args, lambda work: work.revoke(args.id, args.reason)), args)
    return EXIT_OK


def cmd_decision_approve(args: argparse.Namespace) -> int:
    _print_decision(_with_casework(args, lambda work: work.approve(args.id, args.reason)), args)
    return EXIT_OK


# -- intake


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


_INTAKE_OPERATIONS = {
    "accept": "acceptIntakeItem",
    "reject": "rejectIntakeItem",
    "uphold": "upholdIntakeAppeal",
    "revoke": "revokeIntakeAppeal",
}


def cmd_intake_outcome(args: argparse.Namespace) -> int:
    """Accept/reject a report, uphold/revoke an appeal, as a checked identity with the role
    the API route needs (audited under that name)."""
    from edgeagent.api.routes import ROUTES
    from edgeagent.intake.listener import triage_for

    operation = _INTAKE_OPERATIONS[args.intake_command]
    needed = next(r.role for r in ROUTES if r.operation_id == operation)
    agent = _agent(args)
    try:
        actor = _identity(agent, _offered(args), needed).name
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
    """``text`` as a UTC time (as the API stores it); without a zone, ``text`` is in
    ``[agent] time_zone``."""
    from edgeagent.dates import parse_when

    if text is None:
        return None
    try:
        return parse_when(text, agent.settings.agent.zone).astimezone(UTC)
    except (ValueError, OverflowError):
        raise UsageError(
            f"{option} takes an ISO 8601 date or date-time (2026-01-01, 2026-01-01T09:30, "
            "2026-01-01T09:30Z)"
        ) from None


def _takedown(agent: Agent) -> TakedownService:
    if agent.takedown is None:
        raise UsageError("takedown is not enabled in this config ([takedown] enabled = true)")
    # Only the leading agent sends notices: a change made here records the notice it calls
    # for as owed, and the leader's scheduler sends it within seconds.
    agent.takedown.may_send = _never
    return agent.takedown


def _never() -> bool:
    return False


# -- reports


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


def _ticket_actor(args: argparse.Namespace, agent: Agent) -> str:
    """The checked identity a ticket change acts as (a refusal is audited, then raised)."""
    from edgeagent.identity import IdentityRefused

    try:
        return _identity(agent, _offered(args), _ticket_roles()[args.action]).name
    except IdentityRefused as exc:
        subject = f"cli:ticket {args.action}"
        agent.store.append_audit("anonymous", "auth.denied", subject, {"reason": str(exc)})
        raise


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
    from edgeagent.takedown.ticket_text import ticket_lines

    agent = _agent(args)
    try:
        t = asyncio.run(_takedown(agent).get(args.id))
        local = agent.settings.agent.zone
    finally:
        agent.close()
    if args.json:
        print(_ticket_json(t))
        return EXIT_OK
    for line in ticket_lines(t, datetime.now(UTC), local):
        print(line)
    return EXIT_OK


def cmd_ticket_evidence(args: argparse.Namespace) -> int:
    """The evidence bundle of a ticket (metadata only, with its manifest hash), as the
    API exports it: the export is audited under the checked identity."""
    from edgeagent.atomic import write_atomic

    agent = _agent(args)
    try:
        service = _takedown(agent)
        actor = _ticket_actor(args, agent)
        bundle = asyncio.run(service.evidence(args.id, actor))
    finally:
        agent.close()
    text = json.dumps(bundle, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        write_atomic(Path(args.output), text.encode(), 0o600)  # it names the URLs
        print(f"ticket {args.id}: evidence {bundle['manifest_sha256']} written to {args.output}")
    else:
        print(text, end="")
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
        actor = _ticket_actor(args, agent)
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
def _ticket_roles() -> dict[str, Role]:

    analyst, supervisor = Role.ANALYST, Role.SUPERVISOR
    return {
        "transition": analyst,
        "authorise": analyst,
        "assign": analyst,
        "comment": analyst,
        "outcome": analyst,
        "hold": supervisor,
        "release": supervisor,
        "legal-hold": supervisor,
        "evidence": supervisor,
    }


def _add_ticket_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
    ident: argparse.ArgumentParser,
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

    roles = _ticket_roles()

    def change(name: str, text: str) -> argparse.ArgumentParser:
        role = roles[name].label
        cp: argparse.ArgumentParser = actions.add_parser(
            name, parents=[common, ident], help=f"{text} ({role})", description=text
        )
        cp.add_argument("id", type=int, metavar="ID", help="ticket id")
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
    te = change("evidence", "export the evidence bundle (metadata only; audited)")
    te.add_argument("-o", "--output", metavar="FILE", help="write it here (0600), not stdout")
    te.set_defaults(func=cmd_ticket_evidence)
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
        print(f"  console  {info.get('console')}  (sign in with a token from lab.json)")
        print(f"  metrics  {info.get('metrics')}")
        for key in (
            "apis",
            "database",
            "resolvers",
            "proxy",
            "origin",
            "stop_page",
            "hosted_example",
        ):
            if key in info:
                print(f"  {key:<8} {json.dumps(info[key])}")
        fleet = info.get("fleet", {})
        kinds = sorted({r["kind"] for r in fleet.get("resolvers", [])})
        print(f"  fleet    {len(fleet.get('resolvers', []))} resolvers ({', '.join(kinds)})")
        print(f"  tokens and URLs: {lab.plan.info_path}")
        print("  try:  TOKEN=$(jq -r .tokens.analyst " + str(lab.plan.info_path) + ")")
        print("Ctrl-C stops the lab and removes its directory.", flush=True)

    if args.resolvers is not None and not args.fleet:
        raise UsageError("--resolvers needs --fleet")
    if args.fleet and (args.resolvers or DEFAULT_FLEET_RESOLVERS) < 1:
        raise UsageError("--resolvers: at least 1")
    fleet = (args.resolvers or DEFAULT_FLEET_RESOLVERS) if args.fleet else 0
    from edgeagent.lab.pgha import DEFAULT_ENGINE, ENGINES

    if args.ha_engine is not None and not args.ha:
        raise UsageError("--ha-engine needs --ha")
    if args.ha_engine not in (None, *ENGINES):
        raise UsageError(f"--ha-engine: one of {', '.join(ENGINES)}")
    run_lab(
        Path(args.dir) if args.dir else None,
        args.keep,
        announce,
        fleet,
        ha=args.ha,
        ha_engine=args.ha_engine or DEFAULT_ENGINE,
    )
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
    ident = argparse.ArgumentParser(add_help=False)
    ident.add_argument(
        "--token-file",
        metavar="FILE",
        help="your API token (mode 0600), else $EDGEAGENT_TOKEN: you act as its holder",
    )
    ident.add_argument(
        "--actor",
        metavar="NAME",
        help="as the service user: act as the holder of the unrevoked token named NAME",
    )
    remote = argparse.ArgumentParser(add_help=False, parents=[ident])
    remote.add_argument(
        "--api",
        metavar="URL",
        help="the control API, used with a token (default: $EDGEAGENT_API, else [api])",
    )
    json_out = argparse.ArgumentParser(add_help=False)
    json_out.add_argument("--json", action="store_true", help="machine-readable output")
    p = argparse.ArgumentParser(
        prog="edgeagent",
        description="Keeps child sexual abuse material out of reach at an ISP's edge.",
    )
    p.add_argument("--version", action="version", version=f"edgeagent {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str, *parents: Any):  # type: ignore[no-untyped-def]
        sp = sub.add_parser(name, parents=[common, *parents], help=help_, description=help_)
        sp.set_defaults(func=func)
        return sp

    def group(name: str, help_: str) -> Any:
        holder = sub.add_parser(name, help=help_, description=help_)
        return holder.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")

    def action(
        actions: Any,
        name: str,
        func: Callable[[argparse.Namespace], int],
        help_: str,
        *parents: Any,
    ) -> Any:
        sp = actions.add_parser(name, parents=[common, *parents], help=help_, description=help_)
        sp.set_defaults(func=func)
        return sp

    add("run", cmd_run, "run the daemon (API, feeds, publishers, verifier)")
    add("check-config", cmd_check_config, "validate the config and print a summary")
    pl = add(
        "plan",
        cmd_plan,
        "held feed generations (what each would change) and pending decisions",
        ident,
        json_out,
    )
    pl.add_argument(
        "--entries",
        action="store_true",
        help="list the entries each held generation adds and removes (supervisor)",
    )
    lk = add("lookup", cmd_lookup, "how a URL, name or address is treated, and why", ident)
    lk.add_argument("target", help="URL, host name or IP address")

    sy = add("sync", cmd_sync, "sync feeds now and print per-feed counts (analyst)", ident)
    sy.add_argument("--feed", metavar="NAME", help="only this feed")

    decision = group("decision", "record, find, approve and revoke decisions")
    da = action(
        decision,
        "add",
        cmd_decision_add,
        "record a notice: one case reference, one or many targets, a result per target (analyst)",
        remote,
        json_out,
    )
    da.add_argument("targets", nargs="*", metavar="TARGET", help="URL, name, address or prefix")
    da.add_argument(
        "-f",
        "--file",
        help="targets, one a line ('-': stdin); a line may start with its scope "
        "('domain bad.example'); '#' starts a comment",
    )
    da.add_argument("--scope", choices=_SCOPES, default="url", help="default scope (url)")
    da.add_argument("--action", choices=("block", "allow"), default="block")
    da.add_argument("--reason", required=True, help="why (audited)")
    da.add_argument("--reference", required=True, help="case reference (police, hotline)")
    da.add_argument(
        "--source",
        required=True,
        choices=("public", "hotline", "law-enforcement", "internal"),
        help="who sent the notice",
    )
    da.add_argument(
        "--received",
        metavar="WHEN",
        help="when the notice arrived (ISO 8601; without a zone: the configured one)",
    )
    da.add_argument("--expires", metavar="WHEN", help="when the decisions end (ISO 8601)")
    da.add_argument("--category", default="", help="category label")
    da.add_argument(
        "--jurisdiction", metavar="CODE", help="ISO 3166 code of the law governing the case"
    )
    da.add_argument(
        "--hold",
        action=argparse.BooleanOptionalAction,
        help="law-enforcement hold: takedown notices reach the hosting team only (default: "
        "on for the sources [takedown] hold_for names)",
    )

    dl = action(
        decision, "list", cmd_decision_list, "list and search decisions (analyst)", remote, json_out
    )
    dl.add_argument("--target", help="on this URL, name, address or prefix, or its host")
    dl.add_argument("--reference", help="of this case reference")
    dl.add_argument(
        "--status", choices=("active", "pending-approval", "revoked", "expired", "rejected")
    )
    dl.add_argument("--source", choices=("public", "hotline", "law-enforcement", "internal"))
    dl.add_argument("--scope", choices=_SCOPES)
    dl.add_argument("--limit", type=int)
    dl.add_argument("--offset", type=int)
    for name, func, text in (
        ("show", cmd_decision_show, "one decision with its history (analyst)"),
        ("revoke", cmd_decision_revoke, "revoke an active or pending decision (supervisor)"),
        (
            "approve",
            cmd_decision_approve,
            "approve a pending decision: not its creator (supervisor)",
        ),
    ):
        dp = action(decision, name, func, text, remote, json_out)
        dp.add_argument("id", type=int, help="decision id")
        if name == "revoke":
            dp.add_argument("--reason", required=True, help="why (audited)")
        elif name == "approve":
            dp.add_argument("--reason", default="", help="why (audited)")

    feed = group("feed", "held feed generations")
    for name, text in (
        ("approve", "make the held generation live (supervisor)"),
        ("discard", "discard the held generation; the live one stays (supervisor)"),
    ):
        fp = action(feed, name, cmd_feed_held, text, remote)
        fp.add_argument("name", help="feed name (see `edgeagent plan`)")
        fp.add_argument("--reason", required=True, help="why (audited)")
        fp.add_argument(
            "--generation", type=int, help="the generation you reviewed (default: the held one)"
        )

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
    for name, text in (
        ("accept", "accept a report or notice: its URLs become block decisions (analyst)"),
        ("reject", "reject a report or notice (kept with the reason; analyst)"),
        ("uphold", "answer an appeal or challenge: the block stays (supervisor)"),
        ("revoke", "answer an appeal or challenge: the blocks behind it end (supervisor)"),
    ):
        ip = intake_sub.add_parser(name, parents=[common, ident], help=text, description=text)
        ip.add_argument("id", type=int)
        ip.add_argument("--reason", required=True, help="why (audited; sent to an appellant)")
        ip.set_defaults(func=cmd_intake_outcome)
    fleet = sub.add_parser("fleet", help="the resolvers and proxies the daemon verifies")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")
    fs = fleet_sub.add_parser(
        "status",
        parents=[common, remote, json_out],
        help="every resolver and proxy: confirmed serial, lag, last canary (exit 1: one down)",
    )
    fs.set_defaults(func=cmd_fleet_status)
    edge = sub.add_parser("edge", help="the edge role: proxy hosts following a central agent")
    edge_sub = edge.add_subparsers(dest="edge_command", required=True, metavar="ACTION")
    kg = edge_sub.add_parser(
        "keygen", help="write the Ed25519 key pair that signs the index served to edges"
    )
    kg.add_argument("--private", required=True, help="private key file to create (0600)")
    kg.add_argument("--public", required=True, help="public key file to create")
    kg.set_defaults(func=cmd_edge_keygen)

    report = group("report", "reports")
    rt = action(
        report,
        "takedown",
        cmd_report_takedown,
        "time to takedown (count, median, p90, share within 60/120 min) as CSV",
    )
    rt.add_argument(
        "--from", dest="from_", metavar="WHEN", help="notices from (default: 30 days ago)"
    )
    rt.add_argument("--to", metavar="WHEN", help="notices before (default: now)")
    rt.add_argument("-o", "--output", help="write the CSV to this file instead of stdout")

    _add_ticket_commands(sub, common, ident)

    rn = sub.add_parser(
        "render",
        parents=[common],
        help="write every fleet snippet (BIND, Unbound, PowerDNS, Knot, Squid, sniproxy, "
        "tmpfiles, the agent's resolvers) from an inventory and this config",
    )
    rn.add_argument("--inventory", required=True, help="the fleet inventory (TOML)")
    rn.add_argument("--out", required=True, help="directory to write into")
    rn.set_defaults(func=cmd_render)

    lab = sub.add_parser("lab", help="run the agent and its peers on loopback for trying it out")
    lab.add_argument("--dir", help="lab directory (default: a new temporary directory)")
    lab.add_argument("--keep", action="store_true", help="keep the lab directory on exit")
    lab.add_argument(
        "--fleet",
        action="store_true",
        help="also a rendered fleet: two hidden primaries, a distribution secondary per "
        "region, resolvers of every kind (BIND, Unbound, PowerDNS, Knot)",
    )
    lab.add_argument(
        "--resolvers",
        type=int,
        metavar="N",
        help=f"the fleet's resolvers (default {DEFAULT_FLEET_RESOLVERS})",
    )
    lab.add_argument(
        "--ha",
        action="store_true",
        help="store in a PostgreSQL primary + synchronous standby, two agents",
    )
    lab.add_argument(
        "--ha-engine",
        metavar="ENGINE",
        help="the failover engine of --ha: pg_auto_failover (default) or patroni (on etcd)",
    )
    lab.set_defaults(func=cmd_lab)

    audit = group("audit", "audit log commands")
    action(
        audit, "verify", cmd_audit_verify, "verify the audit hash chain; names the first bad row"
    )

    token = group("token", "API tokens (admin)")
    tc = action(
        token,
        "create",
        cmd_token_create,
        "create an API token (admin; the service user until an admin token exists)",
        ident,
    )
    tc.add_argument("--role", required=True, choices=ROLES)
    tc.add_argument("--name", required=True, help="who holds it (the audit actor)")
    action(token, "list", cmd_token_list, "every token: holder, role, revoked", remote, json_out)
    tr = action(token, "revoke", cmd_token_revoke, "revoke a token", remote)
    tr.add_argument("id", type=int, help="token id (see `edgeagent token list`)")
    tr.add_argument("--reason", required=True, help="why (audited)")
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
    except (UsageError, IdentityMissing) as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ApiCallFailed as exc:
        _err(str(exc))
        if exc.status == 0 or exc.status >= 500:
            return EXIT_FAILED
        return EXIT_USAGE if exc.status == 400 else EXIT_REFUSED
    except EdgeAgentError as exc:
        _err(str(exc))
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
