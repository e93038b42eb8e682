"""Confidentiality through the daemon: list entries stay where they belong.

One ``edgeagent run`` with feeds (a domain list, a URL list, a list that is not UTF-8, a
feed whose server is down), decisions, lookups, syncs, plan, status, audit, metrics, the
stop page and bad requests (invalid targets, malformed JSON, raw garbage on every
listener) - every list entry carries this run's marker ``m4rk3r-<random>``. Then:

- no log line, no metric, no error body holds a marker in plain text;
- a ``2xx`` body holds one only where the entry is the answer to an authorised analyst
  (``ENTRY_ROUTES``: decisions, lookup, the plan's pending targets for ``analyst`` and up;
  tickets and evidence would be too). Status, feeds, sync results, audit records, the plan
  for ``noc`` and the OpenAPI document never do;
- no file outside the store and the artefact directories holds one; the store (with its
  WAL files, seen while the daemon runs) is 0600, the artefacts (zones, proxy index and
  path filter) 0640, everything else in the state directory 0600;
- no token secret appears in the log or in any file.

Positive controls keep the search honest: the entry routes, the store and the zone do
show the markers.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import socket
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent import create_token, running_agent
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

MARK = f"m4rk3r-{secrets.token_hex(4)}"
# Routes whose 2xx answer is the entry itself, to an analyst or higher (the caller that
# may see it); the plan shows pending targets to analysts only.
ENTRY_ROUTES = {
    ("POST", "/v1/decisions"),
    ("GET", "/v1/decisions"),
    ("GET", "/v1/decisions/{id}"),
    ("POST", "/v1/decisions/{id}/revoke"),
    ("POST", "/v1/decisions/{id}/approve"),
    ("GET", "/v1/lookup"),
    ("GET", "/v1/plan@analyst"),
}


def name(label: str) -> str:
    return f"{MARK}-{label}.example"


@dataclass
class Exchange:
    route: str
    method: str
    status: int
    body: str


@dataclass
class Client:
    api: str
    tokens: dict[str, str]
    seen: list[Exchange] = field(default_factory=list)

    def call(
        self,
        method: str,
        route: str,
        who: str | None = "analyst",
        body: Any = None,
        *,
        path: str | None = None,
        raw: bytes | None = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request; ``route`` is the template it is filed under, ``path`` the real one."""
        url = self.api + (path or route)
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(url, data=data, method=method)
        if who is not None:
            req.add_header("Authorization", f"Bearer {self.tokens[who]}")
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        label = f"{route}@{who}" if (method, f"{route}@{who}") in ENTRY_ROUTES else route
        self.seen.append(Exchange(label, method, status, text))
        return status, json.loads(text) if text.startswith(("{", "[")) else text


def _raw(port: int, request: bytes) -> None:
    """Send bytes no HTTP client would, read what comes back, close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass


def _wait_for(check: Any, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.2)


def _files(root: Path) -> dict[Path, int]:
    return {p: stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_file()}


def _write_inputs(tmp: Path, ports: dict[str, int]) -> Path:
    lists = tmp / "lists"
    lists.mkdir()
    (lists / "domains.txt").write_text(f"{name('feed-dom1')}\n{name('feed-dom2')}\n")
    (lists / "urls.csv").write_text(
        f"id,url,category\n1,http://{name('feed-url')}/gallery/p.html,csam\n"
        f"2,http://{name('feed-bad')}/a\nb,csam\n"  # a rejected line
    )
    (lists / "broken.txt").write_bytes(name("feed-broken").encode() + b"\n\xff\xfe\n")
    for sub in ("zones", "proxy"):
        (tmp / "artefacts" / sub).mkdir(parents=True)
    config = tmp / "edgeagent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp / "state"}"\nlog_format = "json"\nlog_level = "debug"\n'
        f"[api]\nport = {ports['api']}\n[metrics]\nport = {ports['metrics']}\n"
        '[rpz]\nproxy_ipv4 = "192.0.2.80"\n'
        f'[publishers.zones]\nkind = "zonefile"\ndirectory = "{tmp / "artefacts" / "zones"}"\n'
        f'[proxy]\nenabled = true\nindex_path = "{tmp / "artefacts" / "proxy" / "index.bin"}"\n'
        f"stop_page_listen_port = {ports['stop']}\n"
        f'[feeds.domains]\nkind = "domain-list"\npath = "{lists / "domains.txt"}"\n'
        f'[feeds.urls]\nkind = "url-list"\npath = "{lists / "urls.csv"}"\nformat = "csv"\n'
        f'[feeds.broken]\nkind = "domain-list"\npath = "{lists / "broken.txt"}"\n'
        '[feeds.unreachable]\nkind = "url-list"\nretries = 0\n'
        f'url = "http://127.0.0.1:{ports["closed"]}/{MARK}-feed-path/list.txt"\n'
    )
    return config


def _exercise(c: Client, ports: dict[str, int]) -> None:
    """Everything a day brings: decisions, lookups, syncs, reads, and bad requests."""
    decision = {"reason": "hotline report", "reference": "CASE-7", "source": "hotline"}
    made = {}
    for label, scope, target, extra in [
        ("host", "host", name("dec-host"), {}),
        ("url", "url", f"http://{name('dec-url')}/gallery/x.html?id=1", {}),
        ("domain", "domain", name("dec-domain").upper(), {}),
        ("public", "host", name("dec-public"), {"source": "public"}),
        ("pending", "host", name("dec-pending"), {"source": "public"}),
        ("allow", "url", f"http://{name('dec-allow')}/ok.html", {"action": "allow"}),
    ]:
        body = {**decision, "target": target, "scope": scope, "action": "block", **extra}
        status, out = c.call("POST", "/v1/decisions", "analyst", body)
        assert status == 201, out
        made[label] = out["id"]
    c.call("GET", "/v1/decisions", "analyst", query={"reference": "CASE-7"})
    c.call("GET", "/v1/decisions/{id}", "analyst", path=f"/v1/decisions/{made['url']}")
    c.call("POST", "/v1/decisions/{id}/revoke", "supervisor", {"reason": "appeal"},
           path=f"/v1/decisions/{made['host']}/revoke")  # fmt: skip
    c.call("POST", "/v1/decisions/{id}/approve", "supervisor", {"reason": "checked"},
           path=f"/v1/decisions/{made['public']}/approve")  # fmt: skip
    for target in (name("feed-dom1"), f"http://{name('feed-url')}/gallery/p.html", name("none")):
        c.call("GET", "/v1/lookup", "analyst", query={"target": target})
    c.call("GET", "/v1/lookup", "noc", query={"target": name("noc-lookup")})
    c.call("GET", "/v1/lookup", None, query={"target": name("anon-lookup")})
    c.call("GET", "/v1/lookup", "analyst", query={"target": f"*.{name('bad-lookup')}"})
    c.call("GET", "/v1/lookup", "analyst", query={"target": name("q"), "extra": name("param")})
    for feed in ("domains", "urls", "broken", "unreachable"):
        c.call("POST", "/v1/feeds/{name}/sync", "analyst", path=f"/v1/feeds/{feed}/sync")
        c.call("GET", "/v1/feeds/{name}", "noc", path=f"/v1/feeds/{feed}")
    for route, who in [
        ("/v1/feeds", "noc"),
        ("/v1/status", "noc"),
        ("/v1/plan", "noc"),
        ("/v1/plan", "analyst"),
        ("/v1/audit", "supervisor"),
        ("/v1/audit/verify", "supervisor"),
        ("/v1/openapi.json", "noc"),
    ]:
        status, _ = c.call("GET", route, who)
        assert status == 200, route
    # Bad requests carrying entries.
    for body in [
        {**decision, "target": f"*.{name('bad-wild')}", "scope": "domain", "action": "block"},
        {**decision, "target": f"{name('bad-ctl')}\n", "scope": "host", "action": "block"},
        {
            **decision,
            "target": f"http://{name('bad-url')}:99999/",
            "scope": "url",
            "action": "block",
        },
        {**decision, "target": "x" * 64 + name("bad-long"), "scope": "host", "action": "block"},
        {**decision, "target": name("bad-scope"), "scope": "url-hash", "action": "block"},
        {**decision, "target": name("bad-field"), "scope": "host", "action": "block", "x": 1},
    ]:
        c.call("POST", "/v1/decisions", "analyst", body)
    c.call("POST", "/v1/decisions", "analyst",
           raw=f'{{"target": "{name("bad-json")}", '.encode())  # fmt: skip
    c.call("POST", "/v1/decisions", "analyst",
           raw=json.dumps({**decision, "target": name("dup1"), "scope": "host",
                           "action": "block"}).replace("}", f', "target": "{name("dup2")}"}}')
           .encode())  # fmt: skip
    c.call("GET", "/v1/decisions/{id}", "analyst", path=f"/v1/decisions/{name('no-route')}")
    c.call("POST", "/v1/decisions", None, {"target": name("anon-post")})
    for port in (ports["api"], ports["metrics"], ports["stop"]):
        _raw(port, f"GET /v1/lookup?target={name('raw1')} HTTP/1.1\r\nBroken\r\n\r\n".encode())
        _raw(port, f"G\x01T /{name('raw2')} HTTP/1.1\r\n\r\n".encode())
        _raw(port, f"GET /{name('raw3')} HTTP/9.9\r\nHost: {name('raw4')}\r\n\r\n".encode())
    stop = f"http://127.0.0.1:{ports['stop']}"
    for url in (f"{stop}/blocked?source={name('src')}", f"{stop}/{name('stop-path')}"):
        req = urllib.request.Request(url)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode()
        c.seen.append(Exchange("stop-page", "GET", 451, text))


def test_no_entry_leaves_the_store_and_the_artefacts(tmp_path: Path) -> None:
    ports = {k: free_port(udp=False) for k in ("api", "metrics", "stop", "closed")}
    config = _write_inputs(tmp_path, ports)
    tokens = {role: create_token(config, role, role) for role in ("noc", "analyst", "supervisor")}
    client = Client(f"http://127.0.0.1:{ports['api']}", tokens)
    log_path = tmp_path / "daemon.log"
    with running_agent(config, ports["metrics"], log_path) as proc:
        _wait_for(lambda: _synced(client), "first syncs")
        _exercise(client, ports)
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=10)
            .read()
            .decode()
        )
        running_files = _files(tmp_path / "state")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    mark = re.compile(re.escape(MARK), re.IGNORECASE)
    log_text = log_path.read_text()

    assert '"msg":"stopped"' in log_text.replace(" ", "")
    assert not mark.search(log_text), [line for line in log_text.splitlines() if mark.search(line)]
    for secret in tokens.values():
        assert secret not in log_text
    assert not mark.search(metrics), [line for line in metrics.splitlines() if mark.search(line)]

    leaks = [
        f"{e.method} {e.route} {e.status}"
        for e in client.seen
        if mark.search(e.body) and (e.status >= 400 or (e.method, e.route) not in ENTRY_ROUTES)
    ]
    assert leaks == []
    # Positive controls: the entry routes did answer with entries.
    shown = {(e.method, e.route) for e in client.seen if e.status < 400 and mark.search(e.body)}
    assert {("POST", "/v1/decisions"), ("GET", "/v1/lookup"), ("GET", "/v1/plan@analyst")} <= shown

    store = {p for p in running_files if p.name.startswith("edgeagent.sqlite3")}
    assert {p.name for p in store} >= {"edgeagent.sqlite3", "edgeagent.sqlite3-wal"}
    assert all(mode == 0o600 for mode in running_files.values()), running_files
    artefacts = _files(tmp_path / "artefacts")
    # The appeal key sits beside the index for the helper: with no [proxy] group here
    # nobody else is to read it, so it is 0600 like the store (0640 with a group).
    key = [p for p in artefacts if p.name == "appeal-ref.key"]
    assert [artefacts.pop(p) for p in key] == [0o600]
    assert len(artefacts) >= 4  # two zones, the index, the path filter
    assert all(mode == 0o640 for mode in artefacts.values()), artefacts
    inputs = {config, *(tmp_path / "lists").iterdir()}
    allowed = store | set(artefacts) | inputs | {log_path}
    holding = {p for p in _files(tmp_path) if MARK.encode() in p.read_bytes()}
    assert holding - allowed == set()
    assert tmp_path / "state" / "edgeagent.sqlite3" in holding  # the store holds entries
    assert any(p.suffix == ".zone" for p in holding)  # and so do the zones
    for p in _files(tmp_path):
        if p not in inputs:
            data = p.read_bytes()
            assert not any(s.encode() in data for s in tokens.values()), p


def _synced(c: Client) -> bool:
    req = urllib.request.Request(c.api + "/v1/feeds")
    req.add_header("Authorization", f"Bearer {c.tokens['noc']}")
    with urllib.request.urlopen(req, timeout=5) as resp:
        feeds = json.loads(resp.read())["feeds"]
    return all(feeds.get(f, {}).get("last_attempt") for f in ("domains", "urls", "broken"))
