"""``[routes]`` on SIGHUP through the daemon process, in the namespaces of
``test_routes_netns``: the daemon runs in the client namespace (it plays the ISP router),
a small DNS responder in the origin namespace stands in for the resolver without the
policy, and a URL-list feed lists one page of ``listed.example.com`` (203.0.113.10).
A new table moves the routes there; a switch to dry run leaves them as they are."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


def test_sighup_moves_routes_and_switches_to_dry_run(
    netns: Netns,
    tmp_path: Path,
) -> None:
    api_port, metrics_port = free_port(udp=False), free_port(udp=False)
    (tmp_path / "urls.txt").write_text("http://listed.example.com/page.html\n")
    (tmp_path / "protected.txt").write_text("cdn.example.com\n")
    base = (
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\nlog_format = "json"\n'
        f"[api]\nport = {api_port}\n[metrics]\nport = {metrics_port}\n"
        f'[guard]\nprotected_lists = ["{tmp_path / "protected.txt"}"]\n'
        f'[feeds.hotline]\nkind = "url-list"\npath = "{tmp_path / "urls.txt"}"\n'
    )
    routes = (
        '[routes]\nenabled = true\nproxy_next_hop = "192.0.2.2"\nallow_non_global = true\n'
        f"route_protocol = {OURS}\n"
        f'resolvers = [{{ host = "{DNS_ADDRESS}", port = 53 }}]\n'
    )
    config = tmp_path / "edgeagent.toml"
    config.write_text(base + routes + "table = 100\n")
    token = subprocess.run(
        [AGENT, "token", "create", "--role", "noc", "--name", "noc", "-c", str(config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    log_path = tmp_path / "daemon.log"

    def reloads() -> list[dict[str, Any]]:
        lines = log_path.read_text().splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        return [r for r in records if r["msg"] == "config reloaded"]

    def routes_status() -> dict[str, Any]:
        body = _get(netns.client, f"http://127.0.0.1:{api_port}/v1/status", token)
        return dict(json.loads(body)["publishers"]["routes"])

    with _responder(netns), log_path.open("w") as log:
        proc = subprocess.Popen(
            _in_ns(netns.client, AGENT, "run", "-c", str(config)), stdout=log, stderr=log
        )
        try:
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
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
