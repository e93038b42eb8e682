"""On-segment takedown detail through the daemon: ``edgeagent run`` inside a network
namespace (``ip netns exec``), with a real Unbound, an SMTP sink (aiosmtpd) and a webhook
sink in the same namespace (:mod:`tests.support.segment_peers`).

Topology in :mod:`tests.support.segment_netns`. Decisions go in through the API; the
daemon locates the URLs, looks up where each address sits on its segments (probing when
the kernel has no MAC), opens tickets and sends notices. Checked: the ticket in the API,
the mail the sink received, the webhook, the evidence record and the probe metrics.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent import AGENT, create_token
from tests.support.segment_netns import (
    CACHED,
    CACHED_MAC,
    FOREIGN,
    ROUTED,
    SERVER,
    SERVER6,
    SERVER_MAC,
    SILENT,
    Topology,
    in_ns,
    ip,
    ns_env,
    topology,
)
from tests.support.segment_peers import received_hooks, received_mails, running

pytestmark = [pytest.mark.integration, pytest.mark.netns]

API, METRICS = "http://127.0.0.1:8640", "http://127.0.0.1:9640"
RECORDS = [
    ("seg.hosted.test", "A", SERVER),
    ("seg.hosted.test", "AAAA", SERVER6),
    ("cached.hosted.test", "A", CACHED),
    ("routed.hosted.test", "A", ROUTED),
    ("silent.hosted.test", "A", SILENT),
]
CUSTOMERS = """prefix,customer_id,service_id,contact
192.0.2.0/25,cust-seg,rack-7,noc@cust-seg.example
2001:db8:7::/64,cust-seg,rack-7,noc@cust-seg.example
198.51.100.0/24,cust-routed,vm-3,noc@cust-routed.example
"""

# One HTTP request from inside the namespace: prints {"status", "body"}.
_HTTP = r"""
import json, sys, time, urllib.error, urllib.request
method, url, token, body, wait = sys.argv[1:6]
deadline = time.monotonic() + float(wait)
while True:
    req = urllib.request.Request(url, data=body.encode() or None, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw = resp.status, resp.read()
        break
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
text = raw.decode()
print(json.dumps({"status": status, "body": json.loads(text) if text[:1] in "[{" else text}))
"""


@dataclass
class Agent:
    topo: Topology
    directory: Path
    tokens: dict[str, str]

    def http(self, method: str, url: str, who: str = "", body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body) if body is not None else ""
        token = self.tokens.get(who, "")
        out = json.loads(in_ns(self.topo.agent_ns, _HTTP, method, url, token, data, "30"))
        return int(out["status"]), out["body"]

    def mails(self) -> dict[int, Any]:
        """The messages the SMTP sink received, by ticket id."""
        return {int(m.ticket): m.message for m in received_mails(self.directory / "peers")}

    def hooks(self) -> dict[int, Any]:
        return {int(h["ticket_id"]): h for h in received_hooks(self.directory / "peers")}


def _config(tmp: Path, peers: dict[str, Any], secret_file: Path) -> Path:
    (tmp / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    config = tmp / "edgeagent.toml"
    config.write_text(
        f"""
[agent]
state_dir = "{tmp / "state"}"
log_format = "json"

[takedown]
enabled = true
own_prefixes = ["192.0.2.0/25", "198.51.100.0/24", "2001:db8:7::/64"]
resolvers = [{{ host = "127.0.0.1", port = {peers["dns_port"]} }}]
probe = "when-not-cached"
probe_timeout_seconds = 1.0

[[takedown.customers]]
kind = "csv"
path = "customers.csv"

[takedown.notifiers.hosting-mail]
kind = "smtp"
host = "127.0.0.1"
port = {peers["smtp_port"]}
starttls = false  # the sink is plain SMTP, on the namespace's loopback
sender = "ntd@isp.example"
recipients = ["hosting@isp.example"]

[takedown.notifiers.ticket-hook]
kind = "webhook"
url = "{peers["webhook_url"]}"
secret_file = "{secret_file}"
""",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    secret = secrets.token_hex(32)
    secret_file = tmp_path / "webhook-hmac"
    secret_file.write_text(secret, encoding="utf-8")
    with (
        topology() as topo,
        running(
            tmp_path / "peers",
            RECORDS,
            secret.encode(),
            prefix=("ip", "netns", "exec", topo.agent_ns),
            env=ns_env(),
        ) as peers,
    ):
        config = _config(tmp_path, peers, secret_file)
        tokens = {role: create_token(config, role, role) for role in ("analyst", "supervisor")}
        log = (tmp_path / "daemon.log").open("w")
        daemon = subprocess.Popen(
            ["ip", "netns", "exec", topo.agent_ns, AGENT, "run", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            found = Agent(topo, tmp_path, tokens)
            status, _ = found.http("GET", f"{METRICS}/healthz")
            assert status == 200
            yield found
        finally:
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            log.close()


def _decide(agent: Agent, url: str, reference: str) -> None:
    decision = {
        "target": url,
        "scope": "url",
        "action": "block",
        "reason": "hotline report",
        "reference": reference,
        "source": "hotline",
    }
    status, body = agent.http("POST", f"{API}/v1/decisions", "analyst", decision)
    assert status == 201, body


def _tickets(agent: Agent, count: int) -> dict[str, dict[str, Any]]:
    """The daemon's tickets by case reference, once there are ``count`` of them."""
    deadline = time.monotonic() + 60
    while True:
        status, body = agent.http("GET", f"{API}/v1/tickets", "analyst")
        assert status == 200, body
        tickets = {t["reference"]: t for t in body["items"]}
        done = all(t["last_notified_at"] for t in tickets.values())
        if (len(tickets) >= count and done) or time.monotonic() > deadline:
            return tickets
        time.sleep(0.5)


def _metric(text: str, name: str) -> float:
    match = re.search(rf"(?m)^{re.escape(name)} (\S+)$", text)
    return float(match.group(1)) if match else 0.0


def test_tickets_record_where_the_addresses_sit(agent: Agent) -> None:
    cases = {
        "CASE-SEG": "http://seg.hosted.test/listed/1.html",
        "CASE-CACHED": "http://cached.hosted.test/listed/2.html",
        "CASE-ROUTED": "http://routed.hosted.test/listed/3.html",
        "CASE-SILENT": "http://silent.hosted.test/listed/4.html",
    }
    for reference, url in cases.items():
        _decide(agent, url, reference)
    tickets = _tickets(agent, len(cases))
    assert set(tickets) == set(cases)

    # On the segment, not in the kernel's cache: probed (ARP and ND), both answered.
    seg_id = tickets["CASE-SEG"]["id"]
    status, seg = agent.http("GET", f"{API}/v1/tickets/{seg_id}", "analyst")
    assert status == 200
    where = {d["address"]: d for d in seg["segments"]}
    assert set(where) == {SERVER, SERVER6}
    for address in (SERVER, SERVER6):
        d = where[address]
        assert (d["on_segment"], d["interface"], d["mac"]) == (
            True,
            agent.topo.agent_if,
            SERVER_MAC,
        )
        assert (d["learned_from"], d["probe"], d["next_hop"]) == ("probe", "answered", "")
        assert d["learned_at"]

    # Cached: the kernel's entry, no probe.
    (cached,) = tickets["CASE-CACHED"]["segments"]
    assert (cached["mac"], cached["learned_from"], cached["probe"]) == (CACHED_MAC, "cache", "")
    assert cached["neighbour_state"] == "permanent"

    # Behind a router: the next hop, no probe.
    (routed,) = tickets["CASE-ROUTED"]["segments"]
    assert tickets["CASE-ROUTED"]["customer_id"] == "cust-routed"
    assert (routed["on_segment"], routed["next_hop"], routed["interface"]) == (
        False,
        SERVER,
        agent.topo.agent_if,
    )
    assert (routed["mac"], routed["probe"]) == ("", "")

    # Silent: the probe timed out, and the ticket opened and was notified all the same.
    silent_ticket = tickets["CASE-SILENT"]
    (silent,) = silent_ticket["segments"]
    assert (silent["on_segment"], silent["mac"], silent["probe"]) == (True, "", "timed-out")
    assert silent_ticket["notify_failures"] == 0

    # The mail the SMTP sink received says where the addresses sit.
    mails = agent.mails()
    text = mails[seg_id].get_payload(decode=True).decode()
    assert f"{SERVER}: on the segment of {agent.topo.agent_if}, MAC {SERVER_MAC}" in text
    assert "probe answered" in text
    cached_text = mails[tickets["CASE-CACHED"]["id"]].get_payload(decode=True).decode()
    assert f"MAC {CACHED_MAC} (neighbour cache, permanent" in cached_text
    routed_text = mails[tickets["CASE-ROUTED"]["id"]].get_payload(decode=True).decode()
    assert f"{ROUTED}: not on a local segment; next hop {SERVER}" in routed_text
    silent_text = mails[silent_ticket["id"]].get_payload(decode=True).decode()
    assert f"{SILENT}: on the segment of {agent.topo.agent_if}, MAC unknown" in silent_text

    # The webhook carries the same detail.
    hook = agent.hooks()[seg_id]
    assert {d["address"]: d["mac"] for d in hook["segments"]} == {
        SERVER: SERVER_MAC,
        SERVER6: SERVER_MAC,
    }

    # The evidence record keeps it.
    status, bundle = agent.http("GET", f"{API}/v1/tickets/{seg_id}/evidence", "supervisor")
    assert status == 200
    kept = {d["address"]: d for d in json.loads(bundle["files"]["segments.json"])}
    assert kept[SERVER]["interface"] == agent.topo.agent_if
    assert kept[SERVER]["mac"] == SERVER_MAC
    assert "segments.json" in bundle["manifest"]["files"]

    status, metrics = agent.http("GET", f"{METRICS}/metrics")
    assert status == 200
    assert _metric(metrics, "edgeagent_takedown_probes_sent_total") == 3
    assert _metric(metrics, "edgeagent_takedown_probes_answered_total") == 2
    assert _metric(metrics, "edgeagent_takedown_probes_timed_out_total") == 1
    assert "hosted.test" not in metrics
    assert SERVER not in metrics  # no address in a label


def test_a_probe_outside_own_prefixes_is_refused_and_counted(agent: Agent) -> None:
    url = f"{API}/v1/segment?address={FOREIGN}"
    status, detail = agent.http("GET", url, "analyst")
    assert status == 200, detail
    assert (detail["on_segment"], detail["probe"], detail["mac"]) == (True, "refused", "")
    status, own = agent.http("GET", f"{API}/v1/segment?address={SERVER}", "analyst")
    assert (own["probe"], own["mac"]) == ("answered", SERVER_MAC)
    status, _ = agent.http("GET", f"{API}/v1/segment?address=not-an-address", "analyst")
    assert status == 400

    status, metrics = agent.http("GET", f"{METRICS}/metrics")
    refused = 'edgeagent_takedown_probes_refused_total{reason="outside-own-prefixes"}'
    assert _metric(metrics, refused) == 1
    assert _metric(metrics, "edgeagent_takedown_probes_sent_total") == 1
    # Nothing was sent for the foreign address: the agent's kernel never heard of it.
    assert ip("-n", agent.topo.agent_ns, "neigh", "show", FOREIGN).strip() == ""
    assert agent.directory.joinpath("daemon.log").read_text().count(FOREIGN) == 0
