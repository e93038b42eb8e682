"""Takedown locator: 10,000 URL entries against 50,000 customer prefixes, DNS included.

Goal: locate 10,000 URL entries against 50,000 customer prefixes in <= 5 s
including resolution through a local Unbound (10,000 synthetic names served as
``local-data`` on a loopback high port); one address lookup in the prefix set <= 20 µs.

The resolver is :func:`edgeagent.lab.resolvers.unbound_server`, which the takedown
integration tests use too.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from bench import Row
from edgeagent.lab.resolvers import unbound_server


def measure(n_urls: int = 10_000, n_prefixes: int = 50_000) -> dict[str, Any]:
    """Run the benchmark; returns the figures (seconds, µs, counts)."""
    import netaddr

    from edgeagent.model import Indicator, Scope
    from edgeagent.takedown.customers.base import Assignment
    from edgeagent.takedown.customers.directory import AssignmentIndex, CustomerDirectory
    from edgeagent.takedown.locate import Locator
    from edgeagent.takedown.space import OwnSpace

    # Synthetic customer space: IPv6 documentation prefix 2001:db8::/32 split into /64s
    # (50,000 customers fit easily), plus the IPv4 documentation /24s as own space.
    base = int(netaddr.IPNetwork("2001:db8::/32").first)
    assignments = [
        Assignment(
            version=6,
            first=base + (i << 64),
            last=base + (i << 64) + (1 << 64) - 1,
            prefix=f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::/64",
            customer_id=f"c{i:05d}",
            service_id=f"s{i:05d}",
            contact=f"noc{i}@hosted.test",
            origin=f"bench:{i + 2}",
        )
        for i in range(n_prefixes)
    ]
    t0 = time.perf_counter()
    directory = CustomerDirectory(())
    directory.index = AssignmentIndex(assignments)
    build_s = time.perf_counter() - t0
    own = OwnSpace(["2001:db8::/32", "198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24"])

    records: list[tuple[str, str, str]] = []
    for i in range(n_urls):
        c = (i * 7919) % n_prefixes
        addr = f"2001:db8:{c >> 16:x}:{c & 0xFFFF:x}::{(i % 250) + 1:x}"
        records.append((f"h{i:05d}.hosted.test", "AAAA", addr))
        if i % 10 == 0:
            records.append((f"h{i:05d}.hosted.test", "A", f"198.51.100.{(i % 250) + 1}"))
    indicators = [
        Indicator(Scope.URL, f"http://h{i:05d}.hosted.test/p/{i}.html") for i in range(n_urls)
    ]

    # Single-address lookups: own-space test and assignment lookup.
    probe = [
        netaddr.IPAddress(f"2001:db8:{c >> 16:x}:{c & 0xFFFF:x}::1")
        for c in range(0, n_prefixes, 7)
    ]
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for ip in probe:
        _ = ip in own
    own_us = (time.perf_counter() - t0) / len(probe) * 1e6
    t0 = time.perf_counter()
    for ip in probe:
        directory.lookup(ip, now)
    lookup_us = (time.perf_counter() - t0) / len(probe) * 1e6

    with unbound_server(records) as (addr, port):
        locator = Locator(own, directory, [(addr, port)], timeout=3.0)
        t0 = time.perf_counter()
        locations = asyncio.run(locator.locate(indicators, at=now))
        locate_s = time.perf_counter() - t0
    matched = sum(1 for loc in locations if loc.customers)
    failed = sum(1 for loc in locations if loc.error)
    return {
        "urls": n_urls,
        "prefixes": n_prefixes,
        "index_build_s": build_s,
        "locate_s": locate_s,
        "located": matched,
        "errors": failed,
        "own_space_lookup_us": own_us,
        "assignment_lookup_us": lookup_us,
    }


def run(n_urls: int = 10_000, n_prefixes: int = 50_000) -> dict[str, Any]:
    """The figures as a dict (see :func:`measure`)."""
    return measure(n_urls, n_prefixes)


def rows(n_urls: int = 10_000, n_prefixes: int = 50_000) -> list[Row]:
    """The figures as harness rows (register with ``rows``)."""
    r = measure(n_urls, n_prefixes)
    anchor = "goal: 10,000 URLs located in <= 5 s; one address <= 20 µs"
    return [
        Row(
            f"locate {n_urls:,} URLs vs {n_prefixes:,} prefixes (DNS via local Unbound)",
            r["locate_s"],
            "s",
            "<= 5 s",
            anchor,
        ),
        Row("own-space test, one address", r["own_space_lookup_us"], "µs", "<= 20 µs", anchor),
        Row(
            "customer assignment lookup, one address",
            r["assignment_lookup_us"],
            "µs",
            "<= 20 µs",
            anchor,
        ),
        Row("assignment index build", r["index_build_s"], "s", "", anchor),
    ]


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
