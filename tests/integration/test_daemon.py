"""The daemon as a newcomer meets it: token, decision with HTTP, status, metrics, revoke,
audit verify; a broken config on SIGHUP keeps the old one; SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent import create_token, http_json, running_agent
from tests.support.pki import issue, write_pair
from tests.support.ports import free_port

pytestmark = pytest.mark.integration


def test_newcomer_flow_reload_and_stop(tmp_path: Path) -> None:
    api_port, metrics_port = free_port(udp=False), free_port(udp=False)
    config = tmp_path / "edgeagent.toml"
    good = (
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\nlog_format = "json"\n'
        f"[api]\nport = {api_port}\n[metrics]\nport = {metrics_port}\n"
    )
    config.write_text(good)

    analyst = create_token(config, "analyst", "ana")
    supervisor = create_token(config, "supervisor", "sam")
    with running_agent(config, metrics_port, tmp_path / "daemon.log") as proc:
        api = f"http://127.0.0.1:{api_port}"

        status, created = http_json(
            "POST",
            f"{api}/v1/decisions",
            analyst,
            {
                "target": "http://Mixed.example/listed/page.html",
                "scope": "url",
                "action": "block",
                "reason": "hotline report",
                "reference": "CASE-42",
                "source": "hotline",
            },
        )
        assert status == 201, created
        assert created["target"] == "http://mixed.example/listed/page.html"
        assert created["status"] == "active"

        deadline = time.monotonic() + 10
        while True:
            _, st = http_json("GET", f"{api}/v1/status", analyst)
            if st["entries"]["by_scope"].get("url") == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert st["entries"]["by_scope"]["url"] == 1
        _, metrics = http_json("GET", f"http://127.0.0.1:{metrics_port}/metrics")
        assert 'edgeagent_policy_entries{scope="url"} 1.0' in metrics
        assert "mixed.example" not in metrics  # never an entry in a label

        status, _ = http_json(
            "POST", f"{api}/v1/decisions/{created['id']}/revoke", analyst, {"reason": "x"}
        )
        assert status == 403  # revoking is a supervisor's
        status, revoked = http_json(
            "POST", f"{api}/v1/decisions/{created['id']}/revoke", supervisor, {"reason": "appeal"}
        )
        assert (status, revoked["status"]) == (200, "revoked")
        status, feeds = http_json("GET", f"{api}/v1/feeds", analyst)
        assert (status, feeds) == (200, {"feeds": {}})  # the feed routes are served
        status, verified = http_json("GET", f"{api}/v1/audit/verify", supervisor)
        assert status == 200
        assert verified["ok"] is True

        # A broken config on SIGHUP: logged, the old one stays, the API keeps answering.
        config.write_text(good + "[api]\nbogus = 1\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert proc.poll() is None
        status, _ = http_json("GET", f"{api}/v1/status", analyst)
        assert status == 200
        config.write_text(good)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    lines = (tmp_path / "daemon.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(r["msg"] == "reload refused, old config stays" for r in records)
    assert any(r["msg"] == "stopped" for r in records)
    text = "\n".join(lines)
    assert "mixed.example" not in text.lower()  # no list entry in the logs


def test_mtls_is_a_config_switch(tmp_path: Path) -> None:
    """``[api] tls_cert_file/tls_key_file/client_ca_file/require_client_cert`` in the
    daemon: no client certificate, no connection; with one, the token still decides."""
    import ssl

    ca_cert, ca_key = issue("edgeagent test CA", None, ca=True)
    write_pair(tmp_path / "ca", ca_cert, ca_key)
    server_cert, server_key = issue("api.example", (ca_cert.subject, ca_key), server=True)
    write_pair(tmp_path / "server", server_cert, server_key)
    client_cert, client_key = issue("ntd.example", (ca_cert.subject, ca_key))
    write_pair(tmp_path / "client", client_cert, client_key)

    api_port, metrics_port = free_port(udp=False), free_port(udp=False)
    config = tmp_path / "edgeagent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        f"[api]\nport = {api_port}\n"
        f'tls_cert_file = "{tmp_path / "server.crt"}"\n'
        f'tls_key_file = "{tmp_path / "server.key"}"\n'
        f'client_ca_file = "{tmp_path / "ca.crt"}"\n'
        "require_client_cert = true\n"
        f"[metrics]\nport = {metrics_port}\n"
    )
    token = create_token(config, "noc", "noc")
    with running_agent(config, metrics_port):
        url = f"https://127.0.0.1:{api_port}/v1/status"
        bare = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        with_cert = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        with_cert.load_cert_chain(str(tmp_path / "client.crt"), str(tmp_path / "client.key"))

        def get(ctx: ssl.SSLContext, bearer: str | None) -> int:
            req = urllib.request.Request(url)
            if bearer:
                req.add_header("Authorization", f"Bearer {bearer}")
            try:
                with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        try:
            get(bare, token)
        except (urllib.error.URLError, ssl.SSLError, ConnectionError):
            pass  # refused in the handshake: no client certificate
        else:
            raise AssertionError("a client without a certificate got an answer")
        assert get(with_cert, None) == 401
        assert get(with_cert, token) == 200


def test_sighup_adds_changes_and_removes_feeds(tmp_path: Path) -> None:
    """Feeds in a reloaded config take effect without a restart: a new feed is synced at
    once, a removed one leaves the policy, the feed list and the metrics."""
    api_port, metrics_port = free_port(udp=False), free_port(udp=False)
    config = tmp_path / "edgeagent.toml"
    base = (
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\nlog_format = "json"\n'
        f"[api]\nport = {api_port}\n[metrics]\nport = {metrics_port}\n"
    )
    listing = tmp_path / "domains.txt"
    listing.write_text("one.reload.test\ntwo.reload.test\n")
    feed = (
        '[feeds.police-reload]\nkind = "domain-list"\nsource = "law-enforcement"\n'
        f'interval_seconds = 3600\npath = "{listing}"\nformat = "lines"\n'
    )
    config.write_text(base)
    token = create_token(config, "analyst", "ana")
    api = f"http://127.0.0.1:{api_port}"

    def domains() -> int:
        _, st = http_json("GET", f"{api}/v1/status", token)
        return int(st["entries"]["by_scope"].get("domain", 0))

    def until(check: Any) -> None:
        deadline = time.monotonic() + 15
        while not check():
            assert time.monotonic() < deadline, "not within 15 s"
            time.sleep(0.1)

    with running_agent(config, metrics_port, tmp_path / "daemon.log") as proc:
        assert domains() == 0

        config.write_text(base + feed)  # a new feed
        proc.send_signal(signal.SIGHUP)
        until(lambda: domains() == 2)
        _, feeds = http_json("GET", f"{api}/v1/feeds", token)
        assert feeds["feeds"]["police-reload"]["entries"] == 2

        listing.write_text("one.reload.test\ntwo.reload.test\nthree.reload.test\n")
        config.write_text(base + feed.replace("3600", "1800"))  # a changed feed: re-synced
        proc.send_signal(signal.SIGHUP)
        until(lambda: domains() == 3)

        config.write_text(base)  # removed
        proc.send_signal(signal.SIGHUP)
        until(lambda: domains() == 0)
        _, feeds = http_json("GET", f"{api}/v1/feeds", token)
        assert feeds == {"feeds": {}}
        _, metrics = http_json("GET", f"http://127.0.0.1:{metrics_port}/metrics")
        assert 'feed="police-reload"' not in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    records = [
        json.loads(line)
        for line in (tmp_path / "daemon.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert any(r["msg"] == "feeds reloaded" for r in records)


def test_a_decision_stops_being_enforced_within_a_second_of_its_expiry(tmp_path: Path) -> None:
    """The expire pass runs every minute; a timer armed for the next ``expires_at`` ends a
    decision on time: its entry leaves the policy about a second after it expires."""
    from datetime import UTC, datetime, timedelta

    api_port, metrics_port = free_port(udp=False), free_port(udp=False)
    config = tmp_path / "edgeagent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\nlog_format = "json"\n'
        f"[api]\nport = {api_port}\n[metrics]\nport = {metrics_port}\n"
    )
    token = create_token(config, "analyst", "ana")
    api = f"http://127.0.0.1:{api_port}"

    def create(target: str, seconds: float) -> tuple[int, datetime]:
        expires = datetime.now(UTC) + timedelta(seconds=seconds)
        body = {
            "target": target,
            "scope": "host",
            "action": "block",
            "reason": "hotline report",
            "reference": "CASE-7",
            "source": "hotline",
            "expires_at": expires.isoformat(),
        }
        status, made = http_json("POST", f"{api}/v1/decisions", token, body)
        assert (status, made["status"]) == (201, "active"), made
        return int(made["id"]), expires

    def hosts() -> int:
        _, st = http_json("GET", f"{api}/v1/status", token)
        return int(st["entries"].get("by_scope", {}).get("host", 0))

    with running_agent(config, metrics_port):
        first, first_end = create("soon.expiry.test", 2.0)
        second, second_end = create("later.expiry.test", 3.5)  # the re-armed timer
        create("kept.expiry.test", 3600)
        for decision, ends, left in ((first, first_end, 2), (second, second_end, 1)):
            while hosts() != left:
                late = (datetime.now(UTC) - ends).total_seconds()
                assert late < 1.5, f"decision {decision} still enforced {late:.1f} s after expiry"
                time.sleep(0.05)
            assert datetime.now(UTC) >= ends  # not early either
            _, got = http_json("GET", f"{api}/v1/decisions/{decision}", token)
            assert got["status"] == "expired"
            assert got["history"][-1]["actor"] == "system"
