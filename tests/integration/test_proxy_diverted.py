"""A diverted client, end to end: policy resolver -> proxy address -> Squid -> origin.

Real components only, on loopback addresses (any 127.0.0.0/8 address works on Linux):

- an authoritative ``named`` for ``test.`` (127.0.0.1, high port);
- ``127.0.6.53:53`` a resolver WITHOUT the diversion policy (Unbound, stub to it): what
  Squid resolves through (``dns_nameservers``, which takes no port);
- the zone-file BIND and Unbound resolver templates (``edgeagent/render/templates``),
  forwarding ``test.`` to the authoritative server and loading the RPZ compiled by
  ``edgeagent.rpz.compiler`` from a ``DesiredState`` with one ``url`` entry: its host is
  diverted by local data to the proxy address;
- ``127.0.6.80`` the shipped Squid config with the helper and the index written by the
  proxy enforcer from the same ``DesiredState`` (``accel vhost`` port for origin-form
  requests, explicit port), with the IP-literal aliases of the listed host it resolved
  through the unfiltered resolver (:mod:`edgeagent.proxy.aliases`);
- ``127.0.6.10`` the origin (aiohttp), serving both pages of ``mixed.site.test`` and the
  unlisted host; the stop page (aiohttp) on 127.0.0.1.

The client resolves with dnspython through a policy resolver and sends an origin-form
request (no proxy setting) to the address it got, on the test's port (diversion is about
the address; origin and Squid's accel port share one high port number). Spellings tried
and refused are counted as proxy mode ``diverted`` into ``var/reliability/bypass.json``;
so are the requests that name the origin's address (in any spelling) instead of the host.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from aiohttp import web

from edgeagent.lab.daemons import RunningDaemon, free_tcp_port
from edgeagent.lab.proxy import RunningSquid
from edgeagent.lab.resolvers import (
    start_authoritative,
    start_named,
    start_unbound,
    start_unfiltered_resolver,
)
from edgeagent.model import Action, DesiredState, Entry, Indicator
from edgeagent.proxy.stoppage import StopPageSettings, StopPageSource, create_stop_page_app
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ZoneRelease, zone_file_name
from edgeagent.rpz.publishers.zonefile import ZonefilePublisher
from tests.support.aliases import publish_with_aliases
from tests.support.binaries import require_binary
from tests.support.figures import Tally, recorded_at_module_end
from tests.support.resolvers import stop_all
from tests.support.spellings import page_spellings, prefix_siblings, prefix_spellings
from tests.support.squid import raw_get, send, start_squid
from tests.support.webapps import BackgroundApps

pytestmark = pytest.mark.integration

PROXY_ADDR = "127.0.6.80"  # the diversion target: Squid (and, for 443, the pass-through)
ORIGIN_ADDR = "127.0.6.10"
DNS_ADDR = "127.0.6.53"  # unfiltered DNS, port 53
CLIENT_ADDR = "127.0.6.99"  # the diverted client's source address
STOP_HOST = "127.0.0.1"

SITE = "mixed.site.test"
UNLISTED = "unlisted.site.test"
LISTED_PATH = "/gallery/listed.html"
SIBLING_PATH = "/gallery/sibling.html"
PREFIX_PATH = "/gallery/dir"  # a url-prefix entry without a trailing slash

ZONE = textwrap.dedent(
    f"""\
    $TTL 60
    @ SOA ns.test. hostmaster.test. 1 60 60 600 60
    @ NS ns.test.
    ns A {DNS_ADDR}
    mixed.site A {ORIGIN_ADDR}
    unlisted.site A {ORIGIN_ADDR}
    """
)

STATE = DesiredState(
    1,
    (
        Entry(Indicator.parse("url", f"http://{SITE}{LISTED_PATH}"), Action.BLOCK, "iwf"),
        Entry(Indicator.parse("url-prefix", f"http://{SITE}{PREFIX_PATH}"), Action.BLOCK, "iwf"),
    ),
    (),
)
RPZ = RpzSettings(proxy_ipv4=PROXY_ADDR)
TALLY = Tally("bypass", "diverted")


class Origin(BackgroundApps):
    """The origin and the stop page in a background event loop; records what arrived."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.hits: list[dict[str, str]] = []
        self.stop_hits: list[str] = []
        self.serve(self._origin_app(), ORIGIN_ADDR, port)
        settings = StopPageSettings(sources={"iwf": StopPageSource("the Example Hotline")})
        app = create_stop_page_app(settings, on_hit=self.stop_hits.append)
        self.stop_port = self.serve(app, STOP_HOST)

    def _origin_app(self) -> web.Application:
        async def page(request: web.Request) -> web.Response:
            self.hits.append(
                {
                    "host": request.host,
                    "path": request.path,
                    "xff": request.headers.get("X-Forwarded-For", ""),
                    "via": request.headers.get("Via", ""),
                }
            )
            return web.Response(text=f"origin {request.host.split(':')[0]} {request.path}")

        app = web.Application()
        app.router.add_get("/{tail:.*}", page)
        return app


@dataclass
class Env:
    origin: Origin
    squid: RunningSquid
    resolvers: dict[str, RunningDaemon]
    port: int


bypass_figures = recorded_at_module_end(TALLY)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    for program in ("named", "unbound", "squid"):
        require_binary(program)
    base = Path(tempfile.mkdtemp(prefix="edgeagent-divert-"))
    os.chmod(base, 0o755)  # Squid's helper (user proxy) reads the index here
    zone_dir = base / "zones"
    zone_dir.mkdir()
    ZonefilePublisher(
        "zonefile",
        policy_path=zone_dir / zone_file_name(RPZ.zone),
        exception_path=zone_dir / zone_file_name(RPZ.exception_zone),
    ).publish(ZoneRelease(STATE, RPZ, 1))
    index = base / "proxy-index.bin"

    port = free_tcp_port(PROXY_ADDR, ORIGIN_ADDR)
    origin = Origin(port)
    auth = plain = named = unbound = None
    squid: RunningSquid | None = None
    try:
        auth = start_authoritative(base / "auth", {"test": ZONE})
        plain = start_unfiltered_resolver(base / "plain", DNS_ADDR, {"test": auth.port})
        # The agent resolves the listed host WITHOUT the policy: the origin's address.
        assert publish_with_aliases(STATE, index, (DNS_ADDR, 53)) == 2
        named = start_named(base / "named", zone_dir, forwards={"test": auth.port}, rpz=RPZ)
        unbound = start_unbound(base / "unbound", zone_dir, stubs={"test": auth.port}, rpz=RPZ)
        squid = start_squid(
            base / "squid",
            index,
            f"http://{STOP_HOST}:{origin.stop_port}",
            {},  # no hosts file entries: Squid resolves through the unfiltered DNS only
            listen=PROXY_ADDR,
            accel_port=port,
            resolver=DNS_ADDR,
        )
        yield Env(origin, squid, {"named": named, "unbound": unbound}, port)
    finally:
        if squid is not None:
            squid.stop()
        stop_all(unbound, named, plain, auth)
        origin.close()
        shutil.rmtree(base, ignore_errors=True)


def resolve(d: RunningDaemon, name: str, rtype: str = "A") -> tuple[int, list[str]]:
    """(rcode, addresses) as a client of the policy resolver ``d`` sees them."""
    q = dns.message.make_query(name, rtype)
    r = dns.query.udp(q, d.host, port=d.port, timeout=5)
    addrs = [
        rr.to_text() for rrset in r.answer for rr in rrset if rrset.rdtype == q.question[0].rdtype
    ]
    return r.rcode(), addrs


def get(
    addr: str, port: int, target: str, host: str | None = None
) -> tuple[int, dict[str, str], str]:
    """``GET target`` from the client address, exactly as spelled, no proxy setting."""
    return raw_get(port, target, host, address=addr, source=CLIENT_ADDR)


def browse(env: Env, resolver: str, name: str, path: str) -> tuple[int, dict[str, str], str]:
    """What a browser without a proxy setting does: resolve ``name``, connect, send."""
    rcode, addrs = resolve(env.resolvers[resolver], name)
    assert rcode == dns.rcode.NOERROR
    assert len(addrs) == 1
    return get(addrs[0], env.port, path, host=f"{name}:{env.port}")


RESOLVERS = ["named", "unbound"]


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_listed_host_resolves_to_the_proxy_never_nxdomain(env: Env, resolver: str) -> None:
    d = env.resolvers[resolver]
    assert resolve(d, SITE) == (dns.rcode.NOERROR, [PROXY_ADDR])
    # No AAAA for the proxy here: NODATA, still not NXDOMAIN (the site must keep working).
    assert resolve(d, SITE, "AAAA") == (dns.rcode.NOERROR, [])
    assert resolve(d, UNLISTED) == (dns.rcode.NOERROR, [ORIGIN_ADDR])


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_diverted_client_gets_the_stop_page_for_the_listed_page(env: Env, resolver: str) -> None:
    status, headers, _ = browse(env, resolver, SITE, LISTED_PATH)
    assert status == 302
    location = headers["location"]
    assert location == f"http://{STOP_HOST}:{env.origin.stop_port}/blocked?source=iwf"
    # The browser follows the redirect to the agent's stop page: 451 (RFC 7725).
    conn = http.client.HTTPConnection(STOP_HOST, env.origin.stop_port, timeout=10)
    try:
        conn.request("GET", location.split(str(env.origin.stop_port), 1)[1])
        resp = conn.getresponse()
        body = resp.read().decode()
    finally:
        conn.close()
    assert resp.status == 451
    assert 'rel="blocked-by"' in (resp.getheader("Link") or "")
    assert "the Example Hotline" in body
    assert "iwf" in env.origin.stop_hits


@pytest.mark.parametrize(
    ("path", "host"),
    [
        ("/gallery/./listed.html", SITE),
        ("//gallery//listed%2Ehtml", SITE),
        ("/%67allery/listed.html", "MIXED.Site.TEST."),
    ],
)
def test_diverted_spellings_of_the_listed_page_are_refused(env: Env, path: str, host: str) -> None:
    TALLY.add("tried")
    status, headers, _ = get(PROXY_ADDR, env.port, path, host=f"{host}:{env.port}")
    assert status == 302
    assert headers["location"].endswith("/blocked?source=iwf")
    TALLY.add("refused")


@pytest.mark.parametrize("target", page_spellings(LISTED_PATH) + prefix_spellings(PREFIX_PATH))
def test_diverted_bypass_matrix(env: Env, target: str) -> None:
    """Raw request lines from the diverted client: a fragment, an empty or unrelated
    query, escapes, dot segments, path parameters; none reaches the origin."""
    TALLY.add("tried")
    before = len(env.origin.hits)
    reply = send(PROXY_ADDR, env.port, f"GET {target} HTTP/1.1", f"{SITE}:{env.port}", CLIENT_ADDR)
    assert reply.status == 302, target
    assert reply.location.endswith("/blocked?source=iwf")
    assert len(env.origin.hits) == before
    TALLY.add("refused")


def test_diverted_prefix_siblings_pass(env: Env) -> None:
    for target in prefix_siblings(PREFIX_PATH):
        TALLY.add("siblings")
        reply = send(
            PROXY_ADDR, env.port, f"GET {target} HTTP/1.1", f"{SITE}:{env.port}", CLIENT_ADDR
        )
        assert reply.status == 200, target
        assert reply.body == f"origin {SITE} {target}"
        TALLY.add("siblings_passed")


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_diverted_sibling_page_reaches_the_origin_through_squid(env: Env, resolver: str) -> None:
    before = len(env.origin.hits)
    status, headers, body = browse(env, resolver, SITE, SIBLING_PATH)
    assert status == 200, body
    assert body == f"origin {SITE} {SIBLING_PATH}"
    assert "squid" in headers.get("via", "").lower()  # it went through the proxy ...
    hit = env.origin.hits[before]
    # ... which resolved the name WITHOUT the diversion (else it would have looped to
    # itself) and told the origin who the client is (the 2008 lesson).
    assert hit["path"] == SIBLING_PATH
    assert hit["xff"] == CLIENT_ADDR
    assert "squid" in hit["via"].lower()


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_unlisted_host_is_untouched(env: Env, resolver: str) -> None:
    before = len(env.origin.hits)
    status, headers, body = browse(env, resolver, UNLISTED, LISTED_PATH)
    assert status == 200
    assert body == f"origin {UNLISTED} {LISTED_PATH}"
    assert "via" not in headers  # direct to the origin, no proxy on the path
    hit = env.origin.hits[before]
    assert (hit["xff"], hit["via"]) == ("", "")


def test_explicit_proxy_gives_the_same_answers(env: Env) -> None:
    proxy = env.squid.proxy_port
    status, headers, _ = get(PROXY_ADDR, proxy, f"http://{SITE}:{env.port}{LISTED_PATH}")
    assert status == 302
    assert headers["location"].endswith("/blocked?source=iwf")
    for host, path in ((SITE, SIBLING_PATH), (UNLISTED, LISTED_PATH)):
        status, _, body = get(PROXY_ADDR, proxy, f"http://{host}:{env.port}{path}")
        assert status == 200
        assert body == f"origin {host} {path}"
        assert env.origin.hits[-1]["xff"] == CLIENT_ADDR


def test_squid_config_resolves_through_the_unfiltered_server(env: Env) -> None:
    conf = env.squid.conf.read_text()
    assert f"dns_nameservers {DNS_ADDR}" in conf
    assert f"http_port {PROXY_ADDR}:{env.port} accel vhost" in conf
    assert (env.squid.workdir / "hosts").read_text() == ""


_ORIGIN_IP = ipaddress.IPv4Address(ORIGIN_ADDR)
# The origin's address as a client may write it: dotted, hex, octal, three parts (the
# last one 16 bits), one decimal number, IPv4-mapped IPv6.
ADDRESS_SPELLINGS = [
    ORIGIN_ADDR,
    ".".join(f"0x{b:x}" for b in _ORIGIN_IP.packed),
    ".".join(f"0{b:o}" for b in _ORIGIN_IP.packed),
    "{}.{}.{}".format(*_ORIGIN_IP.packed[:2], int.from_bytes(_ORIGIN_IP.packed[2:], "big")),
    str(int(_ORIGIN_IP)),
    f"[::ffff:{ORIGIN_ADDR}]",
]


@pytest.mark.parametrize("host", ADDRESS_SPELLINGS)
def test_diverted_origin_address_in_place_of_the_name_is_refused(env: Env, host: str) -> None:
    """The diverted port asked for the origin's address (Host, or absolute-form) instead
    of the listed name: refused through the address's aliases, nothing at the origin."""
    for target in (LISTED_PATH, LISTED_PATH + "#x", PREFIX_PATH + "/x"):
        for line in (f"GET {target}", f"GET http://{host}:{env.port}{target}"):
            TALLY.add("tried")
            before = len(env.origin.hits)
            reply = send(
                PROXY_ADDR, env.port, f"{line} HTTP/1.1", f"{host}:{env.port}", CLIENT_ADDR
            )
            assert reply.status == 302, (host, line, reply)
            assert reply.location.endswith("/blocked?source=iwf")
            assert len(env.origin.hits) == before
            TALLY.add("refused")


def test_diverted_sibling_on_the_origin_address_passes(env: Env) -> None:
    TALLY.add("siblings")
    reply = send(
        PROXY_ADDR,
        env.port,
        f"GET {SIBLING_PATH} HTTP/1.1",
        f"{ORIGIN_ADDR}:{env.port}",
        CLIENT_ADDR,
    )
    assert reply.status == 200, reply
    assert reply.body == f"origin {ORIGIN_ADDR} {SIBLING_PATH}"
    TALLY.add("siblings_passed")
