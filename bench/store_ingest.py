"""Store ingest: ``n`` domain entries into a fresh SqliteStore as one live generation.

Entries come from a generator (as a feed parser yields them), so the time includes building
the ``Entry`` values; ``stream_seconds`` is reading them back with ``generation_entries``.
:func:`measure` does the same on any store (``bench/store_ingest_postgresql.py``).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from edgeagent.model import Action, Entry, Indicator, Scope
from edgeagent.store.base import GenerationStatus, Store
from edgeagent.store.sqlite import SqliteStore


def _entries(n: int) -> Iterator[Entry]:
    seen = datetime.now(UTC)
    for i in range(n):
        ind = Indicator(Scope.DOMAIN, f"d{i:07d}.example")
        yield Entry(ind, Action.BLOCK, "bench", "csam", f"ref-{i}", seen, seen)


def run(n: int) -> dict[str, float]:
    """Ingest ``n`` entries; return seconds, entries/s, stream seconds and peak RSS (MiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.db")
        try:
            return measure(store, n)
        finally:
            store.close()


def measure(store: Store, n: int) -> dict[str, float]:
    """Ingest ``n`` entries into ``store`` and stream them back; the figures of :func:`run`."""
    start = time.perf_counter()
    gen = store.add_generation("bench", _entries(n), status=GenerationStatus.LIVE)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    streamed = sum(1 for _ in store.generation_entries(gen.id))
    stream_seconds = time.perf_counter() - start
    assert streamed == n == gen.entry_count
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "entries": float(n),
        "seconds": seconds,
        "entries_per_second": n / seconds if seconds else 0.0,
        "stream_seconds": stream_seconds,
        "peak_rss_mib": peak_mib,
    }


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
