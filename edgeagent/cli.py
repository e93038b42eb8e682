"""``edgeagent`` command line. The only module that prints.

Exit codes: 0 success, 1 a check failed (e.g. the audit chain), 2 bad usage or bad
config, 3 the requested object does not exist or a guardrail refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeagent import __version__
from edgeagent.config import DEFAULT_CONFIG_PATH, Settings, load_config, summary
from edgeagent.errors import ConfigError, EdgeAgentError, InvalidTarget

if TYPE_CHECKING:
    from edgeagent.service import Agent

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


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


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date/time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def cmd_report_takedown(args: argparse.Namespace) -> int:
    """Time-to-takedown report as CSV (stdout, or a file written atomically)."""
    from edgeagent.atomic import write_atomic
    from edgeagent.takedown.report import report_csv

    agent = _agent(args)
    try:
        if agent.takedown is None:
            _err("takedown is not enabled in this config ([takedown] enabled = true)")
            return EXIT_USAGE
        end = args.to or datetime.now(UTC)
        start = args.from_ or end - timedelta(days=30)
        if start >= end:
            _err("--from must be before --to")
            return EXIT_USAGE
        text = report_csv(asyncio.run(agent.takedown.report(start, end)))
    finally:
        agent.close()
    if args.output:
        write_atomic(Path(args.output), text.encode(), 0o640)
        print(f"report {start.isoformat()} .. {end.isoformat()} written to {args.output}")
    else:
        print(text, end="")
    return EXIT_OK


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
    rt.add_argument("--from", dest="from_", type=_when, help="notices from (default: 30 days ago)")
    rt.add_argument("--to", type=_when, help="notices before (default: now)")
    rt.add_argument("-o", "--output", help="write the CSV to this file instead of stdout")
    rt.set_defaults(func=cmd_report_takedown)

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
    except EdgeAgentError as exc:
        _err(str(exc))
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
