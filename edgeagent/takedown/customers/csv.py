"""``kind = "csv"``: a CSV export with a header row (columns in :mod:`.rows`)."""

from __future__ import annotations

import csv
import io
from typing import Literal

from edgeagent.takedown.customers.base import Assignment, ExportError, ExportProblem
from edgeagent.takedown.customers.files import FileExport, FileExportConfig
from edgeagent.takedown.customers.rows import make_assignments


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


class CsvExportConfig(FileExportConfig):
    kind: Literal["csv"]


class CsvExport(FileExport):
    """A CSV export file."""

    KIND = "csv"
    Config = CsvExportConfig
    parse = staticmethod(parse_csv)
