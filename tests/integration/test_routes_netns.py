"""Route diversion against the real kernel, in network namespaces this test creates.

Topology (one set of namespaces per test, unique names, always deleted)::

    client  c-p 192.0.2.1/24    2001:db8:1::1/64 ---- p-c 192.0.2.2/24    2001:db8:1::2/64  proxy
            c-o 198.51.100.1/24 2001:db8:2::1/64 ---- o-c 198.51.100.2/24 2001:db8:2::2/64  origin

The origin holds the "site" addresses 203.0.113.10 (diverted), 203.0.113.20 (not
diverted) and 2001:db8:3::10 on its loopback; the client's main table reaches them via the
origin. The client itself holds the policy rules (it plays the ISP router). The proxy
accepts diverted traffic for a non-local destination by the simplest trick: it carries the
diverted addresses on its own loopback, so the kernel delivers them locally. (The real
deployment uses Squid ``intercept`` with TPROXY/REDIRECT instead; out of scope here.)

Listeners are small Python subprocesses under ``ip netns exec``: they answer every TCP
connection with their namespace's role ("proxy" or "origin") and close.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from edgeagent.diversion.kernel import RouteApplyError, RouteReconciler
from edgeagent.diversion.plan import RoutePlan, RouteSettings, plan_routes

pytestmark = pytest.mark.netns

TABLE = 100
PROTO = 200
OURS = str(PROTO)
DIVERTED = "203.0.113.10"
DIRECT = "203.0.113.20"
DIVERTED6 = "2001:db8:3::10"
HOST = "pages.example.com"  # a host with URL-level entries

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


def _ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=10)


@dataclass
class Lab:
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


def _build(lab: Lab) -> None:
    for ns in (lab.client, lab.proxy, lab.origin):
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
        _ip(ns, "link", "set", "lo", "up")
    for here, there, a, b, v4, v6 in (
        (lab.client, lab.proxy, "c-p", "p-c", "192.0.2", "2001:db8:1::"),
        (lab.client, lab.origin, "c-o", "o-c", "198.51.100", "2001:db8:2::"),
    ):
        _ip(here, "link", "add", a, "type", "veth", "peer", "name", b, "netns", there)
        _ip(here, "addr", "add", f"{v4}.1/24", "dev", a)
        _ip(there, "addr", "add", f"{v4}.2/24", "dev", b)
        # nodad: no 1-2 s wait for duplicate address detection before the address works.
        _ip(here, "addr", "add", f"{v6}1/64", "dev", a, "nodad")
        _ip(there, "addr", "add", f"{v6}2/64", "dev", b, "nodad")
        _ip(here, "link", "set", a, "up")
        _ip(there, "link", "set", b, "up")
    for addr in (f"{DIVERTED}/32", f"{DIRECT}/32", f"{DIVERTED6}/128"):
        _ip(lab.origin, "addr", "add", addr, "dev", "lo")
    _ip(lab.origin, "route", "add", "default", "via", "198.51.100.1")
    _ip(lab.origin, "-6", "route", "add", "default", "via", "2001:db8:2::1")
    _ip(lab.client, "route", "add", "203.0.113.0/24", "via", "198.51.100.2")
    _ip(lab.client, "-6", "route", "add", "2001:db8:3::/64", "via", "2001:db8:2::2")
    # The proxy answers for the diverted addresses itself (see the module docstring).
    _ip(lab.proxy, "addr", "add", f"{DIVERTED}/32", "dev", "lo")
    _ip(lab.proxy, "addr", "add", f"{DIVERTED6}/128", "dev", "lo")


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


@pytest.fixture
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("network namespace tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN)")
    tag = uuid.uuid4().hex[:8]
    lab = Lab(client=f"ea-{tag}-client", proxy=f"ea-{tag}-proxy", origin=f"ea-{tag}-origin")
    procs: list[subprocess.Popen[str]] = []
    try:
        _build(lab)
        procs.append(_listener(lab.proxy, "proxy", "80,443"))
        procs.append(_listener(lab.origin, "origin", "80,443"))
        yield lab
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=5)
        for ns in (lab.client, lab.proxy, lab.origin):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=10)
        leftover = subprocess.run(
            ["ip", "netns", "list"], check=False, capture_output=True, text=True, timeout=10
        ).stdout
        assert tag not in leftover


def _settings(**overrides: object) -> RouteSettings:
    base: dict[str, object] = {
        "table": TABLE,
        "rule_priority": 1000,
        "ports": (80,),
        "next_hop_v4": ipaddress.IPv4Address("192.0.2.2"),
        "next_hop_v6": ipaddress.IPv6Address("2001:db8:1::2"),
        "allow_non_global": True,  # documentation addresses only, by the project's rules
        "rt_proto": PROTO,
    }
    base.update(overrides)
    return RouteSettings(**base)  # type: ignore[arg-type]


def _plan(settings: RouteSettings, *addresses: str) -> RoutePlan:
    return plan_routes({HOST: addresses}, settings)


async def test_port_80_to_diverted_address_reaches_proxy_others_go_direct(lab: Lab) -> None:
    settings = _settings()
    assert lab.probe(DIVERTED, 80) == "origin"  # before any policy

    rec = RouteReconciler(settings, netns=lab.client)
    result = await rec.reconcile(_plan(settings, DIVERTED, DIVERTED6))

    assert [str(d) for d in result.added] == [f"{DIVERTED}/32", f"{DIVERTED6}/128"]
    assert len(result.rules_added) == 2
    assert not result.failed
    assert lab.table() == {f"{DIVERTED}/32": OURS, f"{DIVERTED6}/128": OURS}
    assert lab.rules() == {("-4", 80), ("-6", 80)}
    assert lab.probe(DIVERTED, 80) == "proxy"
    assert lab.probe(DIVERTED6, 80) == "proxy"
    assert lab.probe(DIVERTED, 443) == "origin"
    assert lab.probe(DIVERTED6, 443) == "origin"
    assert lab.probe(DIRECT, 80) == "origin"

    again = await rec.reconcile(_plan(settings, DIVERTED, DIVERTED6))
    assert not again.changed
    assert again.installed == 2


async def test_policy_change_removes_route(lab: Lab) -> None:
    settings = _settings()
    rec = RouteReconciler(settings, netns=lab.client)
    await rec.reconcile(_plan(settings, DIVERTED))
    assert lab.probe(DIVERTED, 80) == "proxy"

    result = await rec.reconcile(_plan(settings, DIRECT))

    assert [str(d) for d in result.removed] == [f"{DIVERTED}/32"]
    assert [str(d) for d in result.added] == [f"{DIRECT}/32"]
    assert lab.table() == {f"{DIRECT}/32": OURS}
    assert lab.probe(DIVERTED, 80) == "origin"


async def test_manual_deletion_of_route_and_rule_is_repaired(lab: Lab) -> None:
    settings = _settings()
    rec = RouteReconciler(settings, netns=lab.client)
    plan = _plan(settings, DIVERTED)
    await rec.reconcile(plan)
    _ip(lab.client, "route", "del", f"{DIVERTED}/32", "table", str(TABLE))
    _ip(lab.client, "-6", "rule", "del", "priority", "1000")
    assert lab.probe(DIVERTED, 80) == "origin"

    result = await rec.reconcile(plan)

    assert [str(d) for d in result.repaired] == [f"{DIVERTED}/32"]
    assert not result.added
    assert [r.family for r in result.rules_added] == [socket.AF_INET6]
    assert lab.table() == {f"{DIVERTED}/32": OURS}
    assert lab.probe(DIVERTED, 80) == "proxy"


async def test_route_with_wrong_next_hop_is_replaced(lab: Lab) -> None:
    settings = _settings()
    rec = RouteReconciler(settings, netns=lab.client)
    plan = _plan(settings, DIVERTED)
    await rec.reconcile(plan)
    # Someone points our route elsewhere, keeping our protocol mark.
    _ip(
        lab.client, "route", "replace", f"{DIVERTED}/32", "via", "198.51.100.2",
        "table", str(TABLE), "proto", OURS,
    )  # fmt: skip
    assert lab.probe(DIVERTED, 80) == "origin"

    result = await rec.reconcile(plan)

    assert [str(d) for d in result.repaired] == [f"{DIVERTED}/32"]
    assert lab.probe(DIVERTED, 80) == "proxy"


async def test_foreign_routes_are_reported_and_left_alone(lab: Lab) -> None:
    settings = _settings()
    _ip(lab.client, "route", "add", "203.0.113.30/32", "via", "198.51.100.2", "table", str(TABLE))
    # An operator's route at a destination the plan wants: it wins, it is not replaced.
    _ip(lab.client, "route", "add", f"{DIRECT}/32", "via", "198.51.100.2", "table", str(TABLE))
    rec = RouteReconciler(settings, netns=lab.client)

    result = await rec.reconcile(_plan(settings, DIVERTED, DIRECT))

    foreign = {str(f.destination): f for f in result.foreign}
    assert set(foreign) == {"203.0.113.30/32", f"{DIRECT}/32"}
    assert foreign[f"{DIRECT}/32"].conflicts
    assert not foreign["203.0.113.30/32"].conflicts
    assert foreign[f"{DIRECT}/32"].gateway == "198.51.100.2"
    assert [str(d) for d in result.added] == [f"{DIVERTED}/32"]
    table = lab.table()
    assert table["203.0.113.30/32"] != OURS
    assert table[f"{DIRECT}/32"] != OURS
    assert table[f"{DIVERTED}/32"] == OURS
    assert lab.probe(DIRECT, 80) == "origin"

    withdrawn = await rec.withdraw()
    assert [str(d) for d in withdrawn.removed] == [f"{DIVERTED}/32"]
    assert set(lab.table()) == {"203.0.113.30/32", f"{DIRECT}/32"}
    assert lab.rules() == set()


async def test_dry_run_reports_and_changes_nothing(lab: Lab) -> None:
    settings = _settings(dry_run=True)
    rec = RouteReconciler(settings, netns=lab.client)

    result = await rec.reconcile(_plan(settings, DIVERTED))

    assert result.dry_run
    assert [str(d) for d in result.added] == [f"{DIVERTED}/32"]
    assert len(result.rules_added) == 2
    assert lab.table() == {}
    assert lab.rules() == set()
    assert lab.probe(DIVERTED, 80) == "origin"

    # The same reconciler applies for real when asked to.
    applied = await rec.reconcile(_plan(settings, DIVERTED), dry_run=False)
    assert not applied.dry_run
    assert lab.probe(DIVERTED, 80) == "proxy"
    removal = await rec.reconcile(_plan(settings), dry_run=True)
    assert [str(d) for d in removal.removed] == [f"{DIVERTED}/32"]
    assert lab.table() == {f"{DIVERTED}/32": OURS}


async def test_missing_namespace_is_an_error_not_a_new_namespace() -> None:
    name = f"ea-{uuid.uuid4().hex[:8]}-absent"
    rec = RouteReconciler(_settings(), netns=name)
    try:
        with pytest.raises(RouteApplyError):
            await rec.reconcile(RoutePlan(routes=()))
        listing = subprocess.run(
            ["ip", "netns", "list"], check=True, capture_output=True, text=True, timeout=10
        ).stdout
        assert name not in listing
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=10)
