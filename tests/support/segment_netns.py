"""Two network namespaces joined by a veth pair, for the on-segment takedown tests.

Topology (unique names per use, always deleted)::

    ns "agent"   tdA  192.0.2.1/24   2001:db8:7::1/64
          |  veth
    ns "server"  tdB  192.0.2.10/24  192.0.2.200/24  2001:db8:7::10/64  MAC 02:00:00:00:00:10

In the agent namespace: a permanent neighbour entry for 192.0.2.20 (MAC
02:00:00:00:00:20, nobody there) and a route to 198.51.100.0/24 via 192.0.2.10. Nothing
answers for 192.0.2.99. Programs run in a namespace with :func:`in_ns`; nothing leaves
the two namespaces.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.binaries import require_binary

REPO = Path(__file__).resolve().parents[2]
SERVER_MAC = "02:00:00:00:00:10"
CACHED_MAC = "02:00:00:00:00:20"
SERVER = "192.0.2.10"
SERVER6 = "2001:db8:7::10"
CACHED = "192.0.2.20"
SILENT = "192.0.2.99"
FOREIGN = "192.0.2.200"  # on the segment and answering, but not an own address
ROUTED = "198.51.100.7"  # behind the server, which plays the router


@dataclass(frozen=True)
class Topology:
    agent_ns: str
    server_ns: str
    agent_if: str


def ip(*args: str) -> str:
    """Run ``ip ARGS`` (fails the test on error); its output."""
    done = subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)
    return done.stdout


@contextlib.contextmanager
def topology() -> Iterator[Topology]:
    """The namespaces above, deleted on the way out."""
    require_binary("ip")
    tag = uuid.uuid4().hex[:6]
    agent, server = f"td-agent-{tag}", f"td-server-{tag}"
    a_if, b_if = f"tdA{tag}", f"tdB{tag}"
    created: list[str] = []
    try:
        for ns in (agent, server):
            ip("netns", "add", ns)
            created.append(ns)
        ip("link", "add", a_if, "netns", agent, "type", "veth", "peer", b_if, "netns", server)
        ip("-n", server, "link", "set", b_if, "address", SERVER_MAC)
        for ns, ifname, v4, v6 in (
            (agent, a_if, "192.0.2.1/24", "2001:db8:7::1/64"),
            (server, b_if, f"{SERVER}/24", f"{SERVER6}/64"),
        ):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", v4, "dev", ifname)
            ip("-n", ns, "-6", "addr", "add", v6, "dev", ifname, "nodad")
            ip("-n", ns, "link", "set", ifname, "up")
        ip("-n", server, "addr", "add", f"{FOREIGN}/24", "dev", b_if)
        ip("-n", agent, "neigh", "add", CACHED, "lladdr", CACHED_MAC, "dev", a_if,
           "nud", "permanent")  # fmt: skip
        ip("-n", agent, "route", "add", "198.51.100.0/24", "via", SERVER)
        yield Topology(agent, server, a_if)
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def ns_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def in_ns(ns: str, script: str, *args: str, timeout: float = 60) -> str:
    """Run Python ``script`` with ``args`` in namespace ``ns``; its stdout (fails on error)."""
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ns_env(),
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout
