"""One export row -> :class:`Assignment` values, shared by every export format.

Columns (CSV header / JSON keys): ``prefix`` (CIDR, a single address, or ``first - last``
range), ``customer_id``, ``service_id``, ``contact``, ``valid_from``, ``valid_to``
(ISO 8601; empty = open; a naive time is UTC). Reasons name the column, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeagent.takedown.customers.base import Assignment, ExportError, ExportProblem
from edgeagent.takedown.space import parse_block

MAX_EXPORT_BYTES = 256 * 1024 * 1024
COLUMNS = ("prefix", "customer_id", "service_id", "contact", "valid_from", "valid_to")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")


def _parse_time(text: str) -> datetime | None:
    raw = text.strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("not an ISO 8601 time") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before year 1 in UTC
        raise ValueError("time out of range") from None


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
    for col in COLUMNS:
        v = row.get(col, "")
        if v is None:
            v = ""
        if not isinstance(v, str):
            raise ValueError(f"{col} must be text")
        values[col] = v
    unknown = set(row) - set(COLUMNS)
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


def read_export(path: Path, name: str) -> str:
    """The text of export file ``path`` (at most 256 MiB of UTF-8); ``ExportError`` else."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_EXPORT_BYTES + 1)
    except OSError as exc:
        raise ExportError(name, [ExportProblem(0, f"cannot read: {exc.strerror}")]) from None
    if len(data) > MAX_EXPORT_BYTES:
        raise ExportError(name, [ExportProblem(0, "export larger than 256 MiB")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ExportError(name, [ExportProblem(line, "not UTF-8")]) from None
