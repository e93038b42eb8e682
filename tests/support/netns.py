"""Network namespaces for the route-diversion tests: client, proxy and origin.

Topology (one set of namespaces per use, unique names, always deleted)::

    client  c-p 192.0.2.1/24    2001:db8:1::1/64 ---- p-c 192.0.2.2/24    2001:db8:1::2/64  proxy
            c-o 198.51.100.1/24 2001:db8:2::1/64 ---- o-c 198.51.100.2/24 2001:db8:2::2/64  origin

The origin holds the "site" addresses 203.0.113.10 (:data:`DIVERTED`), 203.0.113.20
(:data:`DIRECT`) and 2001:db8:3::10 (:data:`DIVERTED6`) on its loopback; the client's main
table reaches them via the origin. The client itself holds the policy rules (it plays the
ISP router). The proxy accepts diverted traffic for a non-local destination by the simplest
trick: it carries the diverted addresses on its own loopback, so the kernel delivers them
locally. (The real deployment uses Squid ``intercept`` with TPROXY/REDIRECT instead.)

Listeners are small Python subprocesses under ``ip netns exec``: they answer every TCP
connection on ports 80 and 443 with their namespace's role ("proxy" or "origin") and close.
Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

TABLE = 100  # the policy routing table the tests configure
PROTO = 200  # the route protocol number that marks the agent's routes
OURS = str(PROTO)
DIVERTED = "203.0.113.10"
DIRECT = "203.0.113.20"
DIVERTED6 = "2001:db8:3::10"

_LISTENER = r"""
import selectors, socket, sys
role, ports = sys.argv[1], [int(p) for p in sys.argv[2].split(",")]
sel = selectors.DefaultSelector()
for port in ports:
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port))
        s.listen(16)
        sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.sendall(role.encode())
        conn.close()
"""

_PROBE = r"""
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    print(s.recv(64).decode() or "empty")
except OSError as exc:
    print(type(exc).__name__)
"""


def ip(ns: str, *args: str) -> None:
    """``ip -n NS ARGS...``; raises if iproute2 refuses."""
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=10)


@dataclass
class Netns:
    """The names of the three namespaces, and what the client sees."""

    client: str
    proxy: str
    origin: str

    def probe(self, address: str, port: int) -> str:
        """Connect from the client namespace; the role that answered, or the error name."""
        out = subprocess.run(
            ["ip", "netns", "exec", self.client, sys.executable, "-c", _PROBE, address, str(port)],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip()

    def table(self, table: int = TABLE) -> dict[str, str]:
        """Destinations in the client's policy table -> route protocol, as iproute2 sees it."""
        found: dict[str, str] = {}
        for fam in ("-4", "-6"):
            out = subprocess.run(
                ["ip", "-j", fam, "-n", self.client, "route", "show", "table", str(table)],
                check=False,
                capture_output=True,
                text=True,
                timeout=10,
            )
            if out.returncode != 0:
                # iproute2 says "FIB table does not exist" for a table with no routes yet.
                assert "does not exist" in out.stderr, out.stderr
                continue
            for route in json.loads(out.stdout):
                dst = str(ipaddress.ip_network(route["dst"]))
                found[dst] = str(route.get("protocol", ""))
        return found

    def rules(self, table: int = TABLE) -> set[tuple[str, int]]:
        """(family flag, dport) of the client's rules that look up our table with our mark."""
        found: set[tuple[str, int]] = set()
        for fam in ("-4", "-6"):
            out = subprocess.run(
                ["ip", "-j", fam, "-n", self.client, "rule", "show"],
                check=True,
                capture_output=True,
                text=True,
                timeout=10,
            )
            for rule in json.loads(out.stdout):
                if rule.get("table") == str(table) and rule.get("protocol") == OURS:
                    assert rule.get("ipproto") == "tcp"
                    found.add((fam, int(rule["dport"])))
        return found


def _build(netns: Netns) -> None:
    for ns in (netns.client, netns.proxy, netns.origin):
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
        ip(ns, "link", "set", "lo", "up")
    for here, there, a, b, v4, v6 in (
        (netns.client, netns.proxy, "c-p", "p-c", "192.0.2", "2001:db8:1::"),
        (netns.client, netns.origin, "c-o", "o-c", "198.51.100", "2001:db8:2::"),
    ):
        ip(here, "link", "add", a, "type", "veth", "peer", "name", b, "netns", there)
        ip(here, "addr", "add", f"{v4}.1/24", "dev", a)
        ip(there, "addr", "add", f"{v4}.2/24", "dev", b)
        # nodad: no 1-2 s wait for duplicate address detection before the address works.
        ip(here, "addr", "add", f"{v6}1/64", "dev", a, "nodad")
        ip(there, "addr", "add", f"{v6}2/64", "dev", b, "nodad")
        ip(here, "link", "set", a, "up")
        ip(there, "link", "set", b, "up")
    for addr in (f"{DIVERTED}/32", f"{DIRECT}/32", f"{DIVERTED6}/128"):
        ip(netns.origin, "addr", "add", addr, "dev", "lo")
    ip(netns.origin, "route", "add", "default", "via", "198.51.100.1")
    ip(netns.origin, "-6", "route", "add", "default", "via", "2001:db8:2::1")
    ip(netns.client, "route", "add", "203.0.113.0/24", "via", "198.51.100.2")
    ip(netns.client, "-6", "route", "add", "2001:db8:3::/64", "via", "2001:db8:2::2")
    # The proxy answers for the diverted addresses itself (see the module docstring).
    ip(netns.proxy, "addr", "add", f"{DIVERTED}/32", "dev", "lo")
    ip(netns.proxy, "addr", "add", f"{DIVERTED6}/128", "dev", "lo")


def _listener(ns: str, role: str, ports: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", _LISTENER, role, ports],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise RuntimeError(f"{role} listener failed: {proc.stderr.read() if proc.stderr else ''}")
    return proc


@contextlib.contextmanager
def diversion_namespaces() -> Iterator[Netns]:
    """Build the three namespaces and their listeners; delete them all afterwards."""
    tag = uuid.uuid4().hex[:8]
    netns = Netns(client=f"ea-{tag}-client", proxy=f"ea-{tag}-proxy", origin=f"ea-{tag}-origin")
    procs: list[subprocess.Popen[str]] = []
    try:
        _build(netns)
        procs.append(_listener(netns.proxy, "proxy", "80,443"))
        procs.append(_listener(netns.origin, "origin", "80,443"))
        yield netns
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=5)
        for ns in (netns.client, netns.proxy, netns.origin):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=10)
        leftover = subprocess.run(
            ["ip", "netns", "list"], check=False, capture_output=True, text=True, timeout=10
        ).stdout
        assert tag not in leftover
