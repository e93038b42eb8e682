"""The daemon as a newcomer meets it: token, decision with HTTP, status, metrics, revoke,
audit verify; a broken config on SIGHUP keeps the old one; SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import signal
import threading
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
        # The sole agent of an embedded store: named as the leader, by its agent id.
        me = st["ha"]["name"]
        assert st["ha"]["leader"] == me
        assert [a["name"] for a in st["ha"]["agents"]] == [me]
        assert f'edgeagent_ha_leader_info{{agent="{me}"}} 1.0' in metrics
        assert f'edgeagent_ha_agent_role{{agent="{me}",role="leader"}} 1.0' in metrics
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
        while True:  # status shows the last policy built: wait for the store's version
            _, st = http_json("GET", f"{api}/v1/status", token)
            if st["entries"].get("version") == st["policy_version"]:
                return int(st["entries"].get("by_scope", {}).get("host", 0))
            time.sleep(0.02)

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


# ------------------------------------------------------------------- SIGHUP, per section


def _until(check: Any, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.1)


def _records(log_path: Path) -> list[dict[str, Any]]:
    lines = log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _reloaded(log_path: Path, count: int) -> dict[str, Any]:
    """The ``count``-th "config reloaded" record, once it is logged."""
    found: list[dict[str, Any]] = []

    def logged() -> bool:
        found[:] = [r for r in _records(log_path) if r["msg"] == "config reloaded"]
        return len(found) >= count

    _until(logged, f"reload {count}")
    return found[count - 1]


def _base_config(tmp_path: Path, api_port: int, metrics_port: int) -> str:
    return (
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\nlog_format = "json"\n'
        f"[api]\nport = {api_port}\n[metrics]\nport = {metrics_port}\n"
    )


def test_sighup_applies_rpz_publishers_and_resolvers(tmp_path: Path) -> None:
    """A new ``[rpz]`` ttl and canary, a publisher writing elsewhere, then the publisher
    off and a resolver added: each is in force after SIGHUP, without a restart."""
    api_port, metrics_port = free_port(udp=False), free_port(udp=False)
    config = tmp_path / "edgeagent.toml"
    base = _base_config(tmp_path, api_port, metrics_port)
    rpz = '[rpz]\nttl = 60\ncanary_name = "canary-one.reload.test"\n'
    files = '[publishers.files]\nkind = "zonefile"\ndirectory = "{}"\n'
    config.write_text(base + rpz + files.format(tmp_path / "zones-a"))
    token = create_token(config, "noc", "noc")
    api = f"http://127.0.0.1:{api_port}"
    zone_a = tmp_path / "zones-a" / "block.rpz.invalid.zone"
    zone_b = tmp_path / "zones-b" / "block.rpz.invalid.zone"
    for zone in (zone_a, zone_b):
        zone.parent.mkdir()  # a zonefile publisher writes into an existing directory

    with running_agent(config, metrics_port, tmp_path / "daemon.log") as proc:
        _until(zone_a.exists, "first zone file")
        assert "$TTL 60\n" in zone_a.read_text()
        assert "canary-one.reload.test TXT" in zone_a.read_text()

        changed = rpz.replace("60", "30").replace("canary-one", "canary-two")
        config.write_text(base + changed + files.format(tmp_path / "zones-b"))
        proc.send_signal(signal.SIGHUP)
        first = _reloaded(tmp_path / "daemon.log", 1)
        assert set(first["applied"]) == {"rpz.ttl", "rpz.canary_name", "publishers.files"}
        assert first["needs_restart"] == []
        text = zone_b.read_text()
        assert "$TTL 30\n" in text
        assert "canary-two.reload.test TXT" in text
        assert "canary-one" not in text
        _, st = http_json("GET", f"{api}/v1/status", token)
        assert st["reload"]["applied"] == first["applied"]
        assert st["publishers"]["rpz"]["publishers"]["files"]["up"] is True

        resolver = f'[[resolvers]]\nname = "r1"\nhost = "127.0.0.1"\nport = {free_port()}\n'
        off = files.format(tmp_path / "zones-b") + "enabled = false\n"
        config.write_text(base + changed + off + resolver)
        proc.send_signal(signal.SIGHUP)
        second = _reloaded(tmp_path / "daemon.log", 2)
        assert set(second["applied"]) == {"publishers.files", "resolvers"}

        def r1_checked() -> bool:
            _, st = http_json("GET", f"{api}/v1/status", token)
            checked = st["publishers"]["rpz"]["verification"]["resolvers"]
            return [r["name"] for r in checked] == ["r1"]

        _until(r1_checked, "the new resolver verified")
        _, st = http_json("GET", f"{api}/v1/status", token)
        assert st["publishers"]["rpz"]["publishers"] == {}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_sighup_applies_proxy_section_without_a_gap(tmp_path: Path) -> None:
    """``[proxy] status`` and the stop page address: the new stop page answers at once
    (on the same address it starts before the old one closes)."""
    api_port, metrics_port = free_port(udp=False), free_port(udp=False)
    page_port, moved_port = free_port(udp=False), free_port(udp=False)
    config = tmp_path / "edgeagent.toml"
    base = _base_config(tmp_path, api_port, metrics_port)
    proxy = (
        f'[proxy]\nenabled = true\nindex_path = "{tmp_path / "proxy" / "index.bin"}"\n'
        f"stop_page_listen_port = {page_port}\n"
    )
    config.write_text(base + proxy)

    def stop_page(port: int) -> int | str:
        try:
            status, _ = http_json("GET", f"http://127.0.0.1:{port}/blocked?source=canary")
        except OSError as exc:
            return type(exc).__name__
        return status

    with running_agent(config, metrics_port, tmp_path / "daemon.log") as proc:
        _until(lambda: stop_page(page_port) == 451, "the stop page")
        _until((tmp_path / "proxy" / "index.bin").exists, "the proxy index")

        answers: list[int | str] = []
        done = threading.Event()

        def poll() -> None:  # every answer while the stop page is replaced
            while not done.is_set():
                answers.append(stop_page(page_port))

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            config.write_text(base + proxy + "status = 403\n")
            proc.send_signal(signal.SIGHUP)
            assert _reloaded(tmp_path / "daemon.log", 1)["applied"] == ["proxy.status"]
        finally:
            done.set()
            poller.join()
        assert stop_page(page_port) == 403
        assert set(answers) <= {451, 403}, set(answers)  # never refused meanwhile
        assert len(answers) > 1

        config.write_text(base + proxy.replace(str(page_port), str(moved_port)))
        proc.send_signal(signal.SIGHUP)
        applied = set(_reloaded(tmp_path / "daemon.log", 2)["applied"])
        assert applied == {"proxy.status", "proxy.stop_page_listen_port"}
        assert stop_page(moved_port) == 451
        assert stop_page(page_port) == "URLError"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_sighup_names_what_needs_a_restart(tmp_path: Path) -> None:
    """Listener, guard and takedown changes are named in the log and in /v1/status and
    keep running as they were; ``[api] public_reports_need_approval`` applies at once."""
    api_port, metrics_port = free_port(udp=False), free_port(udp=False)
    config = tmp_path / "edgeagent.toml"
    base = _base_config(tmp_path, api_port, metrics_port)
    config.write_text(base)
    analyst = create_token(config, "analyst", "ana")
    api = f"http://127.0.0.1:{api_port}"

    def public_report(name: str) -> str:
        body = {
            "target": name,
            "scope": "domain",
            "action": "block",
            "reason": "public report",
            "reference": "R-1",
            "source": "public",
        }
        status, created = http_json("POST", f"{api}/v1/decisions", analyst, body)
        assert status == 201, created
        return str(created["status"])

    with running_agent(config, metrics_port, tmp_path / "daemon.log") as proc:
        assert public_report("first.reload.test") == "pending-approval"
        moved = base.replace(f"port = {api_port}", f"port = {free_port(udp=False)}")
        config.write_text(
            moved.replace("[api]\n", "[api]\npublic_reports_need_approval = false\n")
            + "[guard]\nchange_floor = 10\n[takedown]\nsla_minutes = 30\n"
        )
        proc.send_signal(signal.SIGHUP)
        record = _reloaded(tmp_path / "daemon.log", 1)
        restart = ["api.port", "guard.change_floor", "takedown.sla_minutes"]
        assert record["needs_restart"] == restart
        assert record["applied"] == ["api.public_reports_need_approval"]
        _, st = http_json("GET", f"{api}/v1/status", analyst)  # still on the old port
        assert st["reload"]["needs_restart"] == restart
        assert st["reload"]["at"] > 0
        assert public_report("second.reload.test") == "active"

        config.write_text(base)  # back to what the process runs: nothing pending
        proc.send_signal(signal.SIGHUP)
        record = _reloaded(tmp_path / "daemon.log", 2)
        assert record["needs_restart"] == []
        assert record["applied"] == ["api.public_reports_need_approval"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_sighup_the_moment_the_listeners_answer_reloads_once_started(tmp_path: Path) -> None:
    """The listeners answer before the first publish is done; a reload asked for then
    (an operator's ``systemctl reload`` racing the start) neither kills the daemon nor
    runs mid-start: it runs once the start is done."""
    api_port, metrics_port = free_port(udp=False), free_port(udp=False)
    config = tmp_path / "edgeagent.toml"
    files = f'[publishers.files]\nkind = "zonefile"\ndirectory = "{tmp_path / "zones"}"\n'
    (tmp_path / "zones").mkdir()
    config.write_text(_base_config(tmp_path, api_port, metrics_port) + files)
    with running_agent(config, metrics_port, tmp_path / "daemon.log") as proc:
        proc.send_signal(signal.SIGHUP)  # /healthz has just answered
        reload = _reloaded(tmp_path / "daemon.log", 1)
        assert proc.poll() is None
        ready = [r for r in _records(tmp_path / "daemon.log") if r["msg"] == "ready"]
        assert ready, "the daemon never said it was ready"
        assert ready[0]["ts"] <= reload["ts"]
