"""Helpers for million-entry work (feed ingest, policy merge)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for a bulk build.

    Parsing or merging a million-entry list allocates millions of acyclic objects; the
    collector's full passes over them cost seconds and free nothing. Nested or concurrent
    uses are safe: only the outermost user that found it enabled turns it back on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
