"""The hosting team's mail server and webhook receiver hang under a running agent.

Real peers: an SMTP sink (aiosmtpd) and an HMAC-checking webhook sink in one process
(:mod:`tests.support.segment_peers`, with a real Unbound the takedown locator asks), and
``edgeagent run`` with takedown enabled. The sinks' process is stopped (SIGSTOP: the
kernel still accepts the connections, nobody answers) before a decision opens a ticket:

- every try times out after the notifier's ``timeout_seconds``, is retried with backoff
  and jitter, and the notice is tried again ``notify_retry_seconds`` later; the failures
  are counted per channel (``edgeagent_takedown_notify_failures_total``) and the ticket
  waits (``edgeagent_takedown_notices_pending``);
- the API keeps answering fast, and a decision made meanwhile is published at once;
- when the sinks answer again the notice is delivered with no new decision, once per
  channel: one mail, and on the webhook one idempotency key (a try that timed out after
  its request was sent may still arrive; a receiver drops the repeat by its key).

The figures go to ``var/reliability/faults.json`` (``hang-smtp``, ``hang-webhook``).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent import create_token, http_json, running_agent
from tests.support.api import decision_body
from tests.support.faults import api_latencies, hung, p99, zone_serial, zonefile_agent
from tests.support.figures import record
from tests.support.polling import wait_for
from tests.support.segment_peers import received_hooks, received_mails, running, takedown_toml

pytestmark = pytest.mark.integration

HANG_SECONDS = 16
TIMEOUT = 1  # each notifier's timeout_seconds
RECORDS = [("shop.hosted.test", "A", "192.0.2.10")]
CHANNELS = ("hosting-mail", "ticket-hook")


def takedown_config(directory: Path, peers: dict[str, Any], secret_file: Path) -> str:
    keys = "notify_attempts = 2\nnotify_backoff_seconds = 0.5\nnotify_retry_seconds = 2\n"
    timeout = f"timeout_seconds = {TIMEOUT}\n"
    return (
        takedown_toml(directory, peers, keys=keys, mail_keys=timeout)
        + f"""
[takedown.notifiers.ticket-hook]
kind = "webhook"
url = "{peers["webhook_url"]}"
secret_file = "{secret_file}"
timeout_seconds = {TIMEOUT}
"""
    )


def metric(metrics: str, line_start: str) -> float:
    _, text = http_json("GET", f"{metrics}/metrics")
    for line in str(text).splitlines():
        if line.startswith(line_start):
            return float(line.split()[-1])
    return 0.0


def failures(metrics: str, channel: str) -> float:
    return metric(metrics, f'edgeagent_takedown_notify_failures_total{{channel="{channel}"}}')


def test_hanging_mail_server_and_webhook_are_retried_and_get_the_notice_once(
    tmp_path: Path,
) -> None:
    secret = secrets.token_hex(32)
    secret_file = tmp_path / "webhook-hmac"
    secret_file.write_text(secret)
    with running(tmp_path / "peers", RECORDS, secret.encode()) as peers:
        agent = zonefile_agent(tmp_path / "agent")
        with agent.config.open("a") as f:
            f.write(takedown_config(tmp_path, peers, secret_file))
        analyst = create_token(agent.config, "analyst", "hang-analyst")
        noc = create_token(agent.config, "noc", "hang-noc")
        metrics = f"http://127.0.0.1:{agent.metrics_port}"

        def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            return http_json(method, f"{agent.api}{path}", analyst, body)

        def ticket() -> dict[str, Any] | None:
            code, body = call("GET", "/v1/tickets?limit=10")
            assert code == 200, body
            return body["items"][0] if body["items"] else None

        with running_agent(agent.config, agent.metrics_port, tmp_path / "agent.log"):
            wait_for("the first zone", agent.zone.exists, 20)
            baseline = api_latencies(agent.api, noc, 1)
            with hung(peers["pid"]):
                started = time.monotonic()
                listed = decision_body("http://shop.hosted.test/listed.html", scope="url")
                code, body = call("POST", "/v1/decisions", listed)
                assert code == 201, body
                assert time.monotonic() - started < 1.0
                opened = wait_for("the ticket", ticket, 20)
                # Two deliveries (the notice, then its retry), two tries each, per channel.
                wait_for(
                    "the notice retried on both channels",
                    lambda: min(failures(metrics, c) for c in CHANNELS) >= 4,
                    HANG_SECONDS + 4,
                )
                assert metric(metrics, "edgeagent_takedown_notices_pending") == 1
                # The API and publishing do not wait for the hung peers.
                serial = zone_serial(agent.zone)
                code, body = call("POST", "/v1/decisions", decision_body("hang-other.example"))
                assert code == 201, body
                wait_for("the publish", lambda: zone_serial(agent.zone) > serial, 3)
                during = api_latencies(agent.api, noc, 2)
                waiting = ticket()
                assert waiting is not None
                assert waiting["last_notified_at"] is None
                assert waiting["notify_failures"] >= 1
                failed = {c: int(failures(metrics, c)) for c in CHANNELS}
                hang = max(HANG_SECONDS - (time.monotonic() - started), 0)
                time.sleep(hang)
                continued = time.monotonic()
            notified = wait_for(
                "the notice delivered (no new decision)",
                lambda: (t := ticket()) and t["last_notified_at"] and t,
                30,
            )
            recovery = time.monotonic() - continued
            assert metric(metrics, "edgeagent_takedown_notices_pending") == 0
        mails = received_mails(tmp_path / "peers")
        hooks = received_hooks(tmp_path / "peers")
    assert notified["id"] == opened["id"]
    assert len(mails) == 1, [m.message["X-EdgeAgent-Idempotency-Key"] for m in mails]
    assert mails[0].ticket == str(opened["id"])
    assert {h["ticket_id"] for h in hooks} == {opened["id"]}
    keys = {h["idempotency_key"] for h in hooks}
    assert len(keys) == 1, keys
    assert p99(during) < max(0.5, 5 * p99(baseline)), (p99(baseline), p99(during))
    common = {
        "hang_seconds": round(continued - started, 1),
        "timeout_seconds": TIMEOUT,
        "api_p99_ms_before": round(p99(baseline) * 1000, 1),
        "api_p99_ms_during": round(p99(during) * 1000, 1),
        "recovery_seconds": round(recovery, 1),
    }
    record("faults", "hang-smtp", {**common, "failed_tries": failed["hosting-mail"], "mails": 1})
    record(
        "faults",
        "hang-webhook",
        {**common, "failed_tries": failed["ticket-hook"], "receipts": len(hooks), "keys": 1},
    )
