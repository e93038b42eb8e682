"""Squid helper throughput: canonicalise + probe, one core, 1,000,000-entry index.

Register in ``bench/__init__.py`` (REGISTRY) with::

    def _proxy_helper(quick: bool) -> list[Row]:
        from bench import proxy_helper
        return proxy_helper.run(100_000 if quick else 1_000_000)
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from bench import Row
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.proxy.squid_helper import Helper

ANCHOR = "goal: >= 60,000 URLs/s per core (ufdbGuard's claim), <= 40 bytes/entry"


def _state(n: int) -> DesiredState:
    """Hotline-like mix: 70 % pages (10 per host), 10 % prefixes, 10 % hosts, 10 % domains."""
    blocks = []
    for i in range(n):
        k = i % 10
        if k < 7:
            ind = Indicator(Scope.URL, f"http://h{i // 10}.site.test/p/{i}.html")
        elif k == 7:
            ind = Indicator(Scope.URL_PREFIX, f"http://h{i // 10}.site.test/d/{i}/")
        elif k == 8:
            ind = Indicator(Scope.HOST, f"h{i}.host.test")
        else:
            ind = Indicator(Scope.DOMAIN, f"d{i}.example")
        blocks.append(Entry(ind, Action.BLOCK, "iwf"))
    return DesiredState(1, tuple(blocks), ())


def _prefilter_rate(filter_file: Path, paths: list[str]) -> tuple[float, float]:
    """Squid's in-process prefilter over ``paths``: (checks/s, share answered "maybe")."""
    from edgeagent.lab.proxy import PREFILTER_DIR

    subprocess.run(["make", "-s", "-C", str(PREFILTER_DIR)], check=True, capture_output=True)
    res = subprocess.run(
        [str(PREFILTER_DIR / "build" / "probe-main"), str(filter_file), "--count"],
        input="\n".join(paths) + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    lines, wanted, seconds = res.stdout.split()
    return int(lines) / float(seconds), int(wanted) / int(lines)


def run(n: int, requests: int = 200_000) -> list[Row]:
    from edgeagent.proxy.indexwriter import write_index
    from edgeagent.proxy.pathfilter import filter_path, write_path_filter

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "idx.bin"
        t0 = time.perf_counter()
        state = _state(n)
        stats = write_index(state, path)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        fstats = write_path_filter(state, filter_path(path))
        fbuild = time.perf_counter() - t0
        helper = Helper(path)
        # Mostly unlisted traffic on diverted hosts, 1 % listed pages.
        lines = [
            (
                f"{i % 50} http://h{i % (n // 10)}.site.test/p/{i}.html GET"
                if i % 100
                else f"{i % 50} http://h{i // 10}.site.test/p/{i}.html GET"
            ).encode()
            for i in range(requests)
        ]
        answer = helper.answer
        t0 = time.perf_counter()
        for line in lines:
            answer(line)
        elapsed = time.perf_counter() - t0
        # The prefilter is host-blind: unlisted pages get paths no entry has (in the
        # helper's mix above they reuse listed paths on other hosts, which would all be
        # "maybe"); 1 % are listed pages.
        raw_paths = [f"/p/{i if i % 100 == 0 else n + i}.html" for i in range(requests)]
        pf_rate, pf_maybe = _prefilter_rate(filter_path(path), raw_paths)
    return [
        Row(f"helper, {n:,}-entry index", requests / elapsed, "URLs/s", ">= 60,000/s", ANCHOR),
        Row("index size per entry", stats.size_bytes / n, "bytes", "<= 40", ANCHOR),
        Row(f"index build, {n:,} entries", build, "s", "", ""),
        Row(
            "Squid's path prefilter (C++, in process), unique paths",
            pf_rate,
            "checks/s",
            "",
            "probe-main --count: key derivation + lookup, no Squid",
        ),
        Row(
            "prefilter answered maybe",
            100.0 * pf_maybe,
            "%",
            "",
            "1 % of the paths are listed pages",
        ),
        Row(
            "path filter size per entry (in Squid's memory)",
            fstats.size_bytes / n,
            "bytes",
            "",
            "8 bytes per url/url-prefix entry, on top of the helper's index",
        ),
        Row(f"path filter build, {n:,} entries", fbuild, "s", "", ""),
    ]


if __name__ == "__main__":
    for row in run(1_000_000):
        print(row)
