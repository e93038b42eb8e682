"""NTD console page times with a 1,000,000-entry policy and 10,000 takedown tickets.

The agent is built from a config as the daemon builds it (:class:`edgeagent.service.Agent`,
the API application with the console from :meth:`edgeagent.service.Daemon.api_app`) over
a store preloaded with one live feed generation of ``n_policy`` entries, ``n_tickets``
tickets (a tenth of them due within the day) and a notice of 200 pending decisions. The
app is served on loopback in this process; one signed-in admin's browser-like client
asks each page ``repeat`` times, one after the other. The time is the client's (request
sent to page read), so it includes the loopback round trip.

Goal: every page <= 200 ms.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench import Row
from bench.api_throughput import _percentile
from edgeagent.config import load_config
from edgeagent.decisions import DecisionRequest, NoticeTarget
from edgeagent.intake.listener import triage_for
from edgeagent.model import Action, Entry, Indicator, NoticeSource, Scope
from edgeagent.service import Agent, Daemon
from edgeagent.store import open_store, open_ticket_store
from edgeagent.store.base import GenerationStatus
from edgeagent.takedown.tickets import Ticket, TicketEvent, TicketState, TicketUrl
from edgeagent.tokens import new_token

ANCHOR = "goal: each console page <= 200 ms with 1,000,000 entries and 10,000 tickets"
PAGES = (
    "/console/queue",
    "/console/decisions",
    "/console/decisions?reference=BENCH-NOTICE",
    "/console/decisions/1",
    "/console/tickets",
    "/console/tickets/1",
    "/console/lookup",
    "/console/fleet",
    "/console/reports",
    "/console/audit",
    "/console/tokens",
)


def _feed(n: int) -> Iterator[Entry]:
    for i in range(n):
        yield Entry(Indicator(Scope.DOMAIN, f"f{i:07d}.feed.example"), Action.BLOCK, "bench")


def _tickets(n: int, now: datetime) -> Iterator[Ticket]:
    for i in range(n):
        received = now - timedelta(minutes=5 * (n - i))
        url = f"http://c{i}.hosted.test/listed.html"
        yield Ticket(
            id=0,
            reference=f"BENCH-{i}",
            source="hotline",
            jurisdiction="",
            customer_id=f"cust-{i % 50}",
            service_id="web-1",
            contact="noc@hosted.example",
            assignment_origin="bench",
            notice_received_at=received,
            opened_at=received,
            # A tenth still due within the day, the rest long past (the due view's job).
            deadline=now + timedelta(hours=1) if i % 10 == 0 else received + timedelta(hours=1),
            state=TicketState.RECEIVED,
            urls=(TicketUrl(url, f"ref{i}", ("198.51.100.10",), received, received),),
            events=(TicketEvent(received, "system", "open", "opened", "", "received"),),
        )


def _config(tmp: Path) -> Path:
    (tmp / "customers.csv").write_text(
        "prefix,customer_id,service_id,contact\n198.51.100.0/24,cust,web,noc@hosted.example\n",
        encoding="utf-8",
    )
    config = tmp / "edgeagent.toml"
    config.write_text(
        f"""
[agent]
state_dir = "{tmp / "state"}"
[guard]
change_floor = 0
max_addition_share = 1000.0
[takedown]
enabled = true
own_prefixes = ["198.51.100.0/24"]
resolvers = [{{ host = "127.0.0.1", port = 9 }}]
[[takedown.customers]]
kind = "csv"
path = "{tmp / "customers.csv"}"
""",
        encoding="utf-8",
    )
    return config


def _prepare(tmp: Path, n_policy: int, n_tickets: int) -> tuple[Agent, str]:
    config = _config(tmp)
    settings = load_config(config)
    state = settings.agent.state_dir
    state.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.store, state)
    store.add_generation("bench", _feed(n_policy), status=GenerationStatus.LIVE)
    secret, digest = new_token()
    store.add_token("ada", "admin", digest)
    _, other = new_token()
    store.add_token("ana", "analyst", other)
    store.close()
    tickets = open_ticket_store(settings.store, state)
    now = datetime.now(UTC)
    for t in _tickets(n_tickets, now):
        tickets.create(t)
    tickets.close()
    agent = Agent.build(settings)
    notice = DecisionRequest(
        target="",
        scope=Scope.URL,
        action=Action.BLOCK,
        reason="bench notice",
        reference="BENCH-NOTICE",
        source=NoticeSource.PUBLIC,
    )
    targets = [NoticeTarget(f"http://n{i}.notice.example/x", Scope.URL) for i in range(200)]
    agent.decisions.create_notice(notice, targets, "ana")
    agent.policy()  # the 1M-entry index, built once as at the daemon's start
    return agent, secret


async def _measure(agent: Agent, secret: str, repeat: int) -> dict[str, list[float]]:
    daemon = Daemon(agent, None)
    app = daemon.api_app(agent.settings, triage_for(agent))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    times: dict[str, list[float]] = {}
    try:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", cookie_jar=jar) as http:
            async with http.post("/console/signin", data={"token": secret}) as resp:
                assert resp.status == 200, await resp.text()
            for page in PAGES:
                start = time.perf_counter()
                async with http.get(page) as resp:  # the first load, reported apart
                    await resp.read()
                    assert resp.status == 200, (page, resp.status)
                times.setdefault(f"first {page}", []).append(time.perf_counter() - start)
                for _ in range(repeat):
                    start = time.perf_counter()
                    async with http.get(page) as resp:
                        await resp.read()
                    times.setdefault(page, []).append(time.perf_counter() - start)
    finally:
        await runner.cleanup()
    return times


def measure(n_policy: int, n_tickets: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        agent, secret = _prepare(Path(tmp), n_policy, n_tickets)
        try:
            times = asyncio.run(_measure(agent, secret, repeat))
        finally:
            agent.close()
    return {
        page: {
            "p50_ms": _percentile(sorted(t), 0.5) * 1000,
            "max_ms": max(t) * 1000,
        }
        for page, t in times.items()
    }


def rows(quick: bool) -> list[Row]:
    n_policy, n_tickets = (20_000, 500) if quick else (1_000_000, 10_000)
    result = measure(n_policy, n_tickets, repeat=5 if quick else 20)
    goal = "<= 200 ms" if not quick else ""
    first = result.pop("first /console/reports")
    result = {page: r for page, r in result.items() if not page.startswith("first ")}
    worst = max(r["max_ms"] for r in result.values())
    out = [
        Row(
            f"slowest console page, {n_policy:,} entries, {n_tickets:,} tickets (max)",
            worst,
            "ms",
            goal,
            ANCHOR,
        )
    ]
    out.append(
        Row(
            "  /console/reports, first load (reads every ticket of 30 days; then kept, refreshed "
            "in the background)",
            first["max_ms"],
            "ms",
            "",
            ANCHOR,
        )
    )
    out += [
        Row(f"  {page} (median)", r["p50_ms"], "ms", goal, ANCHOR) for page, r in result.items()
    ]
    return out


if __name__ == "__main__":
    print(measure(int(sys.argv[1]), int(sys.argv[2]), 5))
