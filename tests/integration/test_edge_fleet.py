"""A central agent and three Squid proxies, each with its own edge agent, on loopback.

Every agent is a real ``edgeagent run``; every proxy is the shipped Squid config with the
helper (:mod:`edgeagent.lab.edges`). The centre serves its proxy index at
``GET /v1/policy/index``; each edge follows it into the index its Squid's helper reads.
Edge ``c`` talks to the centre through a relay in this test that can corrupt the index
artefacts on the way.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from edgeagent.lab.daemons import HOST
from edgeagent.lab.edges import EdgeFleet, EdgeProxy, answers, metric, refused, wait_for
from tests.support.agent import http_json
from tests.support.binaries import require_binary
from tests.support.squid import Servers, raw_get
from tests.support.webapps import BackgroundApps

pytestmark = pytest.mark.integration

SITE = "news.site.test"
LAST_CONTACT = "edgeagent_edge_last_contact_timestamp_seconds"


class Relay(BackgroundApps):
    """Forwards everything to the centre; with ``tamper`` set, flips the last byte of
    every index artefact (its signature no longer holds)."""

    def __init__(self) -> None:
        super().__init__()
        self.centre = ""
        self.tamper = False
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.port = self.serve(app, HOST)

    def url(self, name: str, centre: str) -> str:
        if name != "edge-c":
            return centre
        self.centre = centre
        return f"http://{HOST}:{self.port}"

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        try:
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
                keep = {
                    k: v for k, v in resp.headers.items() if k.lower().startswith(("x-", "etag"))
                }
        except OSError:
            return web.Response(status=502)
        if self.tamper and request.path == "/v1/policy/index" and body:
            body = body[:-1] + bytes([body[-1] ^ 1])
        return web.Response(status=resp.status, body=body, headers=keep)


class World:
    def __init__(self, fleet: EdgeFleet, servers: Servers, relay: Relay) -> None:
        self.fleet, self.servers, self.relay = fleet, servers, relay

    def url(self, page: str) -> str:
        return f"http://{SITE}:{self.servers.origin_port}/{page}"

    def refused(self, edge: EdgeProxy, page: str) -> bool:
        return refused(edge.squid.proxy_port, self.url(page))

    def decide(self, page: str) -> None:
        self.fleet.block_url(self.url(page), f"CASE-{page}")

    def all_refuse(self, page: str, seconds: float) -> None:
        for edge in self.fleet.edges:
            wait_for(f"{edge.name} refusing", lambda e=edge: self.refused(e, page), seconds)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_binary("squid")
    servers = Servers()
    relay = Relay()
    hosts = {SITE: HOST, "canary.edgeagent.example": HOST}
    fleet = EdgeFleet(Path(tempfile.mkdtemp(prefix="edgeagent-edges-")), hosts)
    try:
        fleet.start(3, via=relay.url)
        yield World(fleet, servers, relay)
    finally:
        fleet.remove()
        relay.close()
        servers.close()


def test_a_decision_is_refused_at_every_proxy_within_seconds(world: World) -> None:
    fleet = world.fleet
    want = fleet.policy_version()
    for edge in fleet.edges:
        wait_for(f"{edge.name} at version {want}", lambda e=edge: e.version() == want)
    assert not any(world.refused(e, "first.html") for e in fleet.edges)
    started = time.monotonic()
    world.decide("first.html")
    world.all_refuse("first.html", 3.0)
    assert time.monotonic() - started < 3.0
    assert not world.refused(fleet.edges[0], "sibling.html")
    # Each proxy host's own edge agent serves the stop page its Squid redirects to.
    for edge in fleet.edges:
        _, headers, _ = raw_get(edge.squid.proxy_port, world.url("first.html"))
        status, page = http_json("GET", headers["location"])
        assert status == 451, page
        assert "first.html" not in page
    # Each edge reports the version it installed, and its canary saw that version.
    version = fleet.policy_version()

    def confirmed() -> bool:
        rows = fleet.fleet_edges()
        return len(rows) == 3 and all(
            m["confirmed"] == version and m["canary_ok"] is True and m["lag"] == 0
            for m in rows.values()
        )

    wait_for("every edge confirmed with a passing canary", confirmed, 30)
    for edge in fleet.edges:
        assert metric(edge.metrics_port, "edgeagent_proxy_index_version") >= 0
        assert metric(edge.metrics_port, LAST_CONTACT) > 0


def test_a_killed_edge_keeps_enforcing_and_catches_up_on_restart(world: World) -> None:
    fleet = world.fleet
    b = fleet.edges[1]
    world.decide("before-kill.html")
    world.all_refuse("before-kill.html", 30)
    fleet.kill(b.name)
    world.decide("while-b-down.html")
    for edge in (fleet.edges[0], fleet.edges[2]):
        wait_for(edge.name, lambda e=edge: world.refused(e, "while-b-down.html"), 3.0)
    assert world.refused(b, "before-kill.html")  # its Squid keeps the index on disk
    assert not world.refused(b, "while-b-down.html")
    fleet.run(b.name, b.config)
    wait_for("edge-b caught up", lambda: world.refused(b, "while-b-down.html"), 30)


def test_a_tampered_artefact_is_refused_and_the_last_good_index_kept(world: World) -> None:
    fleet = world.fleet
    c = fleet.edges[2]
    world.decide("before-tamper.html")
    world.all_refuse("before-tamper.html", 30)
    before = c.version()
    world.relay.tamper = True
    try:
        world.decide("tampered.html")
        wait_for("edge-a", lambda: world.refused(fleet.edges[0], "tampered.html"), 3.0)
        wait_for(
            "edge-c counting a refusal",
            lambda: metric(c.metrics_port, "edgeagent_edge_index_refused_total") >= 1,
        )
        assert c.version() == before
        assert world.refused(c, "before-tamper.html")
        assert not world.refused(c, "tampered.html")
    finally:
        world.relay.tamper = False
    wait_for("edge-c installs the genuine index", lambda: world.refused(c, "tampered.html"), 40)


def test_with_the_centre_down_edges_keep_the_last_good_index(world: World) -> None:
    fleet = world.fleet
    world.decide("before-outage.html")
    world.all_refuse("before-outage.html", 30)
    fleet.kill("centre")
    try:
        time.sleep(2)
        contact = [metric(e.metrics_port, LAST_CONTACT) for e in fleet.edges]
        time.sleep(3)
        # The staleness alert's input stops moving; enforcement does not lapse.
        assert contact == [metric(e.metrics_port, LAST_CONTACT) for e in fleet.edges]
        for edge in fleet.edges:
            assert world.refused(edge, "before-outage.html")
    finally:
        fleet.run("centre", fleet.centre_config)
        wait_for("the centre again", lambda: answers(fleet.centre_metrics), 30)
    # The centre lays its index out afresh after a restart: the edges get it whole.
    world.decide("after-restart.html")
    world.all_refuse("after-restart.html", 30)
