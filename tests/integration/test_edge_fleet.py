"""A central agent and three Squid proxies, each with its own edge agent, on loopback.

Every agent is a real ``edgeagent run``; every proxy is the shipped Squid config with the
helper. The centre serves its proxy index at ``GET /v1/policy/index``; each edge follows
it and installs it where its Squid's helper reads it. Edge ``c`` talks to the centre
through a relay in this test that can corrupt the index artefacts on the way.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from edgeagent.lab.daemons import HOST
from edgeagent.lab.proxy import RunningSquid
from edgeagent.proxy.artefact import new_key_pair
from edgeagent.proxy.index import IndexFileError, IndexReader
from tests.support.agent import AGENT, create_token, http_json
from tests.support.binaries import require_binary
from tests.support.ports import free_port
from tests.support.squid import Servers, raw_get, start_squid
from tests.support.webapps import BackgroundApps

pytestmark = pytest.mark.integration

SITE = "news.site.test"
EDGES = ("edge-a", "edge-b", "edge-c")


def _decision(path: str) -> dict[str, str]:
    return {
        "target": f"http://{SITE}/{path}",
        "scope": "url",
        "action": "block",
        "reason": "edge fleet test",
        "reference": f"CASE-{path}",
        "source": "hotline",
    }


class Relay(BackgroundApps):
    """Forwards everything to the centre; with ``tamper`` set, flips the last byte of
    every index artefact (its signature no longer holds)."""

    def __init__(self, centre: str) -> None:
        super().__init__()
        self.centre = centre
        self.tamper = False
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.port = self.serve(app, HOST)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        try:
            return await self._send(request, headers)
        except OSError:
            return web.Response(status=502)

    async def _send(self, request: web.Request, headers: dict[str, str]) -> web.Response:
        async with (
            ClientSession() as session,
            session.request(
                request.method,
                self.centre + request.path_qs,
                data=await request.read(),
                headers=headers,
            ) as resp,
        ):
            body = await resp.read()
            if self.tamper and request.path == "/v1/policy/index" and body:
                body = body[:-1] + bytes([body[-1] ^ 1])
            out = {k: v for k, v in resp.headers.items() if k.lower().startswith(("x-", "etag"))}
            return web.Response(status=resp.status, body=body, headers=out)


@dataclass
class Edge:
    name: str
    directory: Path
    config: Path
    metrics_port: int
    squid: RunningSquid

    @property
    def index(self) -> Path:
        return self.directory / "proxy" / "index.bin"

    def version(self) -> int:
        try:
            with IndexReader.open(self.index) as reader:
                return reader.policy_version
        except IndexFileError:
            return -1


@dataclass
class Fleet:
    root: Path
    servers: Servers
    centre_config: Path
    centre_api: str
    centre_metrics: int
    analyst: str
    noc: str
    relay: Relay
    edges: list[Edge]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, config: Path, log: Path) -> None:
        out = log.open("ab")
        self.procs[name] = subprocess.Popen(
            [AGENT, "run", "-c", str(config)], stdout=out, stderr=out
        )
        out.close()

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def refused(self, edge: Edge, path: str) -> bool:
        status, headers, _ = raw_get(
            edge.squid.proxy_port, f"http://{SITE}:{self.servers.origin_port}/{path}"
        )
        return status == 302 and "/blocked" in headers.get("location", "")

    def decide(self, path: str) -> None:
        status, body = http_json(
            "POST", self.centre_api + "/v1/decisions", self.analyst, _decision(path)
        )
        assert status == 201, body

    def centre_version(self) -> int:
        status, body = http_json("GET", self.centre_api + "/v1/status", self.noc)
        assert status == 200, body
        return int(body["policy_version"])

    def fleet(self) -> dict[str, dict[str, object]]:
        status, body = http_json("GET", self.centre_api + "/v1/fleet", self.noc)
        assert status == 200, body
        return {m["name"]: m for m in body["members"] if m["kind"] == "edge"}


def _wait(what: str, check: Callable[[], bool], seconds: float = 20.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    require_binary("squid")
    root = Path(tempfile.mkdtemp(prefix="edgeagent-edges-"))
    os.chmod(root, 0o755)
    servers = Servers()
    private, public = new_key_pair()
    (root / "signing.key").write_bytes(private)
    (root / "signing.key").chmod(0o600)
    (root / "signing.pub").write_bytes(public)
    api_port, metrics_port = free_port(udp=False), free_port(udp=False)
    centre_config = root / "centre.toml"
    centre_config.write_text(
        f'[agent]\nstate_dir = "{root / "centre"}"\n'
        f"[api]\nport = {api_port}\n[metrics]\nport = {metrics_port}\n"
        f'[proxy]\nenabled = true\nsigning_key_file = "{root / "signing.key"}"\n'
        f"stop_page_listen_port = {free_port(udp=False)}\n"
    )
    centre_api = f"http://{HOST}:{api_port}"
    analyst = create_token(centre_config, "analyst", "analyst")
    noc = create_token(centre_config, "noc", "edges")
    (root / "central-token").write_text(noc)
    (root / "central-token").chmod(0o600)
    relay = Relay(centre_api)
    edges: list[Edge] = []
    f = Fleet(root, servers, centre_config, centre_api, metrics_port, analyst, noc, relay, edges)
    try:
        f.start("centre", centre_config, root / "centre.log")
        _wait("the centre", lambda: _answers(metrics_port), 30)
        for name in EDGES:
            d = root / name
            (d / "proxy").mkdir(parents=True)
            os.chmod(d, 0o755)
            os.chmod(d / "proxy", 0o755)
            stop_port = free_port(udp=False)
            hosts = {SITE: HOST, "canary.edgeagent.example": HOST}
            squid = start_squid(
                d / "squid", d / "proxy" / "index.bin", f"http://{HOST}:{stop_port}", hosts
            )
            via = f"http://{HOST}:{relay.port}" if name == "edge-c" else centre_api
            edge_metrics = free_port(udp=False)
            config = d / "edge.toml"
            config.write_text(
                f'[agent]\nrole = "edge"\nstate_dir = "{d / "state"}"\n'
                f"[api]\nport = {free_port(udp=False)}\n[metrics]\nport = {edge_metrics}\n"
                f'[proxy]\nenabled = true\nindex_path = "{d / "proxy" / "index.bin"}"\n'
                f'group = "proxy"\nstop_page_listen_port = {stop_port}\n'
                f'proxies = [{{ host = "{HOST}", port = {squid.proxy_port} }}]\n'
                f"verify_interval_seconds = 5\n"
                f'[edge]\ncentral_url = "{via}"\nname = "{name}"\n'
                f'public_key_file = "{root / "signing.pub"}"\n'
                f'token_file = "{root / "central-token"}"\nwait_seconds = 20\n'
            )
            edge = Edge(name, d, config, edge_metrics, squid)
            edges.append(edge)
            f.start(name, config, d / "agent.log")
        for edge in edges:
            _wait(f"{edge.name} answering", lambda e=edge: _answers(e.metrics_port), 30)
        yield f
    finally:
        for name in list(f.procs):
            f.kill(name)
        for edge in edges:
            edge.squid.stop()
        relay.close()
        servers.close()
        shutil.rmtree(root, ignore_errors=True)


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1).close()
    except OSError:
        return False
    return True


def test_a_decision_is_refused_at_every_proxy_within_seconds(fleet: Fleet) -> None:
    want = fleet.centre_version()
    for edge in fleet.edges:
        _wait(f"{edge.name} at version {want}", lambda e=edge: e.version() == want)
    assert not any(fleet.refused(e, "first.html") for e in fleet.edges)
    started = time.monotonic()
    fleet.decide("first.html")
    for edge in fleet.edges:
        _wait(f"{edge.name} refusing", lambda e=edge: fleet.refused(e, "first.html"), 3.0)
    assert time.monotonic() - started < 3.0
    assert fleet.refused(fleet.edges[0], "sibling.html") is False
    # Each edge reports the version it installed; its canary sees that version.
    version = fleet.centre_version()
    _wait(
        "every edge confirmed with a passing canary",
        lambda: (
            all(
                m["confirmed"] == version and m["canary_ok"] is True and m["lag"] == 0
                for m in fleet.fleet().values()
            )
            and len(fleet.fleet()) == 3
        ),
        30,
    )
    for edge in fleet.edges:
        assert _metric(edge.metrics_port, "edgeagent_proxy_index_version") >= 0
        assert _metric(edge.metrics_port, "edgeagent_edge_last_contact_timestamp_seconds") > 0


def test_a_killed_edge_keeps_enforcing_and_catches_up_on_restart(fleet: Fleet) -> None:
    b = fleet.edges[1]
    fleet.kill(b.name)
    fleet.decide("while-b-down.html")
    for edge in (fleet.edges[0], fleet.edges[2]):
        _wait(f"{edge.name} refusing", lambda e=edge: fleet.refused(e, "while-b-down.html"), 3.0)
    assert fleet.refused(b, "first.html")  # its Squid keeps the index on disk
    assert not fleet.refused(b, "while-b-down.html")
    fleet.start(b.name, b.config, b.directory / "agent.log")
    _wait("edge-b caught up", lambda: fleet.refused(b, "while-b-down.html"), 30)


def test_a_tampered_artefact_is_refused_and_the_last_good_index_kept(fleet: Fleet) -> None:
    c = fleet.edges[2]
    before = c.version()
    fleet.relay.tamper = True
    try:
        fleet.decide("tampered.html")
        _wait("edge-a refusing", lambda: fleet.refused(fleet.edges[0], "tampered.html"), 3.0)
        _wait(
            "edge-c counting a refusal",
            lambda: _metric(c.metrics_port, "edgeagent_edge_index_refused_total") >= 1,
        )
        assert c.version() == before
        assert fleet.refused(c, "first.html")
        assert not fleet.refused(c, "tampered.html")
    finally:
        fleet.relay.tamper = False
    _wait("edge-c installs the genuine index", lambda: fleet.refused(c, "tampered.html"), 40)


def test_with_the_centre_down_edges_keep_the_last_good_index(fleet: Fleet) -> None:
    fleet.decide("before-outage.html")
    for edge in fleet.edges:
        _wait(f"{edge.name} refusing", lambda e=edge: fleet.refused(e, "before-outage.html"), 30)
    fleet.kill("centre")
    try:
        time.sleep(2)
        for edge in fleet.edges:
            assert fleet.refused(edge, "before-outage.html")
        contact = [
            _metric(e.metrics_port, "edgeagent_edge_last_contact_timestamp_seconds")
            for e in fleet.edges
        ]
        time.sleep(3)
        assert contact == [
            _metric(e.metrics_port, "edgeagent_edge_last_contact_timestamp_seconds")
            for e in fleet.edges
        ]  # the staleness alert's input stops moving
        for edge in fleet.edges:
            assert fleet.refused(edge, "before-outage.html")
    finally:
        fleet.start("centre", fleet.centre_config, fleet.root / "centre.log")
        _wait("the centre again", lambda: _answers(fleet.centre_metrics), 30)
    # Back: the centre has no edits from before its restart, so edges get the full index.
    fleet.decide("after-restart.html")
    for edge in fleet.edges:
        _wait(f"{edge.name} refusing", lambda e=edge: fleet.refused(e, "after-restart.html"), 30)
