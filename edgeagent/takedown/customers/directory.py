"""Who held an address at a given time, merged from every customer source.

* :class:`AssignmentIndex`: assignments by address; a lookup names the most specific
  assignment valid at a given time (the customer at the time of the notice).
* :func:`find_overlaps`: assignments that share addresses *and* time (reported, since a
  lookup must then pick one).
* :class:`CustomerDirectory` loads every source; a source that fails keeps its previous
  data and the failure (with line numbers) is returned and kept for status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import netaddr

from edgeagent.takedown.customers.base import Assignment, CustomerSource, ExportError
from edgeagent.takedown.space import PrefixIndex, parse_address


@dataclass(frozen=True, slots=True)
class Overlap:
    """Two assignments covering a common address during a common time."""

    a: Assignment
    b: Assignment

    def describe(self) -> str:
        a, b = self.a, self.b
        return f"{a.origin} ({a.customer_id}) overlaps {b.origin} ({b.customer_id})"


def _times_overlap(a: Assignment, b: Assignment) -> bool:
    a_end = a.valid_to or datetime.max.replace(tzinfo=UTC)
    b_end = b.valid_to or datetime.max.replace(tzinfo=UTC)
    a_start = a.valid_from or datetime.min.replace(tzinfo=UTC)
    b_start = b.valid_from or datetime.min.replace(tzinfo=UTC)
    return a_start < b_end and b_start < a_end


def find_overlaps(assignments: Sequence[Assignment], limit: int = 1000) -> list[Overlap]:
    """Pairs of assignments that share addresses *and* time, at most ``limit`` of them.

    A sweep over blocks sorted by start: the active list holds blocks still open at the
    current start, so the cost is about ``n log n`` plus the overlaps found.
    """
    found: list[Overlap] = []
    ordered = sorted(assignments, key=lambda x: (x.version, x.first, -x.last))
    active: list[Assignment] = []
    for cur in ordered:
        active = [a for a in active if a.version == cur.version and a.last >= cur.first]
        for prev in active:
            if _times_overlap(prev, cur):
                found.append(Overlap(prev, cur))
                if len(found) >= limit:
                    return found
        active.append(cur)
    return found


class AssignmentIndex:
    """Assignments by address. Immutable after construction; cheap to swap atomically."""

    def __init__(self, assignments: Sequence[Assignment]) -> None:
        self.assignments = tuple(assignments)
        self._index = PrefixIndex()
        for i, a in enumerate(self.assignments):
            first = netaddr.IPAddress(a.first, a.version)
            last = netaddr.IPAddress(a.last, a.version)
            for cidr in netaddr.iprange_to_cidrs(first, last):
                self._index.add(cidr, i)

    def lookup(self, address: str | netaddr.IPAddress, at: datetime) -> Assignment | None:
        """The most specific assignment holding ``address`` at ``at``, or ``None``.

        Among equally specific ones (reported as overlaps) the latest ``valid_from`` wins.
        """
        ip = address if isinstance(address, netaddr.IPAddress) else parse_address(address)
        best: Assignment | None = None
        for i in self._index.matches(ip.version, int(ip)):
            a = self.assignments[i]
            if not a.valid_at(at):
                continue
            if best is None or a.size < best.size or (a.size == best.size and _later(a, best)):
                best = a
        return best

    def __len__(self) -> int:
        return len(self.assignments)


def _later(a: Assignment, b: Assignment) -> bool:
    lo = datetime.min.replace(tzinfo=UTC)
    return (a.valid_from or lo) > (b.valid_from or lo)


@dataclass(frozen=True, slots=True)
class RefreshReport:
    """Outcome of :meth:`CustomerDirectory.refresh`."""

    loaded: Mapping[str, int]
    failed: Mapping[str, ExportError]
    overlaps: tuple[Overlap, ...]


@dataclass
class CustomerDirectory:
    """Assignments from several sources; the last good data of each source is kept."""

    sources: Sequence[CustomerSource]
    _by_source: dict[str, list[Assignment]] = field(default_factory=dict)
    index: AssignmentIndex = field(default_factory=lambda: AssignmentIndex(()))
    last_report: RefreshReport | None = None

    async def refresh(self) -> RefreshReport:
        """Reload every source; failures keep previous data and are reported."""
        loaded: dict[str, int] = {}
        failed: dict[str, ExportError] = {}
        for src in self.sources:
            try:
                items = await src.load()
            except ExportError as exc:
                failed[src.name] = exc
                continue
            self._by_source[src.name] = items
            loaded[src.name] = len(items)
        everything = [a for items in self._by_source.values() for a in items]
        self.index = AssignmentIndex(everything)
        overlaps = tuple(await asyncio.to_thread(find_overlaps, everything))
        self.last_report = RefreshReport(loaded, failed, overlaps)
        return self.last_report

    def lookup(self, address: str | netaddr.IPAddress, at: datetime) -> Assignment | None:
        return self.index.lookup(address, at)
