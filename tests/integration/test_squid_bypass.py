"""The bypass matrix through the real shipped Squid: every spelling of a listed page is
refused, explicit proxy and diverted (accel) port alike, and its siblings still pass.

Requests are written to a socket byte for byte (no client library that would normalise the
request line): a fragment in the request line, an empty or unrelated query, escapes,
dot segments, path parameters, host case, a trailing dot, ``:80``, absolute-form on the
diverted port, HTTP/1.0, pipelining, CONNECT to port 80, and the origin's address in
place of the name (in every spelling of it: the agent resolved the listed host through a
real Unbound and listed its IP-literal aliases, :mod:`edgeagent.proxy.aliases`). The
origin records every request that reaches it, so a refusal is also checked to have kept the
request from the origin.
Spellings tried and refused are counted per proxy mode (``forward``: the explicit proxy
port; ``accelerated``: the ``accel vhost`` port DNS-diverted clients reach) into
``var/reliability/bypass.json``.
:mod:`tests.support.spellings` writes the spellings; ``test_proxy_diverted.py`` sends
the same ones as the diverted client, through the whole DNS chain.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from edgeagent.lab.daemons import HOST
from edgeagent.lab.proxy import RunningSquid
from edgeagent.lab.resolvers import unbound_server
from edgeagent.model import Action, DesiredState, Entry, Indicator
from edgeagent.proxy.stoppage import StopPageSettings, StopPageSource, create_stop_page_app
from tests.support.aliases import publish_with_aliases
from tests.support.binaries import require_binary
from tests.support.figures import Tally, recorded_at_module_end
from tests.support.spellings import page_spellings, prefix_siblings, prefix_spellings
from tests.support.squid import Reply, pipelined, send, start_squid
from tests.support.webapps import BackgroundApps

pytestmark = pytest.mark.integration

SITE = "bypass.site.test"
OTHER = "other.site.test"
PAGE = "/listed/Page.html"
PREFIX = "/listed/dir"  # a url-prefix entry without a trailing slash
QUERY_PAGE = "/view.php"  # listed with ?id=1 only
MODES = {"proxy": "forward", "accel": "accelerated", "accel-absolute": "accelerated"}
BYPASS = {mode: Tally("bypass", mode) for mode in sorted(set(MODES.values()))}


class Sites(BackgroundApps):
    """The origin (records the raw target of every request it gets) and the stop page."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str] = []

        async def page(request: web.Request) -> web.Response:
            self.hits.append(request.raw_path)
            return web.Response(text=f"origin {request.host.split(':')[0]} {request.path}")

        origin = web.Application()
        origin.router.add_get("/{tail:.*}", page)
        self.origin_port = self.serve(origin, HOST)
        stop = StopPageSettings(sources={"iwf": StopPageSource("the Example Hotline")})
        self.stop_port = self.serve(create_stop_page_app(stop), HOST)


@dataclass
class Env:
    sites: Sites
    squid: RunningSquid

    def request(self, via: str, target: str, host: str, version: str = "HTTP/1.1") -> Reply:
        """``via`` "proxy": absolute-form to the explicit proxy port; "accel": origin-form
        to the diverted port; "accel-absolute": absolute-form to the diverted port."""
        if via == "accel":
            return send(HOST, self.squid.accel_port, f"GET {target} {version}", host)
        port = self.squid.proxy_port if via == "proxy" else self.squid.accel_port
        return send(HOST, port, f"GET http://{host}{target} {version}", host)

    @property
    def stop_location(self) -> str:
        return f"http://{HOST}:{self.sites.stop_port}/blocked?source=iwf"

    def assert_refused(self, via: str, target: str, host: str, version: str = "HTTP/1.1") -> None:
        tally = BYPASS[MODES[via]]
        tally.add("tried")
        before = len(self.sites.hits)
        reply = self.request(via, target, host, version)
        assert (reply.status, reply.location) == (
            302,
            self.stop_location,
        ), f"{via} {target} Host: {host} {version} -> {reply.status} {reply.body[:80]}"
        assert len(self.sites.hits) == before, f"{target} reached the origin"
        tally.add("refused")

    def assert_passed(self, via: str, target: str, host: str) -> None:
        tally = BYPASS[MODES[via]]
        tally.add("siblings")
        reply = self.request(via, target, host)
        assert reply.status == 200, f"{via} {target} Host: {host} -> {reply.status}"
        assert reply.body.startswith(f"origin {host.split(':', maxsplit=1)[0]} ")
        tally.add("siblings_passed")


bypass_figures = recorded_at_module_end(*BYPASS.values())


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    require_binary("squid")
    require_binary("unbound")
    sites = Sites()
    work = Path(tempfile.mkdtemp(prefix="edgeagent-bypass-"))
    os.chmod(work, 0o755)
    index = work / "proxy-index.bin"
    state = DesiredState(
        1,
        tuple(
            Entry(Indicator.parse(scope, f"http://{SITE}{target}"), Action.BLOCK, "iwf")
            for scope, target in (
                ("url", PAGE),
                ("url-prefix", PREFIX),
                ("url", QUERY_PAGE + "?id=1"),
            )
        ),
        (),
    )
    # The listed host resolves to the origin's loopback address (as OTHER does).
    with unbound_server([(SITE, "A", HOST), (OTHER, "A", HOST)], zones=("site.test",)) as dns:
        # Three entries on one host, one address: three aliases.
        assert publish_with_aliases(state, index, dns) == 3
    squid = start_squid(
        work / "squid", index, f"http://{HOST}:{sites.stop_port}", {SITE: HOST, OTHER: HOST}
    )
    try:
        yield Env(sites, squid)
    finally:
        squid.stop()
        sites.close()
        shutil.rmtree(work, ignore_errors=True)


VIAS = ["proxy", "accel"]


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("target", page_spellings(PAGE))
def test_listed_page_is_refused_in_every_spelling(env: Env, via: str, target: str) -> None:
    env.assert_refused(via, target, f"{SITE}:{env.sites.origin_port}")


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("target", prefix_spellings(PREFIX))
def test_url_prefix_without_slash_is_refused_in_every_spelling(
    env: Env, via: str, target: str
) -> None:
    env.assert_refused(via, target, f"{SITE}:{env.sites.origin_port}")


@pytest.mark.parametrize("via", ["proxy", "accel", "accel-absolute"])
@pytest.mark.parametrize(
    "host", ["{site}:{port}", "BYPASS.Site.TEST:{port}", "{site}.:{port}", "{site}:80", "{site}"]
)
def test_host_spellings_and_request_forms(env: Env, via: str, host: str) -> None:
    spelled = host.format(site=SITE, port=env.sites.origin_port)
    for target in (PAGE, PAGE + "#x", PAGE + "?a=1", PREFIX + "#x"):
        env.assert_refused(via, target, spelled)


@pytest.mark.parametrize("via", ["proxy", "accel", "accel-absolute"])
def test_http_1_0(env: Env, via: str) -> None:
    for target in (PAGE, PAGE + "#x", PAGE + "?", PREFIX + "?x"):
        env.assert_refused(via, target, f"{SITE}:{env.sites.origin_port}", "HTTP/1.0")


def test_http_1_0_absolute_uri_without_host_header(env: Env) -> None:
    host = f"{SITE}:{env.sites.origin_port}"
    for target in (PAGE + "#x", PAGE + "?&"):
        BYPASS["forward"].add("tried")
        reply = send(HOST, env.squid.proxy_port, f"GET http://{host}{target} HTTP/1.0", None)
        assert reply.status == 302, target
        assert reply.location.endswith("/blocked?source=iwf")
        BYPASS["forward"].add("refused")


@pytest.mark.parametrize("via", VIAS)
def test_pipelined_listed_page_after_a_sibling(env: Env, via: str) -> None:
    """Two requests in one write: the second is judged as itself, not as the first."""
    host = f"{SITE}:{env.sites.origin_port}"
    prefix = "" if via == "accel" else f"http://{host}"
    port = env.squid.proxy_port if via == "proxy" else env.squid.accel_port
    for listed in (PAGE, PAGE + "#x", PREFIX + "?x"):
        tally = BYPASS[MODES[via]]
        tally.add("tried")
        before = len(env.sites.hits)
        first, second = pipelined(
            HOST, port, [f"GET {prefix}/listed/Sibling.html", f"GET {prefix}{listed}"], host
        )
        assert first.status == 200, first
        assert (second.status, second.location) == (302, env.stop_location), (listed, second)
        assert env.sites.hits[before:] == ["/listed/Sibling.html"]
        tally.add("refused")


def test_connect_to_port_80_is_refused(env: Env) -> None:
    """A tunnel to port 80 would carry any request past the helper: Squid refuses it."""
    for authority in (f"{SITE}:80", f"{SITE}:{env.sites.origin_port}"):
        BYPASS["forward"].add("tried")
        before = len(env.sites.hits)
        reply = send(HOST, env.squid.proxy_port, f"CONNECT {authority} HTTP/1.1", authority)
        assert reply.status == 403, (authority, reply)
        assert len(env.sites.hits) == before
        BYPASS["forward"].add("refused")


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize(
    ("query", "listed"),
    [
        ("?id=1", True),
        ("?id=%31", True),
        ("?id=1&", True),
        ("?x=2&id=1", True),
        ("?id=1#x", True),
        ("?id=2", False),
        ("?id=12", False),
        ("", False),
    ],
)
def test_url_entry_with_a_query(env: Env, via: str, query: str, listed: bool) -> None:
    host = f"{SITE}:{env.sites.origin_port}"
    if listed:
        env.assert_refused(via, QUERY_PAGE + query, host)
    else:
        env.assert_passed(via, QUERY_PAGE + query, host)


@pytest.mark.parametrize("via", VIAS)
def test_siblings_and_other_hosts_pass(env: Env, via: str) -> None:
    port = env.sites.origin_port
    siblings = ["/listed/Sibling.html", "/listed/Page.htmlx", "/listed/Page.html/x"]
    for target in siblings + prefix_siblings(PREFIX):
        env.assert_passed(via, target, f"{SITE}:{port}")
    for target in (PAGE, PAGE + "#x", PREFIX + "/x"):
        env.assert_passed(via, target, f"{OTHER}:{port}")
    # What the origin got for a fragment in the request line: the raw "#" (it drops it),
    # which is why the proxy must refuse it on the listed host.
    assert "/listed/Page.html#x" in env.sites.hits


# The origin's address as the client may spell it: dotted, octal, hex, one decimal number,
# IPv4-mapped IPv6. Squid reads some of them as names it cannot resolve: refused first.
ADDRESS_SPELLINGS = [
    "{ip}:{port}",
    "{ip}",
    "0177.0.0.1:{port}",
    "0x7f.0.0.1:{port}",
    "2130706433:{port}",
    "[::ffff:{ip}]:{port}",
]


@pytest.mark.parametrize("via", ["proxy", "accel", "accel-absolute"])
@pytest.mark.parametrize("host", ADDRESS_SPELLINGS)
def test_the_origin_address_in_place_of_the_name_is_refused(env: Env, via: str, host: str) -> None:
    spelled = host.format(ip=HOST, port=env.sites.origin_port)
    for target in (PAGE, PAGE + "#x", "/listed/%50age.html", PREFIX + "/x", QUERY_PAGE + "?id=1"):
        env.assert_refused(via, target, spelled)


@pytest.mark.parametrize("via", ["proxy", "accel", "accel-absolute"])
def test_siblings_on_the_origin_address_pass(env: Env, via: str) -> None:
    for target in ("/listed/Sibling.html", PREFIX + "x", QUERY_PAGE + "?id=2"):
        env.assert_passed(via, target, f"{HOST}:{env.sites.origin_port}")
