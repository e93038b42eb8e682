"""A central agent and Squid proxies each with its own edge agent, on loopback.

Every agent is a real ``edgeagent run`` process; every proxy is the shipped Squid config
with the helper (:func:`edgeagent.lab.proxy.start_squid`). The centre signs and serves
its proxy index (``[proxy] signing_key_file``); each edge (``[agent] role = "edge"``)
follows it into the index its Squid's helper reads, and serves that proxy's stop page.
Used by the fleet tests and ``python -m bench edge_fleet``.

:meth:`EdgeFleet.start` needs Squid and root (Squid drops to the ``proxy`` user);
:meth:`EdgeFleet.stop` stops everything it started, newest first.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from edgeagent.lab.daemons import HOST, DaemonError, free_tcp_port, stop_processes
from edgeagent.lab.proxy import RunningSquid, start_squid
from edgeagent.proxy.artefact import new_key_pair
from edgeagent.proxy.index import IndexFileError, IndexReader

AGENT = str(Path(sys.executable).parent / "edgeagent")


@dataclass
class EdgeProxy:
    """One proxy host: its Squid and the edge agent that feeds it."""

    name: str
    directory: Path
    config: Path
    metrics_port: int
    squid: RunningSquid

    @property
    def index(self) -> Path:
        return self.directory / "proxy" / "index.bin"

    def version(self) -> int:
        """The policy version of the index on disk (-1: none)."""
        try:
            with IndexReader.open(self.index) as reader:
                return reader.policy_version
        except IndexFileError:
            return -1


@dataclass
class EdgeFleet:
    """See the module docstring. ``hosts``: names Squid resolves (to the origin)."""

    root: Path
    hosts: dict[str, str]
    centre_config: Path = field(init=False)
    centre_api: str = ""
    centre_metrics: int = 0
    analyst: str = ""
    noc: str = ""
    edges: list[EdgeProxy] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.centre_config = self.root / "centre.toml"

    # -- processes

    def run(self, name: str, config: Path) -> None:
        """Start ``edgeagent run -c config`` as ``name`` (its log: <root>/<name>.log)."""
        with (self.root / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [AGENT, "run", "-c", str(config)], stdout=out, stderr=out
            )

    def kill(self, name: str) -> None:
        """SIGKILL: nothing is cleaned up, as after a crash."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(10)

    def start(self, proxies: int = 3, via: Callable[[str, str], str] | None = None) -> None:
        """The centre, then ``proxies`` Squids with their edges; ``via(name, centre_url)``
        is the URL an edge reaches the centre at (default: directly)."""
        self.root.mkdir(parents=True, exist_ok=True)
        # Squid (user proxy) reads the edges' indexes below.
        os.chmod(self.root, 0o755)  # noqa: S103 - a lab directory, nothing secret in it
        private, public = new_key_pair()
        _secret(self.root / "signing.key", private)
        (self.root / "signing.pub").write_bytes(public)
        api, self.centre_metrics = free_tcp_port(HOST), free_tcp_port(HOST)
        self.centre_config.write_text(
            f'[agent]\nstate_dir = "{self.root / "centre"}"\n'
            f"[api]\nport = {api}\n[metrics]\nport = {self.centre_metrics}\n"
            f'[proxy]\nenabled = true\nsigning_key_file = "{self.root / "signing.key"}"\n'
            f"stop_page_listen_port = {free_tcp_port(HOST)}\n"
        )
        self.centre_api = f"http://{HOST}:{api}"
        self.analyst = create_token(self.centre_config, "analyst", "analyst")
        self.noc = create_token(self.centre_config, "noc", "edges")
        _secret(self.root / "central-token", self.noc.encode())
        self.run("centre", self.centre_config)
        wait_for("the centre", lambda: answers(self.centre_metrics), 30)
        for n in range(proxies):
            name = f"edge-{chr(ord('a') + n)}"
            url = via(name, self.centre_api) if via is not None else self.centre_api
            self.edges.append(self._edge(name, url))
        for edge in self.edges:
            wait_for(f"{edge.name} answering", partial(answers, edge.metrics_port), 30)

    def _edge(self, name: str, centre_url: str) -> EdgeProxy:
        d = self.root / name
        (d / "proxy").mkdir(parents=True)
        for directory in (d, d / "proxy"):
            os.chmod(directory, 0o755)  # noqa: S103 - the index is 0640, group proxy
        stop_port, metrics = free_tcp_port(HOST), free_tcp_port(HOST)
        index = d / "proxy" / "index.bin"
        squid = start_squid(
            d / "squid",
            index,
            f"http://{HOST}:{stop_port}",
            hosts=self.hosts,
            stats_file=d / "proxy" / "helper-stats-%p.json",
        )
        config = d / "edge.toml"
        config.write_text(
            f'[agent]\nrole = "edge"\nstate_dir = "{d / "state"}"\n'
            f"[api]\nport = {free_tcp_port(HOST)}\n[metrics]\nport = {metrics}\n"
            f'[proxy]\nenabled = true\nindex_path = "{index}"\ngroup = "proxy"\n'
            f"stop_page_listen_port = {stop_port}\n"
            f'proxies = [{{ host = "{HOST}", port = {squid.proxy_port} }}]\n'
            f"verify_interval_seconds = 5\n"
            f'[edge]\ncentral_url = "{centre_url}"\nname = "{name}"\n'
            f'public_key_file = "{self.root / "signing.pub"}"\n'
            f'token_file = "{self.root / "central-token"}"\nwait_seconds = 20\n'
        )
        self.run(name, config)
        return EdgeProxy(name, d, config, metrics, squid)

    def stop(self) -> None:
        stop_processes([self.procs.pop(name) for name in reversed(list(self.procs))])
        stop_processes([edge.squid.proc for edge in reversed(self.edges)], timeout=15)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the centre's API

    def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 - the centre's http:// URL
            self.centre_api + path, data=data, method=method
        )
        req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def block_url(self, url: str, reference: str) -> None:
        """An analyst's block decision on ``url``."""
        status, body = self.call(
            "POST",
            "/v1/decisions",
            self.analyst,
            {
                "target": url,
                "scope": "url",
                "action": "block",
                "reason": "edge fleet",
                "reference": reference,
                "source": "hotline",
            },
        )
        if status != 201:
            raise DaemonError(f"decision refused: {status} {body}")

    def fleet_edges(self) -> dict[str, dict[str, Any]]:
        """``GET /v1/fleet`` rows of the edges, by name."""
        status, body = self.call("GET", "/v1/fleet", self.noc)
        if status != 200:
            raise DaemonError(f"GET /v1/fleet: {status}")
        return {m["name"]: m for m in body["members"] if m["kind"] == "edge"}

    def policy_version(self) -> int:
        status, body = self.call("GET", "/v1/status", self.noc)
        if status != 200:
            raise DaemonError(f"GET /v1/status: {status}")
        return int(body["policy_version"])


def refused(proxy_port: int, url: str) -> bool:
    """True when the proxy answers ``url`` with the redirect to the stop page."""
    conn = http.client.HTTPConnection(HOST, proxy_port, timeout=10)
    try:
        conn.request("GET", url, headers={"Cache-Control": "no-cache"})
        resp = conn.getresponse()
        resp.read()
        return resp.status == 302 and "/blocked" in (resp.getheader("Location") or "")
    finally:
        conn.close()


def answers(port: int) -> bool:
    """True when ``/healthz`` answers on ``port``."""
    try:
        urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1).close()
    except OSError:
        return False
    return True


def metric(port: int, name: str) -> float:
    """The first sample of metric ``name`` at ``http://HOST:port/metrics``."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith((name + " ", name + "{")):
                return float(line.rsplit(" ", 1)[1])
    raise DaemonError(f"{name} not exported")


def wait_for(what: str, check: Callable[[], bool], seconds: float = 20.0) -> float:
    """Poll ``check`` every 20 ms until true; the seconds it took. Raises on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return time.monotonic() - started
        time.sleep(0.02)
    raise DaemonError(f"timed out waiting for {what}")


def create_token(config: Path, role: str, name: str) -> str:
    """``edgeagent token create`` on ``config``; the new token's secret."""
    out = subprocess.run(
        [AGENT, "token", "create", "--role", role, "--name", name, "-c", str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()[-1]


def _secret(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)
