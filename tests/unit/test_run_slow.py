"""The ``slow`` marker: such tests are deselected unless pytest runs with ``--run-slow``,
also when ``-m`` selects a group they belong to (``-m integration``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SLOW = "tests/integration/test_store_postgresql.py::test_1m_generation_copied"
QUICK = "tests/integration/test_store_postgresql.py::test_100k_generation_copied"


def collected(*args: str) -> list[str]:
    """The test ids pytest would run with ``args`` (collection only: nothing starts)."""
    pytest = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    out = subprocess.run(
        [*pytest, *args, "tests/integration/test_store_postgresql.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line.startswith("tests/")]


def test_slow_tests_are_left_out_also_under_a_marker_expression() -> None:
    for args in ((), ("-m", "integration")):
        ids = collected(*args)
        assert QUICK in ids, args
        assert SLOW not in ids, args


def test_run_slow_takes_them_in() -> None:
    assert collected("--run-slow", "-m", "slow") == [SLOW]
