"""Bytecode for the code the tests start as new processes, written once per session.

The suite starts the agent, its CLI, Squid's helper and the benches as new interpreters
hundreds of times. With ``PYTHONDONTWRITEBYTECODE`` set (as on some CI and developer
machines) each of them compiles every imported module of the project from source again:
about 0.45 s of CPU per start. This plugin (named in the root conftest's
``pytest_plugins``) compiles them into ``__pycache__`` before the first test; an
interpreter reads cached bytecode even when told not to write it, and checks it against
the source, so an edited file is simply compiled again.
"""

from __future__ import annotations

import compileall
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTED_AS_PROCESSES = ("edgeagent", "bench", "tests/support")


def pytest_configure(config: pytest.Config) -> None:
    for directory in STARTED_AS_PROCESSES:
        compileall.compile_dir(ROOT / directory, quiet=2)
