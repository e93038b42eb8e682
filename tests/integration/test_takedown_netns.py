"""On-segment detail (route, neighbour entry, ARP/ND probe) in namespaces this test creates.

Topology (unique names per test, always deleted)::

    ns "hosting-side" (agent)  tdA 192.0.2.1/24  2001:db8:7::1/64
          |  veth
    ns "server"                tdB 192.0.2.10/24 2001:db8:7::10/64  MAC 02:00:00:00:00:10

The lookups run in a Python subprocess under ``ip netns exec`` in the agent's namespace, as
the daemon would run them in its own. Nothing leaves the two namespaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_binary

pytestmark = pytest.mark.netns

SERVER_MAC = "02:00:00:00:00:10"
CACHED_MAC = "02:00:00:00:00:20"
REPO = Path(__file__).resolve().parents[2]

_LOOKUP = r"""
import dataclasses, json, sys
from edgeagent.takedown.locate import segment_detail
out = []
for item in json.loads(sys.argv[1]):
    d = segment_detail(item["address"], probe=item["probe"], timeout=1.0)
    out.append(dataclasses.asdict(d))
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Topology:
    agent_ns: str
    server_ns: str
    agent_if: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@pytest.fixture
def topology() -> Iterator[Topology]:
    require_binary("ip")
    tag = uuid.uuid4().hex[:6]
    agent, server = f"td-agent-{tag}", f"td-server-{tag}"
    a_if, b_if = f"tdA{tag}", f"tdB{tag}"
    created: list[str] = []
    try:
        for ns in (agent, server):
            _ip("netns", "add", ns)
            created.append(ns)
        _ip("link", "add", a_if, "netns", agent, "type", "veth", "peer", b_if, "netns", server)
        _ip("-n", server, "link", "set", b_if, "address", SERVER_MAC)
        for ns, ifname, v4, v6 in (
            (agent, a_if, "192.0.2.1/24", "2001:db8:7::1/64"),
            (server, b_if, "192.0.2.10/24", "2001:db8:7::10/64"),
        ):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", v4, "dev", ifname)
            _ip("-n", ns, "-6", "addr", "add", v6, "dev", ifname, "nodad")
            _ip("-n", ns, "link", "set", ifname, "up")
        yield Topology(agent, server, a_if)
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def lookup(topo: Topology, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        ["ip", "netns", "exec", topo.agent_ns, sys.executable, "-c", _LOOKUP, json.dumps(items)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_probe_neighbour_and_routed_addresses(topology: Topology) -> None:
    # A cached (permanent) neighbour entry, and a prefix routed via the server.
    _ip("-n", topology.agent_ns, "neigh", "add", "192.0.2.20", "lladdr", CACHED_MAC,
        "dev", topology.agent_if, "nud", "permanent")  # fmt: skip
    _ip("-n", topology.agent_ns, "route", "add", "198.51.100.0/24", "via", "192.0.2.10")
    probed, cached, routed, silent, probed6 = lookup(
        topology,
        [
            {"address": "192.0.2.10", "probe": True},
            {"address": "192.0.2.20", "probe": False},
            {"address": "198.51.100.7", "probe": True},
            {"address": "192.0.2.99", "probe": True},
            {"address": "2001:db8:7::10", "probe": True},
        ],
    )
    assert probed == {
        "address": "192.0.2.10",
        "interface": topology.agent_if,
        "direct": True,
        "gateway": "",
        "mac": SERVER_MAC,
        "neighbour_state": "",
        "how": "probe",
    }
    assert cached["mac"] == CACHED_MAC
    assert cached["how"] == "neighbour"
    assert cached["neighbour_state"] == "permanent"
    assert routed["direct"] is False
    assert routed["gateway"] == "192.0.2.10"
    assert routed["mac"] == ""
    assert silent["mac"] == ""
    assert silent["how"] == ""
    assert silent["interface"] == topology.agent_if
    assert probed6["mac"] == SERVER_MAC
    assert probed6["how"] == "probe"


def test_kernel_neighbour_entry_is_used_without_probing(topology: Topology) -> None:
    # Real traffic fills the kernel's neighbour cache (a ping from the agent namespace).
    subprocess.run(
        ["ip", "netns", "exec", topology.agent_ns, sys.executable, "-c",
         "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
         "s.sendto(b'x', ('192.0.2.10', 9))"],
        check=True, timeout=20,
    )  # fmt: skip
    (detail,) = lookup(topology, [{"address": "192.0.2.10", "probe": False}])
    assert detail["mac"] == SERVER_MAC
    assert detail["how"] == "neighbour"
    assert detail["neighbour_state"] in {"reachable", "stale", "delay", "probe"}
