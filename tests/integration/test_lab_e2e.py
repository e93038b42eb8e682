"""``edgeagent lab`` end to end, as a newcomer uses it.

The lab runs as a subprocess (its own session, so its process group is ours to signal);
everything is real: named (hidden primary, secondary resolver, authoritative lab.test),
Unbound fed over HTTP, Squid with the helper, sniproxy, the origin, SMTP and webhook
sinks, the daemon, and (``--fleet``) six rendered resolvers of every kind behind two
hidden primaries and regional distribution secondaries. The tests run in file order and
share the lab; the last one stops it with SIGTERM and checks that nothing is left behind.
"""

from __future__ import annotations

import html
import http.client
import imaplib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dkim
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from edgeagent.intake.entryref import is_ref
from edgeagent.takedown.notifiers.webhook import verify_webhook_signature
from tests.support.binaries import require_binary
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration

START_TIMEOUT = 60.0


class Lab:
    def __init__(self, proc: subprocess.Popen[bytes], directory: Path, info: dict[str, Any]):
        self.proc = proc
        self.directory = directory
        self.info = info

    def api(self, method: str, path: str, body: Any = None, role: str = "analyst") -> Any:
        req = urllib.request.Request(
            self.info["api"] + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {self.info['tokens'][role]}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def decide(self, target: str, scope: str, reference: str) -> dict[str, Any]:
        body = {
            "target": target,
            "scope": scope,
            "action": "block",
            "reason": "lab end-to-end test",
            "reference": reference,
            "source": "hotline",
        }
        out: dict[str, Any] = self.api("POST", "/v1/decisions", body)
        assert out["status"] == "active"
        return out


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    for program in ("named", "unbound", "squid", "sniproxy"):
        require_binary(program)
    # Not under pytest's 0700 tmp tree: Squid's helper (user proxy) must reach the index.
    base = Path(tempfile.mkdtemp(prefix="edgeagent-lab-e2e-"))
    base.chmod(0o711)  # searchable, not listable
    directory = base / "lab"
    out = (base / "lab.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeagent.cli", "lab", "--dir", str(directory), "--fleet"],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, signalled as a whole below
    )
    out.close()
    try:
        info_path = directory / "lab.json"

        def ready() -> dict[str, Any] | None:
            if proc.poll() is not None:
                log = (base / "lab.out").read_text(errors="replace")
                raise AssertionError(f"lab exited {proc.returncode}:\n{log[-4000:]}")
            return json.loads(info_path.read_text()) if info_path.exists() else None

        info = wait_for("lab.json", ready, START_TIMEOUT)
        yield Lab(proc, directory, info)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------------ helpers


def ask(resolver: dict[str, Any], name: str) -> dns.message.Message:
    q = dns.message.make_query(name, dns.rdatatype.A)
    return dns.query.udp(q, resolver["host"], port=resolver["port"], timeout=2)


def addresses(r: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset}


def get(host: str, port: int, path: str, host_header: str | None = None) -> tuple[int, str, str]:
    """One GET; returns (status, Location, body). ``path`` may be absolute (proxy form)."""
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        headers = {"Host": host_header} if host_header else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Location") or "", resp.read().decode(errors="replace")
    finally:
        conn.close()


def follow_to_stop_page(status: int, location: str) -> int:
    """Squid refuses a listed URL with a redirect to the agent's stop page: follow it."""
    return stop_page(status, location)[0]


def stop_page(status: int, location: str) -> tuple[int, str]:
    """``(status, body)`` of the stop page Squid redirected to."""
    assert status == 302, status
    assert "/blocked" in location
    parts = urlsplit(location)
    assert parts.hostname is not None
    stop_status, _, body = get(parts.hostname, parts.port or 80, f"{parts.path}?{parts.query}")
    assert "blocked" in body.lower()
    return stop_status, body


# -------------------------------------------------------------------------------- tests


def test_lab_json_has_every_key(lab: Lab) -> None:
    info = lab.info
    for key in ("api", "console", "metrics", "tokens", "resolvers", "sites", "origin", "stop_page"):
        assert info[key], key
    assert info["console"] == info["api"] + "/console/"
    assert {r["name"] for r in info["resolvers"]} == {"bind-secondary", "unbound"}
    assert set(info["tokens"]) == {"noc", "analyst", "supervisor", "admin"}
    assert Path(info["rpz_zone_file"]).is_file()
    assert info["proxy"]["port"] > 0
    assert info["hosted_example"]["customer"]
    assert info["report_page"].endswith("/report")
    assert info["appeal_page"].endswith("/appeal")
    mailbox = info["mailbox"]
    for key in ("imap", "user", "password", "trusted_sender", "dkim_key", "dkim_selector"):
        assert mailbox[key], key
    with urllib.request.urlopen(info["report_page"], timeout=5) as resp:
        assert resp.status == 200
    # --fleet: the lab's resolvers and six rendered ones of every kind, the lab's proxy.
    fleet = info["fleet"]
    assert len(fleet["resolvers"]) == 2 + 6
    assert {r["kind"] for r in fleet["resolvers"]} == {"bind", "unbound", "powerdns", "knot"}
    assert all({"name", "kind", "region", "host", "port"} <= set(r) for r in fleet["resolvers"])
    assert fleet["proxies"] == [{"name": "squid", **info["proxy"]}]
    # The sites start unblocked: they resolve to the origin at both resolvers.
    origin = urlsplit(info["origin"]).hostname
    for r in info["resolvers"]:
        assert addresses(ask(r, info["sites"][0])) == {origin}


def test_url_decision_diverts_the_site_and_blocks_only_that_page(lab: Lab) -> None:
    info = lab.info
    site, proxy = info["sites"][0], info["proxy"]
    lab.decide(f"http://{site}/gallery/listed.html", "url", "LAB-E2E-URL")
    for r in info["resolvers"]:

        def diverted(r: dict[str, Any] = r) -> bool:
            answer = ask(r, site)
            assert answer.rcode() == dns.rcode.NOERROR  # never NXDOMAIN for a url entry
            return addresses(answer) == {proxy["host"]}

        wait_for(f"{site} diverted at {r['name']}", diverted, 5)
    address = next(iter(addresses(ask(info["resolvers"][0], site))))
    port = info["web_port"]
    # No proxy setting: the client sends origin-form requests to the address it resolved.
    # The helper picks the new index up within about a second (and Squid caches its
    # answers for one): poll briefly.

    def redirected() -> tuple[int, str, str] | None:
        got = get(address, port, "/gallery/listed.html", site)
        return got if got[0] == 302 else None

    status, location, _ = wait_for("the stop page redirect", redirected, 15)
    stop_status, body = stop_page(status, location)
    assert stop_status == 451
    # The appeal link names the blocking entry by its opaque reference (Squid's helper
    # reads the agent's appeal key), never by the URL, and opens the lab's appeal page.
    link = re.search(r'id="appeal" href="([^"]+)"', body)
    assert link is not None, body
    appeal = html.unescape(link.group(1))
    assert appeal.startswith(info["appeal_page"] + "?ref="), appeal
    assert is_ref(appeal.rpartition("=")[2])
    assert "listed" not in appeal
    with urllib.request.urlopen(appeal, timeout=5) as resp:
        assert appeal.rpartition("=")[2] in resp.read().decode()
    status, _, body = get(address, port, "/gallery/sibling.html", site)
    assert status == 200
    assert "Origin content for /gallery/sibling.html" in body
    # With the explicit proxy (curl -x).
    status, location, _ = get(proxy["host"], proxy["port"], f"http://{site}/gallery/listed.html")
    assert follow_to_stop_page(status, location) == 451
    status, _, body = get(proxy["host"], proxy["port"], f"http://{site}/gallery/sibling.html")
    assert status == 200
    assert "Origin content for /gallery/sibling.html" in body


def test_domain_decision_blocks_then_revoke_restores(lab: Lab) -> None:
    info = lab.info
    site = info["sites"][1]
    origin = urlsplit(info["origin"]).hostname
    decision = lab.decide(site, "domain", "LAB-E2E-DOMAIN")

    def nxdomain(r: dict[str, Any]) -> Callable[[], bool]:
        def blocked() -> bool:
            # Until the policy arrives a fleet resolver (no forwarders) asks the lab's
            # loopback root, which refuses the name: SERVFAIL.
            try:
                return ask(r, site).rcode() == dns.rcode.NXDOMAIN
            except dns.exception.Timeout:
                return False

        return blocked

    def resolves(r: dict[str, Any]) -> Callable[[], bool]:
        return lambda: addresses(ask(r, site)) == {origin}

    for r in info["fleet"]["resolvers"]:  # the lab's two and the rendered fleet's
        wait_for(f"NXDOMAIN for {site} at {r['name']}", nxdomain(r), 10)
    lab.api("POST", f"/v1/decisions/{decision['id']}/revoke", {"reason": "test over"}, "supervisor")
    for r in info["resolvers"]:
        wait_for(f"{site} resolving again at {r['name']}", resolves(r), 5)


def test_hosted_url_opens_a_ticket_with_mail_and_signed_webhook(lab: Lab) -> None:
    info = lab.info
    hosted = info["hosted_example"]
    lab.decide(f"http://{hosted['host']}/files/listed.html", "url", "LAB-E2E-HOSTED")

    def ticket() -> dict[str, Any] | None:
        items = lab.api("GET", "/v1/tickets")["items"]
        mine = [t for t in items if t["customer_id"] == hosted["customer"]]
        return mine[0] if mine else None

    found = wait_for("a takedown ticket", ticket, 60)
    assert found["customer_id"] == hosted["customer"]
    mails = wait_for(
        "a mail in the SMTP sink", lambda: sorted(Path(info["smtp_sink"]).glob("*.eml")), 60
    )
    assert b"LAB-E2E-HOSTED" in mails[0].read_bytes()
    hooks = wait_for(
        "a webhook delivery", lambda: sorted(Path(info["webhook_sink"]).glob("[0-9]*.json")), 60
    )
    record = json.loads(hooks[0].read_text())
    assert record["signature_valid"] is True
    secret = (lab.directory / "secrets" / "webhook-hmac").read_text().strip().encode()
    assert verify_webhook_signature(
        secret, record["timestamp"], record["body"].encode(), record["signature"], max_age=3600
    )
    assert record["payload"]["customer_id"] == hosted["customer"]
    assert not list(Path(info["webhook_sink"]).glob("rejected-*.json"))


def _notice(lab: Lab, reference: str, url: str, *, signed: bool) -> bytes:
    """A notice as a newcomer writes and signs it, from what ``lab.json`` says."""
    box = lab.info["mailbox"]
    msg = EmailMessage()
    msg["From"] = box["trusted_sender"]
    msg["To"] = box["user"]
    msg["Subject"] = f"Notice {reference}"
    msg["Message-ID"] = make_msgid(domain="hotline.lab.test")
    msg.set_content(f"Please block:\n{url}\n")
    raw = msg.as_bytes().replace(b"\n", b"\r\n")
    if not signed:
        return raw
    key = Path(box["dkim_key"]).read_bytes()
    domain = box["trusted_sender"].rpartition("@")[2]
    return dkim.sign(raw, box["dkim_selector"].encode(), domain.encode(), key) + raw


def test_mailed_notices_one_accepted_one_quarantined(lab: Lab) -> None:
    box = lab.info["mailbox"]
    host, port = box["imap"].rsplit(":", 1)
    tls = ssl.create_default_context(cafile=box["tls_certificate"])
    site = lab.info["sites"][2]
    with imaplib.IMAP4_SSL(host, int(port), ssl_context=tls) as imap:
        imap.login(box["user"], box["password"])
        for raw in (
            _notice(lab, "LAB-77", f"http://{site}/mailed.html", signed=True),
            _notice(lab, "LAB-78", f"http://{site}/unsigned.html", signed=False),
        ):
            assert imap.append("INBOX", None, None, raw)[0] == "OK"

    def decided() -> list[Any] | None:
        found = lab.api("GET", "/v1/decisions?reference=LAB-77")["items"]
        return found or None

    [decision] = wait_for("the signed notice's decision", decided, 20)
    assert (decision["source"], decision["status"]) == ("hotline", "active")

    def quarantined() -> list[Any] | None:
        items = lab.api("GET", "/v1/intake?channel=mail-quarantine")["items"]
        return items or None

    [item] = wait_for("the unsigned notice in quarantine", quarantined, 20)
    assert item["content"]["quarantine_reason"] == "DKIM: not signed"
    assert lab.api("GET", "/v1/decisions?reference=LAB-78")["items"] == []

    # The hotline's acknowledgement reached the SMTP sink; the quarantined one got none.
    def acknowledged() -> list[str] | None:
        mails = [p.read_text() for p in Path(lab.info["smtp_sink"]).glob("*.eml")]
        return [m for m in mails if "Case reference: LAB-77" in m] or None

    [ack] = wait_for("the acknowledgement", acknowledged, 10)
    assert site not in ack
    assert not [p for p in Path(lab.info["smtp_sink"]).glob("*.eml") if "LAB-78" in p.read_text()]


def test_status_metrics_and_readiness(lab: Lab) -> None:
    info = lab.info
    status = lab.api("GET", "/v1/status")
    assert status["policy_loaded"] is True
    rpz = status["publishers"]["rpz"]["publishers"]
    assert all(p["up"] for p in rpz.values()), rpz
    base = info["metrics"].removesuffix("/metrics")

    def canaries_ok() -> bool:
        with urllib.request.urlopen(info["metrics"], timeout=5) as resp:
            text = resp.read().decode()
        lines = [ln for ln in text.splitlines() if ln.startswith("edgeagent_rpz_canary_ok{")]
        proxy = [ln for ln in text.splitlines() if ln.startswith("edgeagent_proxy_canary_ok{")]
        ok = all(ln.endswith(" 1.0") for ln in lines + proxy)
        return ok and len(lines) == len(info["fleet"]["resolvers"]) and len(proxy) == 1

    wait_for("canary ok at every resolver and the proxy", canaries_ok, 20)
    with urllib.request.urlopen(base + "/readyz", timeout=5) as resp:
        assert resp.status == 200


def test_sigterm_stops_every_process_and_removes_the_directory(lab: Lab) -> None:
    assert lab.proc.poll() is None
    os.killpg(lab.proc.pid, signal.SIGTERM)
    assert lab.proc.wait(timeout=30) == 0
    left = subprocess.run(
        ["pgrep", "-f", str(lab.directory)], capture_output=True, text=True, check=False
    )
    assert left.stdout.strip() == "", left.stdout
    assert not lab.directory.exists()
