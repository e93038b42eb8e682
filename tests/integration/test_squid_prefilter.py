"""Squid's eCAP path prefilter against a real Squid: index and filter swaps, a missing or
corrupt filter, allow entries inside a blocked domain, url-prefix entries and queries.

The prefilter may only ever cost a helper round trip; these tests check that no state of
the filter file (absent, corrupt, older than the index) lets a listed page through for
longer than the helper's and the adapter's check intervals (1 s and 0.25 s).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeagent.lab.daemons import HOST
from edgeagent.lab.proxy import RunningSquid
from edgeagent.model import Action, DesiredState, Entry, Indicator
from edgeagent.proxy.indexwriter import write_index
from edgeagent.proxy.pathfilter import filter_path, write_path_filter
from tests.support.binaries import require_binary
from tests.support.squid import Servers, raw_get, start_squid

pytestmark = pytest.mark.integration

SITE = "pf.site.test"
CARVED = "carve.domain.test"


def _state(version: int, *blocks: tuple[str, str], allows: tuple[str, ...] = ()) -> DesiredState:
    return DesiredState(
        version,
        tuple(Entry(Indicator.parse(s, v), Action.BLOCK, "iwf") for s, v in blocks),
        tuple(Entry(Indicator.parse("url", u), Action.ALLOW, "decision:9") for u in allows),
    )


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Servers, RunningSquid, Path]]:
    require_binary("squid")
    servers = Servers()
    work = Path(tempfile.mkdtemp(prefix="edgeagent-prefilter-"))
    os.chmod(work, 0o755)
    index = work / "proxy-index.bin"
    # Start with an index but NO filter: the adapter must send everything to the helper.
    write_index(_state(1, ("url", f"http://{SITE}/a/listed.html")), index, group="proxy")
    hosts = {SITE: HOST, f"www.{CARVED}": HOST}
    squid = start_squid(work / "squid", index, f"http://{HOST}:{servers.stop_port}", hosts)
    try:
        yield servers, squid, index
    finally:
        squid.stop()
        servers.close()
        shutil.rmtree(work, ignore_errors=True)


def _get(env: tuple[Servers, RunningSquid, Path], host: str, path: str) -> int:
    servers, squid, _ = env
    return raw_get(squid.accel_port, path, host=f"{host}:{servers.origin_port}")[0]


def _within(seconds: float, check: Callable[[], bool]) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, "not within the deadline"
        time.sleep(0.05)
    return time.monotonic() - start


def test_prefilter_swaps_and_failures(env: tuple[Servers, RunningSquid, Path]) -> None:
    index = env[2]
    fpath = filter_path(index)
    # 1. No filter file: every request is asked, the listed page is refused.
    assert _get(env, SITE, "/a/listed.html") == 302
    assert _get(env, SITE, "/a/%6Cisted.html") == 302
    assert _get(env, SITE, "/a/sibling.html") == 200

    # 2. A new policy (filter first, then index, as the agent writes them): the new page
    #    is refused within the helper's 1 s check interval, the old one is not.
    v2 = _state(2, ("url", f"http://{SITE}/b/new.html?id=7"), ("url-prefix", f"http://{SITE}/p/"))
    write_path_filter(v2, fpath, group="proxy")
    write_index(v2, index, group="proxy")
    _within(3, lambda: _get(env, SITE, "/b/new.html?id=%37") == 302)
    assert _get(env, SITE, "/a/listed.html") == 200
    assert _get(env, SITE, "/p//deep/er/page.html") == 302
    assert _get(env, SITE, "/px/page.html") == 200
    assert _get(env, SITE, "/b/new.html?id=8") == 200

    # 3. A corrupt filter, even one rewritten in place (not renamed): the adapter keeps the
    #    last good one (blocks still hold).
    fpath.write_bytes(b"EAPXPTH1 but not really a filter")
    time.sleep(0.6)
    assert _get(env, SITE, "/b/new.html?id=7") == 302
    assert _get(env, SITE, "/p/x") == 302

    # 4. The filter deleted (the adapter keeps what it has), then both files replaced: a
    #    domain block with an allow entry inside it. Hosts under the block are "check"
    #    hosts: every URL is asked, and the allowed page passes in any spelling.
    fpath.unlink()
    v3 = _state(3, ("domain", CARVED), allows=(f"http://www.{CARVED}/ok.html",))
    write_path_filter(v3, fpath, group="proxy")
    write_index(v3, index, group="proxy")
    _within(3, lambda: _get(env, f"www.{CARVED}", "/other.html") == 302)
    assert _get(env, f"www.{CARVED}", "/ok.html") == 200
    assert _get(env, f"www.{CARVED}", "/./ok.html") == 200
    assert _get(env, SITE, "/p/x") == 200

    # 5. A new index whose filter never came (the agent could not write it, say): the
    #    stale filter must not hide the new entry; the adapter notices the version
    #    mismatch and asks about every request until the filter catches up.
    v4 = _state(4, ("domain", CARVED), ("url", f"http://{SITE}/c/newer.html"))
    write_index(v4, index, group="proxy")
    _within(3, lambda: _get(env, SITE, "/c/newer.html") == 302)
    write_path_filter(v4, fpath, group="proxy")
    time.sleep(0.6)
    assert _get(env, SITE, "/c/newer.html") == 302
    assert _get(env, SITE, "/c/other.html") == 200
    log = env[1].log_text()
    assert "path filter (policy version 3) does not match the index (4)" in log
    assert "path filter in step with the index (policy version 4)" in log
    assert "path filter refused (truncated header); keeping the last good one" in log
    assert "/ok.html" not in log
    assert CARVED not in log


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_fail_mode_before_any_index(mode: str) -> None:
    """No index and no filter yet: ``closed`` refuses every request (the cached host ACL
    refuses every host, so nothing depends on the prefilter), ``open`` passes them."""
    require_binary("squid")
    servers = Servers()
    work = Path(tempfile.mkdtemp(prefix="edgeagent-failmode-"))
    os.chmod(work, 0o755)
    squid = start_squid(
        work / "squid",
        work / "missing-index.bin",
        f"http://{HOST}:{servers.stop_port}",
        {SITE: HOST},
        fail_mode=mode,
    )
    try:
        status, headers, _ = raw_get(
            squid.accel_port, "/any/page.html", host=f"{SITE}:{servers.origin_port}"
        )
        if mode == "closed":
            assert status == 302
            assert headers["location"].endswith("/blocked?source=unavailable")
        else:
            assert status == 200
    finally:
        squid.stop()
        servers.close()
        shutil.rmtree(work, ignore_errors=True)
