"""The bypass matrix through the shipped Squid's ``intercept`` port (route diversion).

In production the policy routes bring a diverted client's port-80 traffic to the proxy
host, where a netfilter ``REDIRECT`` hands it to Squid's ``intercept`` port: the client
believes it talks to the origin. Here, in two network namespaces the test creates and
joins with a veth pair (needs root, ``iptables``), as in production:

- the proxy host's namespace: its address ``198.51.100.80`` on its end of the link, the
  site's address ``203.0.113.10`` on its loopback, where the origin (a small Python server
  that records the raw request target) listens on port 80, and
  ``iptables -t nat -A PREROUTING -i LINK -d 203.0.113.10 -p tcp --dport 80 -j REDIRECT``
  to Squid's intercept port, so the routed connections reach Squid at the link's address
  and Squid's own connections go to the origin;
- the client's namespace, ``198.51.100.2``, with the policy route: the site's address
  via the proxy host;
- the Squid config as ``edgeagent render`` writes it for a proxy at ``198.51.100.80``
  (every port on that address) with only its commented intercept line turned on, helper
  and prefilter over the index the proxy enforcer writes for a ``DesiredState`` with one
  ``url`` and one ``url-prefix`` (no trailing slash) entry, with the IP-literal aliases of
  the site's address (resolved through a real Unbound, :mod:`edgeagent.proxy.aliases`).

The client writes each request to ``203.0.113.10:80`` byte for byte, from its own
namespace. Every spelling of the listed page is refused (302 to the stop page, nothing at
the origin; a request naming no host, or the site's address as host in any spelling,
gets Squid's 403 whole: the route diverted that address because a listed site lives
there) and the siblings pass; tried and refused are counted as mode ``intercepted`` into
``var/reliability/bypass.json``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeagent.lab.daemons import stop_process
from edgeagent.lab.proxy import render_squid_conf
from edgeagent.lab.resolvers import unbound_server
from edgeagent.model import Action, DesiredState, Entry, Indicator
from tests.support.aliases import publish_with_aliases
from tests.support.binaries import require_binary
from tests.support.figures import Tally, recorded_at_module_end
from tests.support.spellings import page_spellings, prefix_siblings, prefix_spellings
from tests.support.squid import Reply

pytestmark = pytest.mark.integration

SITE = "bypass.site.test"
SITE_ADDR = "203.0.113.10"
PROXY_ADDR = "198.51.100.80"  # the proxy host: every port of the rendered config on it
CLIENT_ADDR = "198.51.100.2"
PAGE = "/listed/Page.html"
PREFIX = "/listed/dir"
INTERCEPT_PORT = 3129
STOP_URL = "http://stop.example"
TALLY = Tally("bypass", "intercepted")

_ORIGIN = r"""
import http.server, sys
log = open(sys.argv[1], "a", buffering=1)
class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        log.write(self.path + "\n")
        body = f"origin {self.headers.get('Host', '')} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[2], 80), Page).serve_forever()
"""

# Sends each base64 request to the site as is; prints one JSON reply per request.
_CLIENT = r"""
import base64, json, socket, sys, time
address, requests = sys.argv[1], json.loads(sys.stdin.read())
deadline = time.monotonic() + 30
replies = []
for raw in requests:
    while True:
        try:
            sock = socket.create_connection((address, 80), timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with sock:
        sock.sendall(base64.b64decode(raw))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    replies.append(data.decode("latin-1"))
print(json.dumps(replies))
"""


def _netns(name: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", name, *args]


@dataclass
class Env:
    client_ns: str
    hits: Path

    def exchange(self, raw_requests: list[str]) -> list[str]:
        """Each raw request (text) on its own connection to the site; the raw replies."""
        encoded = [base64.b64encode(r.encode("latin-1")).decode() for r in raw_requests]
        out = subprocess.run(
            _netns(self.client_ns, sys.executable, "-c", _CLIENT, SITE_ADDR),
            input=json.dumps(encoded),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        replies: list[str] = json.loads(out.stdout)
        return replies

    def hit_count(self) -> int:
        return len(self.hits.read_text().splitlines())


def _replies(raw: str) -> list[Reply]:
    """Every response in ``raw`` (pipelined ones one after the other)."""
    replies = []
    rest = raw
    while rest.startswith("HTTP/"):
        head, _, rest = rest.partition("\r\n\r\n")
        lines = head.split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        length = int(fields.get("content-length", "0"))
        body, rest = rest[:length], rest[length:]
        replies.append(Reply(int(lines[0].split()[1]), fields.get("location", ""), body))
    return replies


def _request(target: str, host: str | None, version: str = "HTTP/1.1", close: bool = True) -> str:
    head = f"GET {target} {version}\r\n"
    if host is not None:
        head += f"Host: {host}\r\n"
    return head + ("Connection: close\r\n" if close else "") + "\r\n"


bypass_figures = recorded_at_module_end(TALLY)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    for program in ("squid", "iptables", "unbound"):
        require_binary(program)
    if os.geteuid() != 0:
        pytest.fail("the intercept test needs root (network namespace, iptables)")
    tag = uuid.uuid4().hex[:8]
    ns, client_ns = f"ea-icpt-{tag}", f"ea-icpc-{tag}"
    link, client_link = f"eap{tag}", f"eac{tag}"
    work = Path(tempfile.mkdtemp(prefix="edgeagent-intercept-"))
    os.chmod(work, 0o755)  # Squid's helper (user proxy) reads the index here
    index = work / "proxy-index.bin"
    state = DesiredState(
        1,
        tuple(
            Entry(Indicator.parse(scope, f"http://{SITE}{target}"), Action.BLOCK, "iwf")
            for scope, target in (("url", PAGE), ("url-prefix", PREFIX))
        ),
        (),
    )
    with unbound_server([(SITE, "A", SITE_ADDR)], zones=("site.test",)) as dns:
        assert publish_with_aliases(state, index, dns) == 2
    squid_dir = work / "squid"
    squid_dir.mkdir()
    os.chmod(squid_dir, 0o777)  # a throwaway work directory Squid's user writes in
    conf, _, _ = render_squid_conf(
        squid_dir,
        index,
        STOP_URL,
        listen=PROXY_ADDR,
        proxy_port=3128,
        accel_port=3130,
        hosts={SITE: SITE_ADDR},
        intercept_port=INTERCEPT_PORT,
    )
    assert f"\nhttp_port {PROXY_ADDR}:{INTERCEPT_PORT} intercept " in conf.read_text()
    hits = work / "hits.log"
    hits.touch()
    procs: list[subprocess.Popen[bytes]] = []
    namespaces: list[str] = []
    try:
        for name in (ns, client_ns):
            subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
            namespaces.append(name)
        veth = f"ip link add {link} netns {ns} type veth peer name {client_link} netns {client_ns}"
        subprocess.run(veth.split(), check=True, timeout=10)
        redirect = f"iptables -t nat -A PREROUTING -i {link} -d {SITE_ADDR} -p tcp --dport 80 "
        redirect += f"-j REDIRECT --to-ports {INTERCEPT_PORT}"
        for where, args in (
            (ns, "link set lo up"),
            (ns, f"addr add {SITE_ADDR}/32 dev lo"),
            (ns, f"addr add {PROXY_ADDR}/24 dev {link}"),
            (ns, f"link set {link} up"),
            (client_ns, "link set lo up"),
            (client_ns, f"addr add {CLIENT_ADDR}/24 dev {client_link}"),
            (client_ns, f"link set {client_link} up"),
            # The policy route: the listed site's address goes to the proxy host.
            (client_ns, f"route add {SITE_ADDR}/32 via {PROXY_ADDR}"),
        ):
            subprocess.run(["ip", "-n", where, *args.split()], check=True, timeout=10)
        subprocess.run(_netns(ns, *redirect.split()), check=True, timeout=10)
        procs.append(
            subprocess.Popen(_netns(ns, sys.executable, "-c", _ORIGIN, str(hits), SITE_ADDR))
        )
        with (squid_dir / "squid.out").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    _netns(ns, "squid", "-N", "-f", str(conf)),
                    cwd=squid_dir,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        env = Env(client_ns, hits)
        _wait_for_squid(env, procs[-1], squid_dir)
        yield env
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        for name in namespaces:  # the veth pair goes with them
            subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def _wait_for_squid(env: Env, squid: subprocess.Popen[bytes], workdir: Path) -> None:
    """Until an intercepted request of the sibling page comes back from the origin."""
    deadline = time.monotonic() + 60
    while True:
        if squid.poll() is not None:
            log = (workdir / "cache.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"squid exited with {squid.returncode}:\n{log}")
        (raw,) = env.exchange([_request("/listed/Sibling.html", SITE)])
        replies = _replies(raw)
        if replies and replies[0].status == 200 and "squid" in raw.lower():
            return
        assert time.monotonic() < deadline, f"intercept port never answered: {raw[:300]}"
        time.sleep(0.5)


STOP_PAGE = (302, f"{STOP_URL}/blocked?source=iwf")
UNNAMED = (403, "")  # Squid's own refusal: no host name to match


def assert_refused(
    env: Env, raw_requests: list[str], what: str, refusal: tuple[int, str] = STOP_PAGE
) -> None:
    """Each request refused (``refusal``: status and location), nothing at the origin."""
    TALLY.add("tried", len(raw_requests))
    before = env.hit_count()
    for raw, request in zip(env.exchange(raw_requests), raw_requests, strict=True):
        replies = _replies(raw)
        assert [(r.status, r.location) for r in replies] == [refusal], (
            f"{what}: {request!r} -> {raw[:200]!r}"
        )
        TALLY.add("refused")
    assert env.hit_count() == before, f"{what} reached the origin"


def test_every_spelling_of_the_listed_page_is_refused(env: Env) -> None:
    targets = page_spellings(PAGE) + prefix_spellings(PREFIX)
    assert_refused(env, [_request(t, SITE) for t in targets], "origin-form")


def test_host_spellings_absolute_form_and_http_1_0(env: Env) -> None:
    requests = [
        _request(target, host)
        for host in ("BYPASS.Site.TEST", f"{SITE}.", f"{SITE}:80")
        for target in (PAGE, PAGE + "#x", PREFIX + "?x")
    ]
    requests += [_request(f"http://{SITE}{PAGE}", SITE), _request(f"http://{SITE}{PAGE}#x", SITE)]
    requests += [_request(t, SITE, "HTTP/1.0") for t in (PAGE + "#x", PAGE + "?&")]
    assert_refused(env, requests, "host spelling")


def test_a_request_naming_no_host_is_refused(env: Env) -> None:
    """HTTP/1.0 without Host, or the diverted address as Host: Squid knows only the
    address, which the route diverted because a listed site lives there."""
    requests = [_request(t, None, "HTTP/1.0") for t in (PAGE, PAGE + "?", "/listed/Sibling.html")]
    requests += [_request(PAGE, host) for host in (SITE_ADDR, f"{SITE_ADDR}:80")]
    requests += [_request(f"http://{SITE_ADDR}{PAGE}", SITE)]
    # The address spelled with letters (hex parts, one hex number): no name either, Squid
    # reads it as the address it connected to (and the helper would refuse its alias).
    requests += [_request(t, "0xcb.0x0.0x71.0xa") for t in (PAGE, PREFIX, "/listed/Sibling.html")]
    requests += [_request(f"http://0xcb00710a{PAGE}", SITE)]
    assert_refused(env, requests, "no host name", UNNAMED)


def test_pipelined_listed_page_after_a_sibling(env: Env) -> None:
    TALLY.add("tried")
    before = env.hit_count()
    pipeline = _request("/listed/Sibling.html", SITE, close=False) + _request(PAGE + "#x", SITE)
    (raw,) = env.exchange([pipeline])
    replies = _replies(raw)
    assert [r.status for r in replies] == [200, 302], raw[:400]
    assert replies[1].location == f"{STOP_URL}/blocked?source=iwf"
    assert env.hit_count() == before + 1  # the sibling only
    TALLY.add("refused")


def test_siblings_pass(env: Env) -> None:
    targets = ["/listed/Sibling.html", "/listed/Page.htmlx", *prefix_siblings(PREFIX)]
    TALLY.add("siblings", len(targets))
    for target, raw in zip(
        targets, env.exchange([_request(t, SITE) for t in targets]), strict=True
    ):
        replies = _replies(raw)
        assert [r.status for r in replies] == [200], f"{target} -> {raw[:200]!r}"
        assert replies[0].body == f"origin {SITE} {target}"
        TALLY.add("siblings_passed")
