"""The ISP's own address space and who each address is assigned to.

* :class:`OwnSpace`: the own prefixes as a netaddr ``IPSet`` (for set arithmetic and
  display) plus a longest-prefix index for the hot path: ``IPSet.__contains__`` costs about
  30 µs with 50k prefixes, the index about 2 µs.
* :class:`AssignmentIndex`: assignments by address; a lookup names the most specific
  assignment valid at a given time (the customer at the time of the notice).
* Lookups behind :class:`edgeagent.takedown.base.CustomerLookup`: :class:`FileExport`
  (CSV or JSON), :class:`RipeExport` (``inetnum``/``inet6num`` objects) and
  :class:`HttpIpam` (JSON over HTTP(S), same item shape as the JSON export).
* :class:`CustomerRegistry` loads every source; a source that fails keeps its previous
  data and the failure (with line numbers) is returned and kept for status.

Export columns (CSV header / JSON keys): ``prefix`` (CIDR, a single address, or
``first - last`` range), ``customer_id``, ``service_id``, ``contact``, ``valid_from``,
``valid_to`` (ISO 8601; empty = open; a naive time is UTC).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import netaddr

from edgeagent.takedown.base import Assignment, CustomerLookup, ExportError, ExportProblem

_MAX_EXPORT_BYTES = 256 * 1024 * 1024
_COLUMNS = ("prefix", "customer_id", "service_id", "contact", "valid_from", "valid_to")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")


# --------------------------------------------------------------------------- prefix index


class PrefixIndex:
    """Longest-prefix match over CIDR blocks, keyed by ``(version, length, network)``.

    Lookups try each prefix length present (longest first) with one dict probe: at most
    33 (IPv4) or 129 (IPv6) probes, in practice a handful, all on integers.
    """

    def __init__(self) -> None:
        self._tables: dict[tuple[int, int], dict[int, list[int]]] = {}
        self._lengths: dict[int, list[int]] = {4: [], 6: []}

    def add(self, network: netaddr.IPNetwork, value: int) -> None:
        key = (network.version, network.prefixlen)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = {}
            lengths = self._lengths[network.version]
            lengths.append(network.prefixlen)
            lengths.sort(reverse=True)
        table.setdefault(int(network.first), []).append(value)

    def matches(self, version: int, address: int) -> list[int]:
        """Values of every block containing ``address``, most specific first."""
        bits = 32 if version == 4 else 128
        found: list[int] = []
        for length in self._lengths[version]:
            mask = ((1 << length) - 1) << (bits - length) if length else 0
            hit = self._tables[(version, length)].get(address & mask)
            if hit:
                found.extend(hit)
        return found

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())


def parse_address(text: str) -> netaddr.IPAddress:
    """An address from text; raises ``ValueError``."""
    try:
        return netaddr.IPAddress(text.strip(), flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ValueError("not an IP address") from None


def parse_block(text: str) -> list[netaddr.IPNetwork]:
    """CIDR blocks covering ``text``: a CIDR, one address, or ``first - last``."""
    raw = text.strip()
    try:
        if "-" in raw and "/" not in raw:
            lo, hi = (p.strip() for p in raw.split("-", 1))
            first, last = parse_address(lo), parse_address(hi)
            if first.version != last.version or first > last:
                raise ValueError("range ends out of order or of different families")
            return list(netaddr.IPRange(first, last).cidrs())
        net = netaddr.IPNetwork(raw)
    except (netaddr.AddrFormatError, ValueError, TypeError, IndexError) as exc:
        if isinstance(exc, ValueError) and "range" in str(exc):
            raise
        raise ValueError("not a prefix, address or range") from None
    if net.ip != net.network:
        raise ValueError("prefix has host bits set")
    return [net.cidr]


class OwnSpace:
    """The ISP's own prefixes: ``ipset`` for display/arithmetic, ``__contains__`` fast."""

    def __init__(self, prefixes: Iterable[str | netaddr.IPNetwork | Any]) -> None:
        self.ipset = netaddr.IPSet(str(p) for p in prefixes)
        self._index = PrefixIndex()
        for cidr in self.ipset.iter_cidrs():
            self._index.add(cidr, 1)

    def __contains__(self, address: object) -> bool:
        try:
            ip = address if isinstance(address, netaddr.IPAddress) else parse_address(str(address))
        except ValueError:
            return False
        return bool(self._index.matches(ip.version, int(ip)))

    def __len__(self) -> int:
        return len(self._index)


# ------------------------------------------------------------------------------ overlaps


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


# ------------------------------------------------------------------------ assignment index


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


# ------------------------------------------------------------------------------- parsing


def _parse_time(text: str) -> datetime | None:
    raw = text.strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("not an ISO 8601 time") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ident(value: str, what: str, *, required: bool = True) -> str:
    value = value.strip()
    if not value:
        if required:
            raise ValueError(f"{what} is empty")
        return ""
    if what == "contact":
        if len(value) > 254 or any(c.isspace() for c in value):
            raise ValueError("contact is not an address")
        return value
    if not _ID_RE.match(value):
        raise ValueError(f"{what} has characters outside [A-Za-z0-9._:@/+-] or is too long")
    return value


def make_assignments(row: Mapping[str, Any], origin: str) -> list[Assignment]:
    """Assignments from one export row (several if a range is not one CIDR).

    Raises ``ValueError`` with a reason that names the column, never the value.
    """
    values: dict[str, str] = {}
    for col in _COLUMNS:
        v = row.get(col, "")
        if v is None:
            v = ""
        if not isinstance(v, str):
            raise ValueError(f"{col} must be text")
        values[col] = v
    unknown = set(row) - set(_COLUMNS)
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    try:
        blocks = parse_block(values["prefix"])
    except ValueError as exc:
        raise ValueError(f"prefix: {exc}") from None
    customer = _ident(values["customer_id"], "customer_id")
    service = _ident(values["service_id"], "service_id", required=False)
    contact = _ident(values["contact"], "contact", required=False)
    try:
        vf = _parse_time(values["valid_from"])
    except ValueError as exc:
        raise ValueError(f"valid_from: {exc}") from None
    try:
        vt = _parse_time(values["valid_to"])
    except ValueError as exc:
        raise ValueError(f"valid_to: {exc}") from None
    if vf is not None and vt is not None and vt <= vf:
        raise ValueError("valid_to is not after valid_from")
    first, last = blocks[0].first, blocks[-1].last
    return [
        Assignment(
            version=blocks[0].version,
            first=int(first),
            last=int(last),
            prefix=values["prefix"].strip(),
            customer_id=customer,
            service_id=service,
            contact=contact,
            valid_from=vf,
            valid_to=vt,
            origin=origin,
        )
    ]


def parse_csv(name: str, text: str) -> list[Assignment]:
    """Assignments from CSV text with a header row; ``ExportError`` lists every bad line."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    problems: list[ExportProblem] = []
    out: list[Assignment] = []
    try:
        header = reader.fieldnames or []
        missing = [c for c in ("prefix", "customer_id") if c not in header]
        if missing:
            raise ExportError(name, [ExportProblem(1, f"header lacks {', '.join(missing)}")])
        for row in reader:
            line = reader.line_num
            if None in row:
                problems.append(ExportProblem(line, "more fields than the header"))
                continue
            try:
                out.extend(make_assignments(row, f"{name}:{line}"))
            except ValueError as exc:
                problems.append(ExportProblem(line, str(exc)))
    except csv.Error as exc:
        problems.append(ExportProblem(reader.line_num, f"CSV syntax: {exc}"))
    if problems:
        raise ExportError(name, problems)
    return out


def parse_json(name: str, text: str) -> list[Assignment]:
    """Assignments from a JSON array of objects, or JSON Lines (one object per line).

    Problems are numbered by line for JSON Lines and by item (1-based) for an array.
    """
    problems: list[ExportProblem] = []
    out: list[Assignment] = []
    stripped = text.lstrip()
    items: list[tuple[int, Any]] = []
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExportError(name, [ExportProblem(exc.lineno, "malformed JSON")]) from None
        items = list(enumerate(data, start=1))
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((n, json.loads(line)))
            except json.JSONDecodeError:
                problems.append(ExportProblem(n, "malformed JSON"))
    for n, item in items:
        if not isinstance(item, dict):
            problems.append(ExportProblem(n, "not a JSON object"))
            continue
        try:
            out.extend(make_assignments(item, f"{name}:{n}"))
        except ValueError as exc:
            problems.append(ExportProblem(n, str(exc)))
    if problems:
        raise ExportError(name, problems)
    return out


_RPSL_ATTR = re.compile(r"^([A-Za-z0-9-]+):\s*(.*)$")


def parse_ripe(name: str, text: str) -> list[Assignment]:
    """Assignments from RIPE-style RPSL objects (``inetnum:``/``inet6num:``).

    Mapping: block from ``inetnum``/``inet6num``; customer from ``org`` (else ``netname``);
    service from ``netname``; contact from ``abuse-mailbox`` (else ``e-mail``); validity
    from ``valid-from``/``valid-to`` (local attributes; absent = open). Other objects and
    ``%``/``#`` comments are ignored; continuation lines (leading space, ``+``) append.
    """
    problems: list[ExportProblem] = []
    out: list[Assignment] = []
    obj: dict[str, str] = {}
    start = 0
    last_key = ""

    def flush() -> None:
        if not obj:
            return
        key = "inetnum" if "inetnum" in obj else "inet6num" if "inet6num" in obj else ""
        if not key:
            return
        row = {
            "prefix": obj[key],
            "customer_id": obj.get("org") or obj.get("netname", ""),
            "service_id": obj.get("netname", ""),
            "contact": obj.get("abuse-mailbox") or obj.get("e-mail", ""),
            "valid_from": obj.get("valid-from", ""),
            "valid_to": obj.get("valid-to", ""),
        }
        try:
            out.extend(make_assignments(row, f"{name}:{start}"))
        except ValueError as exc:
            problems.append(ExportProblem(start, str(exc)))

    for n, line in enumerate(text.splitlines(), start=1):
        if line.startswith(("%", "#")):
            continue
        if not line.strip():
            flush()
            obj, last_key = {}, ""
            continue
        if line[0] in " \t+" and last_key:
            obj[last_key] += " " + line.lstrip(" \t+").strip()
            continue
        m = _RPSL_ATTR.match(line)
        if m is None:
            problems.append(ExportProblem(n, "not an 'attribute: value' line"))
            continue
        if not obj:
            start = n
        last_key = m.group(1).lower()
        # The first occurrence wins (RPSL allows repeats, e.g. several descr lines).
        obj.setdefault(last_key, m.group(2).strip())
    flush()
    if problems:
        raise ExportError(name, problems)
    return out


# ------------------------------------------------------------------------------- lookups


def _read_text(path: Path, name: str) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_EXPORT_BYTES + 1)
    except OSError as exc:
        raise ExportError(name, [ExportProblem(0, f"cannot read: {exc.strerror}")]) from None
    if len(data) > _MAX_EXPORT_BYTES:
        raise ExportError(name, [ExportProblem(0, "export larger than 256 MiB")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ExportError(name, [ExportProblem(line, "not UTF-8")]) from None


@dataclass(frozen=True, slots=True)
class FileExport:
    """A CSV (``kind="csv"``), JSON (``"json"``) or RPSL (``"ripe"``) export file."""

    path: Path
    kind: str
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or f"{self.kind}:{self.path.name}"

    async def load(self) -> list[Assignment]:
        return await asyncio.to_thread(self._load)

    def _load(self) -> list[Assignment]:
        text = _read_text(self.path, self.name)
        if self.kind == "csv":
            return parse_csv(self.name, text)
        if self.kind == "json":
            return parse_json(self.name, text)
        if self.kind == "ripe":
            return parse_ripe(self.name, text)
        raise ExportError(self.name, [ExportProblem(0, f"unknown kind {self.kind!r}")])


def RipeExport(path: Path, label: str = "") -> FileExport:
    """A RIPE-style ``inetnum``/``inet6num`` export file."""
    return FileExport(path, "ripe", label)


@dataclass(frozen=True, slots=True)
class HttpIpam:
    """An IPAM endpoint answering ``GET url`` with the JSON export shape.

    ``token`` (if any) is sent as ``Authorization: Bearer``. Total deadline ``timeout``
    seconds (aiohttp's read timeout restarts per chunk), body capped at 256 MiB.
    """

    url: str
    token: str | None = None
    timeout: float = 30.0
    label: str = "ipam"

    @property
    def name(self) -> str:
        return self.label

    async def load(self) -> list[Assignment]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with asyncio.timeout(self.timeout):
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(self.url, headers=headers) as resp,
                ):
                    if resp.status != 200:
                        raise ExportError(
                            self.name, [ExportProblem(0, f"HTTP status {resp.status}")]
                        )
                    body = bytearray()
                    async for chunk in resp.content.iter_chunked(65536):
                        body += chunk
                        if len(body) > _MAX_EXPORT_BYTES:
                            raise ExportError(
                                self.name, [ExportProblem(0, "answer larger than 256 MiB")]
                            )
        except TimeoutError:
            raise ExportError(self.name, [ExportProblem(0, "timed out")]) from None
        except aiohttp.ClientError as exc:
            raise ExportError(self.name, [ExportProblem(0, type(exc).__name__)]) from None
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise ExportError(self.name, [ExportProblem(0, "not UTF-8")]) from None
        return parse_json(self.name, text)


# ------------------------------------------------------------------------------ registry


@dataclass(frozen=True, slots=True)
class RefreshReport:
    """Outcome of :meth:`CustomerRegistry.refresh`."""

    loaded: Mapping[str, int]
    failed: Mapping[str, ExportError]
    overlaps: tuple[Overlap, ...]


@dataclass
class CustomerRegistry:
    """Assignments from several lookups; the last good data of each source is kept."""

    sources: Sequence[CustomerLookup]
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
