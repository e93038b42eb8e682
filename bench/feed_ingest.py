"""Feed ingest benchmark: parse, validate (canon + guard plan) and store a large list.

``run(kind, n)`` builds a synthetic list of ``n`` lines (``domain`` or ``url``) under a
temp dir, times the parse+validate pass alone, then a full ``sync_feed`` of a local-file
feed into a fresh SQLite store (read, parse, validate, plan, store), and reports seconds
and the process's peak RSS. Run ``python bench/feed_ingest.py`` for the standard
figures (1,000,000 domains, 100,000 URLs), each in its own process so peaks are not
shared. Goal: 1M domains <= 10 s and <= 500 MB peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeagent.feeds import domainlist, urllist
from edgeagent.feeds.base import Accepted, FeedFormat, FeedKind, FeedSpec, SyncOutcome
from edgeagent.feeds.sync import StatusBoard, sync_feed
from edgeagent.guard import Guard, ProtectedNames, PublicSuffixes
from edgeagent.store import SqliteStore


def _make(kind: str, n: int) -> bytes:
    if kind == "domain":
        lines = (f"site-{i:07d}.listed-{i % 997}.example" for i in range(n))
    elif kind == "url":
        lines = (
            f"http://host-{i % 5000}.example/gallery/{i:07d}/page.html?id={i}" for i in range(n)
        )
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return ("# serial: 1\n" + "\n".join(lines) + "\n").encode()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(kind: str, n: int) -> dict[str, Any]:
    """Ingest ``n`` synthetic lines of ``kind`` (``domain`` or ``url``); return figures."""
    data = _make(kind, n)
    list_kind = FeedKind.DOMAIN_LIST if kind == "domain" else FeedKind.URL_LIST
    guard = Guard(PublicSuffixes.load(), ProtectedNames(["protected.example"]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.txt"
        path.write_bytes(data)
        spec = FeedSpec(
            name=f"bench-{kind}",
            kind=FeedKind.LOCAL_FILE,
            content=list_kind,
            format=FeedFormat.LINES,
            path=path,
        )
        parser = domainlist.parse if kind == "domain" else urllist.parse
        t0 = time.perf_counter()
        accepted = sum(1 for item in parser(data, spec) if isinstance(item, Accepted))
        parse_s = time.perf_counter() - t0
        del data
        store = SqliteStore(Path(tmp) / "store.db")
        try:
            t1 = time.perf_counter()
            res = asyncio.run(sync_feed(spec, store, guard, board=StatusBoard()))
            sync_s = time.perf_counter() - t1
        finally:
            store.close()
    if res.outcome is not SyncOutcome.LIVE:
        raise RuntimeError(f"sync did not go live: {res.outcome} {res.reason}")
    return {
        "kind": kind,
        "lines": n,
        "accepted": accepted,
        "stored": res.entries,
        "parse_validate_s": round(parse_s, 2),
        "sync_total_s": round(sync_s, 2),
        "peak_rss_mb": round(_peak_mb(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=["domain", "url"])
    ap.add_argument("--n", type=int)
    args = ap.parse_args(argv)
    if args.kind:
        print(json.dumps(run(args.kind, args.n or 1000)))
        return 0
    for kind, n in (("domain", 1_000_000), ("url", 100_000)):
        out = subprocess.run(
            [sys.executable, __file__, "--kind", kind, "--n", str(n)],
            check=True,
            capture_output=True,
            text=True,
        )
        print(out.stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
