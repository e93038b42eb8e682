"""Decision -> blocked at every resolver of a rendered fleet, and what one decision costs.

Every daemon runs from its ``edgeagent render`` snippet (:mod:`edgeagent.lab.fleet`): two
hidden primaries, two regions with two BIND distribution secondaries each, resolvers
behind them. A decision is one more blocked host: the release goes to both primaries by
``bind-update`` (as the agent publishes it), and the clock stops when every resolver's
canary names the new serial.

- mixed fleet (BIND, Unbound, PowerDNS Recursor, one Knot Resolver behind Knot DNS):
  p50/p99 over ``decisions``, each made at a random moment (PowerDNS takes no NOTIFY
  for RPZ and polls the SOA every second here);
- BIND-only fleets of N = 10, 30, 60, 100 resolvers: the curve;
- bytes per decision per resolver: the policy zone's IXFR from a distribution secondary
  (every resolver and secondary takes one such transfer), and fleet-wide;
- CPU of one hidden primary per decision (``/proc``: user + system).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import dns.query
import dns.rdatatype
import dns.tsig

from bench import Row
from edgeagent.lab.fleet import RunningFleet, loopback_inventory, resolver_kinds, start_fleet
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.render.inventory import ResolverKind
from edgeagent.render.writing import shipped_templates
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ResolverTarget, ZoneRelease, query_all
from edgeagent.rpz.publishers.bind_update import BindUpdatePublisher

SETTINGS = RpzSettings(zone="block.rpz.invalid", exception_zone="allow.rpz.invalid")
ANCHOR = "goal: decision -> blocked at every resolver p50 <= 1 s, p99 <= 2 s, 30+ resolvers"
CURVE_ANCHOR = "BIND defaults (notify-rate 20): 40 secondaries p50 1.15 s, p99 2.09 s"
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_PHASE_SECONDS = 1.0  # the loopback fleet's powerdns_refresh_seconds


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class _Run:
    """A started fleet, its publishers and the release history."""

    def __init__(self, base: Path, kinds: Sequence[ResolverKind]) -> None:
        inventory = loopback_inventory(base, kinds, secondaries_per_region=2)
        self.fleet: RunningFleet = start_fleet(
            base, inventory, SETTINGS, shipped_templates(), parallel=4
        )
        self.publishers = [
            BindUpdatePublisher(
                p.name,
                server=p.address,
                port=p.port,
                key_name=self.fleet.update_key,
                secret=self.fleet.update_secret,
                verify_timeout=0.0,
            )
            for p in inventory.primaries
        ]
        self.targets = [ResolverTarget(r.name, r.address, r.port) for r in inventory.resolvers]
        self.notified = {r.name for r in inventory.resolvers if r.kind != "powerdns"}
        self.entries: list[Entry] = []
        self.serial = 1
        self.last_publish = 0.0

    def decide(self) -> int:
        """Publish one more blocked host to both primaries; return the new serial."""
        host = f"fanout-{len(self.entries)}.example"
        self.entries.append(Entry(Indicator.parse(Scope.HOST, host), Action.BLOCK, "bench"))
        self.serial += 1
        release = ZoneRelease(
            DesiredState(self.serial, tuple(self.entries), ()), SETTINGS, self.serial
        )
        started = time.monotonic()
        for publisher in self.publishers:
            publisher.publish(release)
        self.last_publish = time.monotonic() - started
        return self.serial

    def converge(self, serial: int, timeout: float = 30.0) -> tuple[float, float]:
        """Seconds until every resolver serves ``serial``, and until every resolver that
        takes NOTIFYs does (all but PowerDNS, which polls)."""
        started = time.monotonic()
        notified: float | None = None
        behind: list[str] = []
        while time.monotonic() - started < timeout:
            results = query_all(self.targets, SETTINGS.canary, 0.5)
            behind = [r.target.name for r in results if r.serial != serial]
            if notified is None and not set(behind) & self.notified:
                notified = time.monotonic() - started
            if not behind:
                return time.monotonic() - started, notified or 0.0
            time.sleep(0.01)
        raise TimeoutError(f"not at serial {serial} after {timeout} s: {behind[:10]}")

    def latencies(self, decisions: int) -> list[tuple[float, float]]:
        """(every resolver, every NOTIFY-driven resolver) per decision."""
        self.converge(self.decide())  # the first publish resyncs each primary (AXFR)
        out = []
        for _ in range(decisions):
            # Decisions come at any time, not in step with PowerDNS's once-a-second poll
            # (a decision made just after a poll would always wait a whole period).
            time.sleep(random.uniform(0, POLL_PHASE_SECONDS))
            started = time.monotonic()
            serial = self.decide()
            _, notified = self.converge(serial)
            out.append((time.monotonic() - started, notified + self.last_publish))
        return out

    def ixfr_bytes(self, since: int) -> int:
        """Wire bytes of the policy zone's IXFR from serial ``since`` at one distribution
        secondary, signed with its region's key as a BIND resolver asks for it (a block
        leaves the exception zone as it was: nothing to transfer there)."""
        secondary = self.fleet.inventory.secondaries[0]
        name = self.fleet.inventory.regions[secondary.region].transfer_key
        key = dns.tsig.Key(name, self.fleet.transfer_secrets[name], dns.tsig.HMAC_SHA256)
        messages = dns.query.xfr(
            secondary.address,
            SETTINGS.zone,
            rdtype=dns.rdatatype.IXFR,
            serial=since,
            port=secondary.port,
            timeout=5,
            keyring=key,
            keyname=name,
        )
        return sum(len(m.to_wire()) for m in messages)

    def primary_cpu_seconds(self) -> float:
        pid = self.fleet.daemons[self.fleet.inventory.primaries[0].name].proc.pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self) -> None:
        self.fleet.stop()


def _mixed(base: Path, resolvers: int, decisions: int) -> list[Row]:
    run = _Run(base, resolver_kinds(resolvers))
    try:
        load = os.getloadavg()[0]
        both = run.latencies(decisions)
        lat, notified = [a for a, _ in both], [n for _, n in both]
        before_cpu, first = run.primary_cpu_seconds(), run.serial
        for _ in range(decisions):
            run.converge(run.decide())
        cpu = (run.primary_cpu_seconds() - before_cpu) / decisions
        per_resolver = run.ixfr_bytes(run.serial - 1)
        assert run.serial == first + decisions
        kinds = sorted({r.kind for r in run.fleet.inventory.resolvers})
        transfers = len(run.targets) + len(run.fleet.inventory.secondaries)
    finally:
        run.stop()
    what = f"{resolvers} resolvers ({', '.join(kinds)})"
    return [
        Row(
            f"decision -> blocked at every resolver, p50, {what}",
            statistics.median(lat),
            "s",
            "<= 1 s",
            ANCHOR,
        ),
        Row(
            f"decision -> blocked at every resolver, p99, {what}",
            _percentile(lat, 0.99),
            "s",
            "<= 2 s",
            ANCHOR,
        ),
        Row(
            "  of which every resolver but PowerDNS (NOTIFY-driven), p50",
            statistics.median(notified),
            "s",
            "",
            "PowerDNS Recursor 4.8 takes no NOTIFY for RPZ: it polls the SOA every 1 s here",
        ),
        Row(
            "  of which every resolver but PowerDNS (NOTIFY-driven), p99",
            _percentile(notified, 0.99),
            "s",
            "",
            "",
        ),
        Row("1-minute load average before the run (2 cores, shared)", load, "", "", ""),
        Row("bytes per decision per resolver (IXFR, TSIG-signed)", per_resolver, "B", "", ""),
        Row(
            f"bytes per decision, fleet-wide ({transfers} transfers: resolvers + secondaries)",
            per_resolver * transfers,
            "B",
            "",
            "",
        ),
        Row("hidden primary CPU per decision (UPDATE + 4 transfers out)", cpu * 1000, "ms", "", ""),
    ]


def _curve(base: Path, sizes: Sequence[int], decisions: int) -> list[Row]:
    rows = []
    for n in sizes:
        run = _Run(base / f"bind-{n}", ["bind"] * n)
        try:
            lat = [every for every, _ in run.latencies(decisions)]
        finally:
            run.stop()
        goal = "<= 2 s" if n >= 30 else ""
        rows.append(
            Row(f"  {n} BIND resolvers, p50", statistics.median(lat), "s", "", CURVE_ANCHOR)
        )
        rows.append(
            Row(f"  {n} BIND resolvers, p99", _percentile(lat, 0.99), "s", goal, CURVE_ANCHOR)
        )
    return rows


def run(
    resolvers: int = 32, sizes: Sequence[int] = (10, 30, 60, 100), decisions: int = 20
) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        base = Path(tmp)
        return _mixed(base / "mixed", resolvers, decisions) + _curve(base, sizes, decisions)
