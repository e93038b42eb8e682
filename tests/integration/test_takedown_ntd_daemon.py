"""Notice and takedown through the daemon, as the NTD team works a day's cases.

``edgeagent run`` on loopback with its real peers:

- a real Unbound serving the hosted names (the locator's resolver, no policy), an SMTP
  sink (aiosmtpd) and a webhook sink checking the HMAC
  (:mod:`tests.support.segment_peers`, one subprocess);
- an authoritative ``named`` for the synthetic ``test.`` zone and a real Unbound from
  the shipped HTTP snippet taking the agent's RPZ (``http-notify``): what a subscriber's
  resolver answers.

Decisions go in through the API, tickets are worked through the API, and the evidence is
what the sinks received, what the resolver answers and what ``/metrics`` says.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgeagent.lab.daemons import RunningDaemon
from edgeagent.lab.resolvers import bootstrap_zones, start_authoritative, start_unbound_http
from edgeagent.model import DesiredState
from edgeagent.rpz.enforcer import RpzConfig, compiler_settings
from edgeagent.rpz.publishers.base import ZoneRelease
from tests.support.agent import AGENT, create_token, http_json, running_agent
from tests.support.binaries import require_binary
from tests.support.polling import wait_for
from tests.support.ports import free_port
from tests.support.resolvers import stop_all
from tests.support.segment_peers import (
    received_hooks,
    received_mails,
    running,
    smtp_notifier_toml,
)

pytestmark = pytest.mark.integration

RPZ_ZONE, RPZ_EXCEPTIONS = "rpz.edgeagent.invalid", "rpz-exceptions.edgeagent.invalid"
HOSTING = "hosting@isp.example"
ON_CALL = "oncall@isp.example"
ALERT_RULES = Path(__file__).resolve().parents[2] / "config" / "prometheus" / "edgeagent-alerts.yml"
TAKEDOWN_SERIES = (
    "edgeagent_takedown_open_tickets",
    "edgeagent_takedown_open_overdue",
    "edgeagent_takedown_sla_breaches_total",
)
RECORDS = [
    ("le.hosted.test", "A", "192.0.2.10"),
    ("legal.hosted.test", "A", "192.0.2.11"),
    ("sla.hosted.test", "A", "192.0.2.12"),
    ("auth.hosted.test", "A", "192.0.2.13"),
    ("dom.hosted.test", "A", "192.0.2.70"),
    ("www.dom.hosted.test", "A", "192.0.2.71"),
]
CUSTOMERS = """prefix,customer_id,service_id,contact
192.0.2.0/26,cust-a,web-1,noc@cust-a.example
192.0.2.64/26,cust-b,web-2,noc@cust-b.example
"""
ZONE_TEXT = (
    "$TTL 60\n@ SOA ns.test. hostmaster.test. 1 60 60 600 60\n@ NS ns.test.\nns A 127.0.0.1\n"
    + "".join(f"{name.removesuffix('.test')} {rtype} {value}\n" for name, rtype, value in RECORDS)
)


@dataclass
class Ntd:
    """The running daemon and what its peers received."""

    directory: Path
    api: str
    metrics: str
    tokens: dict[str, str]
    resolver: RunningDaemon
    config: Path

    def call(self, method: str, path: str, who: str = "analyst", body: Any = None) -> Any:
        status, answer = http_json(method, f"{self.api}{path}", self.tokens[who], body)
        return status, answer

    def decide(self, who: str = "analyst", **fields: Any) -> dict[str, Any]:
        body = {"action": "block", "reason": "notice", "scope": "url", **fields}
        status, answer = self.call("POST", "/v1/decisions", who, body)
        assert status == 201, answer
        return dict(answer)

    def ticket(self, reference: str, *, notified: bool = True) -> dict[str, Any]:
        """The ticket of case ``reference``, once it exists (and has been notified)."""

        def found() -> dict[str, Any] | None:
            status, body = self.call("GET", "/v1/tickets?limit=1000")
            assert status == 200, body
            for t in body["items"]:
                if t["reference"] == reference and (t["last_notified_at"] or not notified):
                    return dict(t)
            return None

        return wait_for(f"a ticket for {reference}", found, timeout=60)

    def mails(self) -> list[tuple[list[str], Message, str]]:
        """Every message the SMTP sink received: (recipients, message, raw text)."""
        return [(m.recipients, m.message, m.raw) for m in received_mails(self.directory / "peers")]

    def hooks(self) -> list[dict[str, Any]]:
        return received_hooks(self.directory / "peers")

    def ask(self, name: str) -> dns.message.Message:
        q = dns.message.make_query(name, "A")
        return dns.query.udp(q, self.resolver.host, port=self.resolver.port, timeout=3)


def _config(tmp: Path, peers: dict[str, Any], ports: dict[str, int], secret_file: Path) -> str:
    head = textwrap.dedent(
        f"""
        [agent]
        state_dir = "{tmp / "state"}"
        log_format = "json"
        time_zone = "Europe/Berlin"

        [api]
        port = {ports["api"]}

        [metrics]
        port = {ports["metrics"]}

        [feeds.police-list]
        kind = "domain-list"
        path = "{tmp / "police-domains.txt"}"
        source = "law-enforcement"
        jurisdiction = "NL"
        interval_seconds = 3600

        [rpz]
        zone = "{RPZ_ZONE}"
        exception_zone = "{RPZ_EXCEPTIONS}"
        default_action = "nxdomain"
        verify_interval_seconds = 5

        [publishers.unbound-http]
        kind = "http-notify"
        host = "127.0.0.1"
        port = {ports["http_notify"]}
        notify = [{{ host = "127.0.0.1", port = {ports["unbound"]} }}]
        retries = 3

        [[resolvers]]
        name = "unbound"
        host = "127.0.0.1"
        port = {ports["unbound"]}
        kind = "unbound"

        [takedown]
        enabled = true
        own_prefixes = ["192.0.2.0/24"]
        resolvers = [{{ host = "127.0.0.1", port = {peers["dns_port"]} }}]
        require_authorisation_for = ["DE"]
        referral_recipients = {{ example-hotline = "Example Hotline" }}
        # The deadline run (SLA breaches, escalations) comes every min(30 s, this): every
        # peer here answers, so only its cadence changes, not what it does.
        notify_retry_seconds = 5

        [[takedown.customers]]
        kind = "csv"
        path = "{tmp / "customers.csv"}"

        """
    )
    # The NOC's on-call rota is outside the hosting team.
    mail = smtp_notifier_toml("hosting-mail", peers, HOSTING) + smtp_notifier_toml(
        "noc-on-call", peers, ON_CALL, hosting_team=False
    )
    return (
        head
        + mail
        + textwrap.dedent(
            f"""
        [takedown.on_call]
        business_days = []  # no business hours: every escalation also goes on call
        notifiers = {{ internal = ["noc-on-call"] }}

        [takedown.notifiers.ticket-hook]
        kind = "webhook"
        hosting_team = false  # a ticket system other teams read
        url = "{peers["webhook_url"]}"
        secret_file = "{secret_file}"
        """
        )
    )


@pytest.fixture(scope="module")
def ntd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ntd]:
    tmp = tmp_path_factory.mktemp("ntd")
    secret = secrets.token_hex(32)
    secret_file = tmp / "webhook-hmac"
    secret_file.write_text(secret, encoding="utf-8")
    (tmp / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    (tmp / "police-domains.txt").write_text("dom.hosted.test\n", encoding="utf-8")
    auth = unbound = None
    with running(tmp / "peers", RECORDS, secret.encode()) as peers:
        try:
            auth = start_authoritative(tmp / "auth", {"test": ZONE_TEXT})
            ports = {name: free_port(udp=False) for name in ("api", "metrics", "http_notify")}
            unbound_dir = tmp / "unbound"
            empty = _empty_release()
            bootstrap_zones(unbound_dir, empty)
            unbound = start_unbound_http(
                unbound_dir,
                f"http://127.0.0.1:{ports['http_notify']}",
                {"test": auth.port},
                rpz=empty.settings,
            )
            ports["unbound"] = unbound.port
            config = tmp / "edgeagent.toml"
            config.write_text(_config(tmp, peers, ports, secret_file), encoding="utf-8")
            tokens = {
                name: create_token(config, role, name)
                for name, role in (
                    ("analyst", "analyst"),
                    ("analyst2", "analyst"),
                    ("supervisor", "supervisor"),
                )
            }
            with running_agent(config, ports["metrics"], tmp / "daemon.log"):
                yield Ntd(
                    tmp,
                    f"http://127.0.0.1:{ports['api']}",
                    f"http://127.0.0.1:{ports['metrics']}/metrics",
                    tokens,
                    unbound,
                    config,
                )
        finally:
            stop_all(unbound, auth)


def _empty_release() -> ZoneRelease:
    """The zones the resolver starts from (only their names matter)."""
    rpz = compiler_settings(RpzConfig(zone=RPZ_ZONE, exception_zone=RPZ_EXCEPTIONS), {})
    return ZoneRelease(DesiredState(0, (), ()), rpz, 0)


def _addresses(r: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset}


# ------------------------------------------------------------------------------ tests


def test_a_police_notice_tips_off_no_one(ntd: Ntd) -> None:
    police_ref = "POL-2026-0042"
    decision = ntd.decide(
        target="http://le.hosted.test/listed/1.html",
        reference=police_ref,
        source="law-enforcement",
        jurisdiction="NL",
    )
    assert (decision["hold"], decision["jurisdiction"]) == (True, "NL")
    status, shown = ntd.call("GET", f"/v1/decisions/{decision['id']}")
    assert (shown["hold"], shown["jurisdiction"]) == (True, "NL")

    ticket = ntd.ticket(police_ref)
    assert (ticket["hold"], ticket["jurisdiction"]) == (True, "NL")
    assert ticket["customer_id"] == "cust-a"

    mails = [
        (r, m, raw) for r, m, raw in ntd.mails() if m["X-EdgeAgent-Ticket"] == str(ticket["id"])
    ]
    assert mails, "the hosting team got the notice"
    for rcpts, msg, raw in mails:
        assert "noc@cust-a.example" not in raw  # not a recipient, not a word in it
        assert rcpts == [HOSTING]
        assert police_ref in str(msg["Subject"])  # the hosting team knows the case
    hooks = [h for h in ntd.hooks() if h["ticket_id"] == ticket["id"]]
    assert hooks
    for hook in hooks:
        assert hook["forward_to_customer"] is False
        assert hook["customer_contact"] == ""
        assert police_ref not in json.dumps(hook)  # the ticket system is outside the team

    # A supervisor releases the hold (audited); a hotline case never started held.
    status, released = ntd.call(
        "POST", f"/v1/tickets/{ticket['id']}/release", "supervisor", {"reason": "police agree"}
    )
    assert status == 200, released
    assert released["hold"] is False
    status, _ = ntd.call("POST", f"/v1/tickets/{ticket['id']}/hold", "analyst", {"reason": "x"})
    assert status == 403
    status, held = ntd.call(
        "POST", f"/v1/tickets/{ticket['id']}/hold", "supervisor", {"reason": "new request"}
    )
    assert held["hold"] is True
    status, audit = ntd.call("GET", "/v1/audit", "supervisor")
    flags = [
        (r["action"], r["detail"]["set"])
        for r in audit["items"]
        if r["subject"] == f"ticket:{ticket['id']}" and r["action"] == "ticket.hold"
    ]
    assert flags == [("ticket.hold", False), ("ticket.hold", True)]


def test_where_the_law_wants_an_authorisation_first_the_host_preserves_and_waits(
    ntd: Ntd,
) -> None:
    ntd.decide(
        target="http://auth.hosted.test/listed/2.html",
        reference="HL-DE-7",
        source="hotline",
        jurisdiction="DE",
    )
    ticket = ntd.ticket("HL-DE-7")
    tid = ticket["id"]
    assert (ticket["jurisdiction"], ticket["hold"], ticket["authorisation"]) == ("DE", False, None)

    def texts() -> list[str]:
        return [raw for _, m, raw in ntd.mails() if m["X-EdgeAgent-Ticket"] == str(tid)]

    (first,) = texts()
    assert "PRESERVE, DO NOT ALTER, AWAIT INSTRUCTION" in first
    assert "Isolate the listed content" not in first
    for to in ("under-review", "temporarily-removed"):
        status, body = ntd.call(
            "POST", f"/v1/tickets/{tid}/transition", body={"to": to, "reason": "checked"}
        )
    assert status == 409
    assert "authorisation" in body["error"]["message"]

    # Recorded with a wall-clock time of the configured zone (Berlin, winter: +01:00).
    status, body = ntd.call(
        "POST",
        f"/v1/tickets/{tid}/authorisation",
        body={"by": "LKA Example, Officer D", "reference": "LKA-2026-9", "at": "2026-03-02T14:30"},
    )
    assert status == 200, body
    assert body["authorisation"]["at"] == "2026-03-02T13:30:00+00:00"  # 14:30 in Berlin
    assert body["authorisation"]["recorded_by"] == "analyst"
    isolate = wait_for("the instruction to isolate", lambda: texts()[1:] or None, timeout=60)
    assert "Instruction to isolate" in isolate[0]
    assert "Isolate the listed content" in isolate[0]
    status, body = ntd.call(
        "POST",
        f"/v1/tickets/{tid}/transition",
        body={"to": "temporarily-removed", "reason": "isolated by the hosting team"},
    )
    assert status == 200, body
    assert body["state"] == "temporarily-removed"


def test_found_legal_needs_two_people_and_unblocks_at_the_resolver(ntd: Ntd) -> None:
    name = "legal.hosted.test"
    decision = ntd.decide(target=name, scope="host", reference="HL-LEGAL-1", source="hotline")
    blocked = wait_for(
        "the block at the resolver",
        lambda: True if ntd.ask(name).rcode() == dns.rcode.NXDOMAIN else None,
        timeout=30,
    )
    assert blocked
    ticket = ntd.ticket("HL-LEGAL-1")
    tid = ticket["id"]
    status, body = ntd.call(
        "POST", f"/v1/tickets/{tid}/transition", body={"to": "under-review", "reason": "look"}
    )
    assert status == 200, body

    legal = {"to": "found-legal", "reason": "a museum's catalogue photo"}
    status, body = ntd.call("POST", f"/v1/tickets/{tid}/transition", "analyst", legal)
    assert status == 202, body
    assert (body["state"], body["found_legal_proposed_by"]) == ("under-review", "analyst")
    status, body = ntd.call("POST", f"/v1/tickets/{tid}/transition", "analyst", legal)
    assert status == 403
    assert body["error"]["code"] == "four-eyes"
    assert ntd.ask(name).rcode() == dns.rcode.NXDOMAIN  # one person changed nothing

    status, body = ntd.call("POST", f"/v1/tickets/{tid}/transition", "analyst2", legal)
    assert status == 200, body
    assert body["state"] == "found-legal"
    status, revoked = ntd.call("GET", f"/v1/decisions/{decision['id']}")
    assert revoked["status"] == "revoked"
    answer = wait_for(
        "the name to resolve again",
        lambda: ntd.ask(name) if ntd.ask(name).rcode() == dns.rcode.NOERROR else None,
        timeout=30,
    )
    assert _addresses(answer) == {"192.0.2.11"}
    restore = wait_for(
        "the found-legal notice",
        lambda: [raw for _, m, raw in ntd.mails() if "Found legal" in str(m["Subject"])] or None,
        timeout=30,
    )
    assert "may be restored" in " ".join(restore[0].split())


def test_referral_needs_its_recipient(ntd: Ntd) -> None:
    ntd.decide(target="http://sla.hosted.test/ref.html", reference="HL-REF-2", source="hotline")
    tid = ntd.ticket("HL-REF-2")["id"]
    for to in ("under-review", "temporarily-removed"):
        status, body = ntd.call(
            "POST", f"/v1/tickets/{tid}/transition", body={"to": to, "reason": "done"}
        )
        assert status == 200, body
    status, body = ntd.call(
        "POST", f"/v1/tickets/{tid}/transition", body={"to": "referred", "reason": "sent"}
    )
    assert status == 400
    assert body["error"]["field"] == "referral"
    referral = {"recipient": "nobody", "reference": "R-1", "at": "2026-03-02"}
    status, body = ntd.call(
        "POST",
        f"/v1/tickets/{tid}/transition",
        body={"to": "referred", "reason": "sent", "referral": referral},
    )
    assert (status, body["error"]["field"]) == (400, "referral.recipient")
    referral["recipient"] = "example-hotline"
    status, body = ntd.call(
        "POST",
        f"/v1/tickets/{tid}/transition",
        body={"to": "referred", "reason": "sent", "referral": referral},
    )
    assert status == 200, body
    assert body["referral"]["at"] == "2026-03-01T23:00:00+00:00"  # midnight in Berlin
    assert body["referral"]["recipient"] == "example-hotline"


def test_legal_hold_is_a_supervisors_call(ntd: Ntd) -> None:
    ntd.decide(target="http://sla.hosted.test/hold.html", reference="HL-HOLD-3", source="hotline")
    tid = ntd.ticket("HL-HOLD-3")["id"]
    why = {"reason": "court order 2026/17"}
    status, _ = ntd.call("POST", f"/v1/tickets/{tid}/legal-hold", "analyst", why)
    assert status == 403
    status, body = ntd.call("POST", f"/v1/tickets/{tid}/legal-hold", "supervisor", why)
    assert (status, body["legal_hold"]) == (200, True)
    status, body = ntd.call("POST", f"/v1/tickets/{tid}/legal-hold/release", "supervisor", why)
    assert (status, body["legal_hold"]) == (200, False)
    status, audit = ntd.call("GET", "/v1/audit", "supervisor")
    rows = [r for r in audit["items"] if r["subject"] == f"ticket:{tid}"]
    assert [r["detail"]["set"] for r in rows if r["action"] == "ticket.legal-hold"] == [True, False]
    assert all(r["actor"] == "supervisor" for r in rows if r["action"] == "ticket.legal-hold")


def _takedown_samples(ntd: Ntd) -> dict[tuple[str, str], float]:
    """The takedown series of one real scrape: (name, source) -> value."""
    status, text = http_json("GET", ntd.metrics)
    assert status == 200
    return {
        (sample.name, sample.labels["source"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in TAKEDOWN_SERIES
    }


def _rule_test(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> str:
    """A promtool rule test: each series is the first scrape, then the second one held
    for 20 minutes; the expected alerts follow from the scraped values."""
    labels = 'job="edgeagent",instance="agent-a"'
    series = [
        {
            "series": f'{name}{{{labels},source="{source}"}}',
            "values": f"{before.get((name, source), 0):g} {value:g}x20",
        }
        for (name, source), value in sorted(after.items())
    ]

    def alert(source: str, summary: str, description: str) -> dict[str, Any]:
        return {
            "exp_labels": {
                "severity": "warning",
                "job": "edgeagent",
                "instance": "agent-a",
                "source": source,
            },
            "exp_annotations": {"summary": summary, "description": description},
        }

    overdue = [
        alert(
            source,
            f"Open hosting takedowns are overdue ({source} notices)",
            f"{value:g} open takedown(s) from {source} notices are past their deadline and "
            "still not resolved.",
        )
        for (name, source), value in sorted(after.items())
        if name == "edgeagent_takedown_open_overdue" and value > 0
    ]
    breached = [
        alert(
            source,
            f"Hosting takedown SLA breached ({source} notices)",
            f"{value - before[(name, source)]:g} takedown(s) from {source} notices passed their "
            "deadline in the last hour. See GET /v1/tickets and the takedown report.",
        )
        for (name, source), value in sorted(after.items())
        if name == "edgeagent_takedown_sla_breaches_total" and value > before[(name, source)]
    ]
    test = {
        "rule_files": [str(ALERT_RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    # Overdue fires once above zero for 15 minutes (from the 1st minute on).
                    {"eval_time": "14m", "alertname": "EdgeagentTakedownOverdue", "exp_alerts": []},
                    {
                        "eval_time": "17m",
                        "alertname": "EdgeagentTakedownOverdue",
                        "exp_alerts": overdue,
                    },
                    {
                        "eval_time": "5m",
                        "alertname": "EdgeagentTakedownSlaBreached",
                        "exp_alerts": breached,
                    },
                ],
            }
        ],
    }
    return json.dumps(test)  # YAML is a superset of JSON


def test_sla_metrics_from_the_daemon_fire_the_shipped_alerts(ntd: Ntd, tmp_path: Path) -> None:
    before = wait_for(
        "the takedown series",
        lambda: _takedown_samples(ntd) or None,
        timeout=60,
    )
    assert before[("edgeagent_takedown_sla_breaches_total", "internal")] == 0
    assert all(
        v == 0 for (name, _), v in before.items() if name == "edgeagent_takedown_sla_breaches_total"
    )
    three_hours_ago = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    ntd.decide(
        target="http://sla.hosted.test/overdue.html",
        reference="INT-SLA-1",
        source="internal",
        notice_received_at=three_hours_ago,
    )
    ticket = ntd.ticket("INT-SLA-1")

    def breached() -> dict[tuple[str, str], float] | None:
        now = _takedown_samples(ntd)
        # The counter moves when the breach is recorded, the gauges when the run ends.
        done = now.get(("edgeagent_takedown_sla_breaches_total", "internal")) == 1
        return now if done and now.get(("edgeagent_takedown_open_overdue", "internal")) else None

    after = wait_for("the breach to be counted", breached, timeout=120)
    assert after[("edgeagent_takedown_open_tickets", "internal")] == 1

    rules = tmp_path / "takedown-alerts.test.yml"
    rules.write_text(_rule_test(before, after), encoding="utf-8")
    result = subprocess.run(
        [require_binary("promtool"), "test", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout

    # Out of hours the escalation also reached the on-call rota (outside the team).
    def escalations() -> list[list[str]] | None:
        found = [
            rcpts
            for rcpts, m, _ in ntd.mails()
            if m["X-EdgeAgent-Ticket"] == str(ticket["id"]) and "ESCALATION" in str(m["Subject"])
        ]
        return found or None

    # The rota gets it addressed to itself alone, never to the customer.
    assert [ON_CALL] in wait_for("the escalation on call", escalations, timeout=60)


def test_a_police_domain_on_a_customers_address_opens_a_held_ticket(ntd: Ntd) -> None:
    """The police list's domain resolves (apex and www.) into cust-b's addresses: its
    case opens with the feed's jurisdiction and, being a police case, on hold."""
    ticket = ntd.ticket("police-list")
    assert (ticket["customer_id"], ticket["service_id"]) == ("cust-b", "web-2")
    assert (ticket["source"], ticket["jurisdiction"], ticket["hold"]) == (
        "law-enforcement",
        "NL",
        True,
    )
    (target,) = ticket["urls"]
    assert (target["scope"], target["url"]) == ("domain", "dom.hosted.test")
    assert sorted(target["addresses"]) == ["192.0.2.70", "192.0.2.71"]
    for rcpts, msg, raw in ntd.mails():
        if msg["X-EdgeAgent-Ticket"] == str(ticket["id"]):
            assert rcpts == [HOSTING]
            assert "noc@cust-b.example" not in raw


def _cli(ntd: Ntd, *args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGEAGENT_TOKEN"}
    if token:
        env["EDGEAGENT_TOKEN"] = ntd.tokens[token]
    return subprocess.run(
        [AGENT, *args, "-c", str(ntd.config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_a_days_work_from_the_cli_and_the_api(ntd: Ntd, tmp_path: Path) -> None:
    ntd.decide(target="http://sla.hosted.test/day.html", reference="HL-DAY-1", source="hotline")
    tid = ntd.ticket("HL-DAY-1")["id"]

    listed = _cli(ntd, "ticket", "list", "--open")
    assert listed.returncode == 0, listed.stderr
    assert any(
        line.split()[0] == str(tid) and "HL-DAY-1" in line for line in listed.stdout.splitlines()
    )
    shown = _cli(ntd, "ticket", "show", str(tid))
    assert shown.returncode == 0, shown.stderr
    assert "http://sla.hosted.test/day.html" in shown.stdout
    assert "allowed next    under-review" in shown.stdout

    # Changes need a token; the token's identity is the actor; roles as in the API.
    refused = _cli(ntd, "ticket", "transition", str(tid), "under-review", "--reason", "look")
    assert refused.returncode == 2
    assert "EDGEAGENT_TOKEN" in refused.stderr
    moved = _cli(
        ntd, "ticket", "transition", str(tid), "under-review", "--reason", "look", token="analyst"
    )
    assert moved.returncode == 0, moved.stderr
    assert "under-review" in moved.stdout
    token_file = tmp_path / "analyst.token"
    token_file.write_text(ntd.tokens["analyst"] + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    assigned = _cli(ntd, "ticket", "assign", str(tid), "analyst2", "--token-file", str(token_file))
    assert assigned.returncode == 0, assigned.stderr
    nobody = _cli(ntd, "ticket", "assign", str(tid), "nobody", token="analyst")
    assert nobody.returncode == 3
    assert "assignee" in nobody.stderr
    commented = _cli(
        ntd, "ticket", "comment", str(tid), "hosting team called back", token="analyst2"
    )
    assert commented.returncode == 0, commented.stderr
    denied = _cli(ntd, "ticket", "legal-hold", str(tid), "--reason", "court", token="analyst")
    assert denied.returncode == 3
    assert "needs supervisor" in denied.stderr
    held = _cli(ntd, "ticket", "legal-hold", str(tid), "--reason", "court", token="supervisor")
    assert held.returncode == 0, held.stderr

    status, body = ntd.call("GET", f"/v1/tickets/{tid}")
    assert (body["state"], body["assignee"], body["legal_hold"]) == (
        "under-review",
        "analyst2",
        True,
    )
    events = [(e["actor"], e["action"]) for e in body["events"]]
    assert ("analyst", "transition") in events
    assert ("analyst", "assign") in events
    assert ("analyst2", "comment") in events
    assert ("supervisor", "legal-hold") in events
    status, audit = ntd.call("GET", "/v1/audit", "supervisor")
    mine = [r for r in audit["items"] if r["subject"] == f"ticket:{tid}"]
    (comment,) = [r for r in mine if r["action"] == "ticket.comment"]
    assert set(comment["detail"]) == {"sha256", "chars"}  # never the text
    assert any(
        r["action"] == "auth.denied" and r["subject"] == "cli:ticket legal-hold"
        for r in audit["items"]
    )

    # The team's views: a person's work, and what falls due (dates with or without zone).
    status, mine_only = ntd.call("GET", "/v1/tickets?assignee=analyst2")
    assert [t["id"] for t in mine_only["items"]] == [tid]
    status, due = ntd.call("GET", "/v1/tickets?due_before=2999-01-01")
    assert status == 200, due
    deadlines = [t["deadline"] for t in due["items"]]
    assert tid in [t["id"] for t in due["items"]]
    assert deadlines == sorted(deadlines)
    status, none_due = ntd.call("GET", "/v1/tickets?due_before=2000-01-01T00:00%2B02:00")
    assert none_due["items"] == []
    status, bad = ntd.call("GET", "/v1/tickets?due_before=soon")
    assert (status, bad["error"]["field"]) == (400, "due_before")
    due_cli = _cli(ntd, "ticket", "list", "--due-before", "2999-01-01", "--json")
    assert tid in [t["id"] for t in json.loads(due_cli.stdout)]
    status, report = ntd.call("GET", "/v1/reports/takedown?from=2026-01-01")
    assert status == 200, report
