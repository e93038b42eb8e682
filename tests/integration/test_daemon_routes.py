"""``[routes]`` on SIGHUP through the daemon process, in the namespaces of
``test_routes_netns``: the daemon runs in the client namespace (it plays the ISP router),
a small DNS responder in the origin namespace stands in for the resolver without the
policy, and a URL-list feed lists one page of ``listed.example.com`` (203.0.113.10).
A new table moves the routes there; a switch to dry run leaves them as they are; a route
or rule deleted behind the daemon's back is put back within one reconcile interval."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.figures import record
from tests.support.netns import DIVERTED, OURS, Netns
from tests.support.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.netns]

AGENT = str(Path(sys.executable).parent / "edgeagent")
DNS_ADDRESS = "198.51.100.2"  # the origin's end of the client-origin link

_RESPONDER = r"""
import socket, sys
import dns.message, dns.rcode, dns.rrset
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 53))
print("ready", flush=True)
while True:
    data, peer = sock.recvfrom(4096)
    query = dns.message.from_wire(data)
    answer = dns.message.make_response(query)
    question = query.question[0]
    if question.name.to_text() == "listed.example.com." and question.rdtype == 1:
        answer.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", sys.argv[2]))
    else:
        answer.set_rcode(dns.rcode.NXDOMAIN)
    sock.sendto(answer.to_wire(), peer)
"""

_GET = r"""
import sys, urllib.request
req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    req.add_header("Authorization", "Bearer " + sys.argv[2])
try:
    with urllib.request.urlopen(req, timeout=5) as resp:
        print(resp.read().decode())
except OSError as exc:
    print(type(exc).__name__)
"""


def _in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def _get(ns: str, url: str, token: str = "") -> str:
    args = [url, token] if token else [url]
    out = subprocess.run(
        _in_ns(ns, sys.executable, "-c", _GET, *args),
        check=True,
        capture_output=True,
        text=True,
        timeout=15,
    )
    return out.stdout.strip()


def _until(check: Any, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.2)


@contextlib.contextmanager
def _responder(netns: Netns) -> Iterator[None]:
    proc = subprocess.Popen(
        _in_ns(netns.origin, sys.executable, "-c", _RESPONDER, DNS_ADDRESS, DIVERTED),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=5)


ROUTES = (
    '[routes]\nenabled = true\nproxy_next_hop = "192.0.2.2"\nallow_non_global = true\n'
    f"route_protocol = {OURS}\n"
    f'resolvers = [{{ host = "{DNS_ADDRESS}", port = 53 }}]\n'
)


@contextlib.contextmanager
def _daemon(netns: Netns, config: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``edgeagent run`` in the client namespace, with the responder; the body must end
    it with SIGTERM (checked: exit 0); killed if the body failed."""
    with _responder(netns), log_path.open("w") as log:
        proc = subprocess.Popen(
            _in_ns(netns.client, AGENT, "run", "-c", str(config)), stdout=log, stderr=log
        )
        try:
            yield proc
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _write_config(tmp_path: Path, routes_extra: str) -> tuple[Path, int, int, str, str]:
    """The daemon's config (routes ``table = 100`` plus ``routes_extra``): its path, API and
    metrics ports, the sections before ``[routes]`` and a noc token."""
    api_port, metrics_port = free_port(udp=False), free_port(udp=False)
    (tmp_path / "urls.txt").write_text("http://listed.example.com/page.html\n")
    (tmp_path / "protected.txt").write_text("cdn.example.com\n")
    base = (
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\nlog_format = "json"\n'
        f"[api]\nport = {api_port}\n[metrics]\nport = {metrics_port}\n"
        f'[guard]\nprotected_lists = ["{tmp_path / "protected.txt"}"]\n'
        f'[feeds.hotline]\nkind = "url-list"\npath = "{tmp_path / "urls.txt"}"\n'
    )
    config = tmp_path / "edgeagent.toml"
    config.write_text(base + ROUTES + routes_extra)
    token = subprocess.run(
        [AGENT, "token", "create", "--role", "noc", "--name", "noc", "-c", str(config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    return config, api_port, metrics_port, base, token


def test_sighup_moves_routes_and_switches_to_dry_run(
    netns: Netns,
    tmp_path: Path,
) -> None:
    config, api_port, _, base, token = _write_config(tmp_path, "table = 100\n")
    routes = ROUTES
    log_path = tmp_path / "daemon.log"

    def reloads() -> list[dict[str, Any]]:
        lines = log_path.read_text().splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        return [r for r in records if r["msg"] == "config reloaded"]

    def routes_status() -> dict[str, Any]:
        body = _get(netns.client, f"http://127.0.0.1:{api_port}/v1/status", token)
        return dict(json.loads(body)["publishers"]["routes"])

    with _daemon(netns, config, log_path) as proc:
        _until(lambda: netns.table() == {f"{DIVERTED}/32": OURS}, "the route")
        assert netns.probe(DIVERTED, 80) == "proxy"

        config.write_text(base + routes + "table = 101\n")
        proc.send_signal(signal.SIGHUP)
        _until(lambda: len(reloads()) == 1, "the reload")
        assert reloads()[0]["applied"] == ["routes.table"]
        assert netns.table() == {}
        assert netns.table(101) == {f"{DIVERTED}/32": OURS}
        assert netns.rules(101) == {("-4", 80)}
        assert netns.probe(DIVERTED, 80) == "proxy"
        assert routes_status()["table"] == 101

        config.write_text(base + routes + "table = 101\ndry_run = true\n")
        proc.send_signal(signal.SIGHUP)
        _until(lambda: len(reloads()) == 2, "the second reload")
        assert reloads()[1]["applied"] == ["routes.dry_run"]
        assert routes_status()["dry_run"] is True
        assert netns.table(101) == {f"{DIVERTED}/32": OURS}  # a dry run changes nothing
        proc.send_signal(signal.SIGTERM)


def test_route_removed_behind_the_daemon_is_reinstalled(netns: Netns, tmp_path: Path) -> None:
    """Drift: a route or rule deleted by someone else is back within one reconcile
    interval, and ``edgeagent_routes_repaired_total`` counts it."""
    interval = 2
    config, _, metrics_port, _, _ = _write_config(
        tmp_path, f"table = 100\nreconcile_interval_seconds = {interval}\n"
    )

    def repaired() -> float:
        text = _get(netns.client, f"http://127.0.0.1:{metrics_port}/metrics")
        found = re.search(r"^edgeagent_routes_repaired_total (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    with _daemon(netns, config, tmp_path / "daemon.log") as proc:
        _until(lambda: netns.table() == {f"{DIVERTED}/32": OURS}, "the route")
        _until(lambda: netns.rules(100) == {("-4", 80)}, "the rule")
        assert repaired() == 0
        subprocess.run(
            ["ip", "-n", netns.client, "route", "del", f"{DIVERTED}/32", "table", "100"],
            check=True,
        )
        deleted = time.monotonic()
        _until(lambda: netns.table() == {f"{DIVERTED}/32": OURS}, "the route back", 3 * interval)
        route_back = time.monotonic() - deleted
        assert netns.probe(DIVERTED, 80) == "proxy"
        _until(lambda: repaired() >= 1, "the repair counted", 3 * interval)

        subprocess.run(
            [
                "ip",
                "-n",
                netns.client,
                "rule",
                "del",
                "table",
                "100",
                "ipproto",
                "tcp",
                "dport",
                "80",
            ],
            check=True,
        )
        _until(lambda: netns.rules(100) == {("-4", 80)}, "the rule back", 3 * interval)
        _until(lambda: repaired() >= 2, "the second repair counted", 3 * interval)
        print(f"route drift: route back in {route_back:.1f} s")
        record(
            "faults",
            "route-drift",
            {"route_seconds": round(route_back, 1), "interval_seconds": interval},
        )
        proc.send_signal(signal.SIGTERM)
