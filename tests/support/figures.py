"""Figures the reliability suite measures, written where RELIABILITY.md is rendered from.

- ``record(group, name, values)``: merge one figure (a flat table of numbers and short
  texts) into ``var/reliability/<group>.json`` at once, stamped with the time, under
  ``name``. A later run replaces the figure as a whole; other figures are kept.
- ``Tally``: counts over the tests of one module (spellings tried and refused, rows),
  recorded by the module-scoped fixture ``recorded_at_module_end(tally, ...)`` makes
  (assign it to a name in the module) only when every test of the module ran,
  so that ``pytest -k`` or ``-x`` on a few cases never replaces a full figure with a
  partial one. This module is a pytest plugin (the root conftest names it) to know that.

``python -m tests.support.reliability_doc`` folds these files into the committed
snapshot and rewrites RELIABILITY.md's figure cells from it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES_DIR = ROOT / "var" / "reliability"

Value = int | float | str


def read_group(path: Path) -> dict[str, Any]:
    """The figures of one group file (empty when it is missing or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path``: temporary file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def record(group: str, name: str, values: Mapping[str, Value]) -> None:
    """Replace figure ``name`` of ``group`` with ``values`` (see the module docstring)."""
    path = FIGURES_DIR / f"{group}.json"
    data = read_group(path)
    data[name] = {**values, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    write_json(path, data)


class Tally:
    """Counts of one figure over the tests of a module (see the module docstring): ``add``
    in the tests, ``record_if_complete`` in a module-scoped fixture's teardown."""

    def __init__(self, group: str, name: str) -> None:
        self.group = group
        self.name = name
        self.counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def record_if_complete(self, module: pytest.Module) -> bool:
        """Record the counts if every test of ``module`` ran; say whether they were."""
        if not _RUNS.complete(module):
            return False
        record(self.group, self.name, self.counts)
        return True


class _ModuleFixture(Protocol):
    def __call__(self, request: pytest.FixtureRequest) -> Iterator[None]: ...


def recorded_at_module_end(*tallies: Tally) -> _ModuleFixture:
    """An autouse module fixture recording ``tallies`` once the module's tests are done."""

    @pytest.fixture(scope="module", autouse=True)
    def record_tallies(request: pytest.FixtureRequest) -> Iterator[None]:
        yield
        module = request.node.getparent(pytest.Module)
        assert module is not None
        for tally in tallies:
            tally.record_if_complete(module)

    return record_tallies


class _Runs:
    """Tests per module as collected (before ``-k`` deselects any) and as run so far."""

    def __init__(self) -> None:
        self.collected: dict[str, int] = {}
        self.ran: dict[str, int] = {}
        self.narrowed = False  # tests named one by one (``file.py::test``)

    def complete(self, module: pytest.Module) -> bool:
        # Called in the last test's teardown: its call (or skip) is already counted.
        key = module.nodeid
        return not self.narrowed and self.ran.get(key, 0) == self.collected.get(key, -1)


_RUNS = _Runs()


def _module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _RUNS.narrowed = any("::" in str(arg) for arg in config.args)
    for item in items:
        key = _module_of(item.nodeid)
        _RUNS.collected[key] = _RUNS.collected.get(key, 0) + 1


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        key = _module_of(report.nodeid)
        _RUNS.ran[key] = _RUNS.ran.get(key, 0) + 1
