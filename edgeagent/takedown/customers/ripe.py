"""``kind = "ripe"``: RIPE-style RPSL objects (``inetnum:`` / ``inet6num:``)."""

from __future__ import annotations

import re
from typing import Literal

from edgeagent.takedown.customers.base import Assignment, ExportError, ExportProblem
from edgeagent.takedown.customers.files import FileExport, FileExportConfig
from edgeagent.takedown.customers.rows import make_assignments

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


class RipeExportConfig(FileExportConfig):
    kind: Literal["ripe"]


class RipeExport(FileExport):
    """A RIPE-style ``inetnum``/``inet6num`` export file."""

    KIND = "ripe"
    Config = RipeExportConfig
    parse = staticmethod(parse_ripe)
