"""On-segment detail (route, neighbour entry, ARP/ND probe) in namespaces this test creates.

The lookups run in a Python subprocess under ``ip netns exec`` in the agent's namespace
(topology in :mod:`tests.support.segment_netns`), through the same
:class:`SegmentLocator` the daemon uses. Nothing leaves the two namespaces.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.segment_netns import (
    CACHED,
    CACHED_MAC,
    FOREIGN,
    ROUTED,
    SERVER,
    SERVER6,
    SERVER_MAC,
    SILENT,
    Topology,
    in_ns,
    ip,
    topology,
)

pytestmark = [pytest.mark.integration, pytest.mark.netns]

_LOOKUP = r"""
import asyncio, json, sys
from edgeagent.takedown.segment_locator import SegmentLocator
from edgeagent.takedown.space import OwnSpace

async def main():
    own = OwnSpace(["192.0.2.0/25", "198.51.100.0/24", "2001:db8:7::/64"])
    out = []
    for item in json.loads(sys.argv[1]):
        locator = SegmentLocator(own, item["mode"], probe_timeout=1.0)
        out.append((await locator.lookup(item["address"])).to_json())
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.fixture
def topo() -> Iterator[Topology]:
    with topology() as t:
        yield t


def lookup(topo: Topology, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = in_ns(topo.agent_ns, _LOOKUP, json.dumps(items))
    result: list[dict[str, Any]] = json.loads(out.strip().splitlines()[-1])
    return result


def test_probe_neighbour_and_routed_addresses(topo: Topology) -> None:
    probed, cached, routed, silent, foreign, probed6, never = lookup(
        topo,
        [
            {"address": SERVER, "mode": "when-not-cached"},
            {"address": CACHED, "mode": "when-not-cached"},
            {"address": ROUTED, "mode": "always"},
            {"address": SILENT, "mode": "when-not-cached"},
            {"address": FOREIGN, "mode": "always"},
            {"address": SERVER6, "mode": "when-not-cached"},
            {"address": SILENT, "mode": "never"},
        ],
    )
    assert {k: v for k, v in probed.items() if not k.endswith("_at")} == {
        "address": SERVER,
        "on_segment": True,
        "interface": topo.agent_if,
        "next_hop": "",
        "mac": SERVER_MAC,
        "neighbour_state": "",
        "learned_from": "probe",
        "probe": "answered",
        "error": "",
    }
    assert probed["learned_at"] >= probed["checked_at"]
    assert (cached["mac"], cached["learned_from"], cached["probe"]) == (CACHED_MAC, "cache", "")
    assert cached["neighbour_state"] == "permanent"
    assert (routed["on_segment"], routed["next_hop"], routed["mac"]) == (False, SERVER, "")
    assert routed["probe"] == ""  # never probed behind a router, even with "always"
    assert (silent["mac"], silent["learned_from"], silent["probe"]) == ("", "", "timed-out")
    assert silent["interface"] == topo.agent_if
    assert (foreign["probe"], foreign["mac"]) == ("refused", "")
    assert (probed6["mac"], probed6["learned_from"]) == (SERVER_MAC, "probe")
    assert (never["probe"], never["mac"]) == ("", "")
    # The refused probe was never sent: the agent's kernel never heard of that address.
    assert ip("-n", topo.agent_ns, "neigh", "show", FOREIGN).strip() == ""


def test_kernel_neighbour_entry_is_used_without_probing(topo: Topology) -> None:
    # Real traffic fills the kernel's neighbour cache (a datagram from the agent namespace).
    subprocess.run(
        ["ip", "netns", "exec", topo.agent_ns, sys.executable, "-c",
         "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
         f"s.sendto(b'x', ('{SERVER}', 9))"],
        check=True, timeout=20,
    )  # fmt: skip
    (detail,) = lookup(topo, [{"address": SERVER, "mode": "when-not-cached"}])
    assert (detail["mac"], detail["learned_from"], detail["probe"]) == (SERVER_MAC, "cache", "")
    assert detail["neighbour_state"] in {"reachable", "stale", "delay", "probe"}
    assert detail["learned_at"] <= detail["checked_at"]
