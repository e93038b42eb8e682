"""Fixtures and options shared by the whole suite.

Helpers are plain modules in :mod:`tests.support` (import them from there); fixtures live
only in the conftest files: this one, ``tests/unit/conftest.py`` and
``tests/integration/conftest.py``.

Tests marked ``slow`` (minutes each) run only with ``--run-slow``, whatever ``-m`` selects:
``pytest -m integration`` leaves them out, ``pytest --run-slow -m slow`` runs just them.
"""

from __future__ import annotations

import pytest

from edgeagent.guard import Guard, ProtectedNames, PublicSuffixes

RUN_SLOW = "--run-slow"

# Fuzz example counts and other figures of the hostile-input tests, printed at the end and
# kept in var/reliability/hostile-inputs.json (see the module); bytecode of the code the
# tests start as processes, compiled once (see the module).
pytest_plugins = ("tests.support.fuzzing", "tests.support.figures", "tests.support.bytecode")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        RUN_SLOW, action="store_true", help="also run the tests marked slow (minutes each)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``slow`` tests unless ``--run-slow`` is given (an option, not a default
    ``-m 'not slow'``, which a ``-m`` on the command line would silently replace)."""
    if config.getoption(RUN_SLOW):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]


@pytest.fixture(scope="module")
def guard() -> Guard:
    """The real guard: the bundled Public Suffix List and one protected name,
    ``protected.example``."""
    return Guard(PublicSuffixes.load(), ProtectedNames(["protected.example"]))
