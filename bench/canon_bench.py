"""canonical_name throughput: the per-entry floor under every feed ingest.

The ingest goal (1,000,000 domains parsed, validated and stored in <= 10 s) leaves well
under 10 µs per entry for everything; canonicalisation should take at most a third of that.
"""

from __future__ import annotations

import time

from bench import Row
from edgeagent.canon import canonical_name


def run(n: int) -> list[Row]:
    """Canonicalise ``n`` distinct synthetic names (``h000000.example`` ...) and time it."""
    names = [f"H{i:06d}.Example." for i in range(n)]
    start = time.perf_counter()
    for name in names:
        canonical_name(name)
    elapsed = time.perf_counter() - start
    return [
        Row(
            figure=f"canonical_name, {n:,} names",
            value=n / elapsed,
            unit="names/s",
            goal=">= 300,000/s",
            anchor="goal: 1M domains ingested in <= 10 s; canon <= 1/3 of that budget",
        ),
        Row(
            figure="canonical_name, per name",
            value=elapsed / n * 1e6,
            unit="µs",
            goal="<= 3.3 µs",
            anchor="same budget as above",
        ),
    ]
