"""``kind = "json"``: a JSON array of row objects, or JSON Lines (columns in :mod:`.rows`)."""

from __future__ import annotations

import json
from typing import Any, Literal

from edgeagent.takedown.customers.base import Assignment, ExportError, ExportProblem
from edgeagent.takedown.customers.files import FileExport, FileExportConfig
from edgeagent.takedown.customers.rows import make_assignments


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
        except RecursionError:  # nesting deep enough to exhaust the decoder's stack
            raise ExportError(name, [ExportProblem(1, "JSON nested too deeply")]) from None
        items = list(enumerate(data, start=1))
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((n, json.loads(line)))
            except json.JSONDecodeError:
                problems.append(ExportProblem(n, "malformed JSON"))
            except RecursionError:
                problems.append(ExportProblem(n, "JSON nested too deeply"))
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


class JsonExportConfig(FileExportConfig):
    kind: Literal["json"]


class JsonExport(FileExport):
    """A JSON (array or JSON Lines) export file."""

    KIND = "json"
    Config = JsonExportConfig
    parse = staticmethod(parse_json)
