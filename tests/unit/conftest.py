"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgeagent.store import SqliteStore
from tests.support.api import ApiHarness, add_tokens, make_context, make_guard


@pytest.fixture
def api_settings() -> dict[str, Any]:
    """``ApiContext`` settings of the ``api`` fixture; a module overrides this to set some."""
    return {}


@pytest.fixture
async def api(tmp_path: Path, api_settings: dict[str, Any]) -> AsyncIterator[ApiHarness]:
    """The control API over a fresh SQLite store, with one token per role (``add_tokens``)."""
    store = SqliteStore(tmp_path / "store.db")
    tokens = add_tokens(store)
    ctx = make_context(store, make_guard(tmp_path / "protected"), **api_settings)
    async with ApiHarness(store, ctx, tokens) as harness:
        yield harness
    store.close()
