"""kill -9 of the daemon at random points of decision -> store -> compile -> publish.

Each cycle starts ``edgeagent run``, posts decisions (domains into the RPZ zone file,
URL pages of one site into the proxy index) and SIGKILLs it after a random delay. A real
resolver (the shipped BIND resolver snippet) loads the zone files the daemon writes,
reloaded by the publisher's ``reload_command``; a real Squid (the shipped config) asks
the helper, which follows the index the daemon writes. After every kill the zone file in
place parses completely (old or new serial, never partial), the resolver answers the
canary from a complete zone at a serial no newer than the file's and never older than
before, the proxy index in place opens with a valid checksum and is whole (of the pages
accepted in the cycle it lists a first run and none after), and the live helper answers
as that file says once it has looked (a page listed before the cycles is refused, its
sibling passes). At the end every decision answered 201 is in the store exactly once,
the audit chain verifies, and the restarted daemon publishes them all, up to the
resolver and the helper. 20 cycles by default, 200 with ``EDGEAGENT_LONG=1``.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from edgeagent.config import load_config
from edgeagent.lab.daemons import HOST
from edgeagent.proxy.index import IndexReader
from edgeagent.store import open_store
from tests.support.agent import AGENT, create_token, http_json, running_agent
from tests.support.binaries import require_binary
from tests.support.faults import (
    SNIPPET_POLICY,
    SNIPPET_RPZ,
    AgentFiles,
    decision,
    reload_command,
    resolver_serial,
    start_snippet_resolver,
    zone_serial,
    zonefile_agent,
)
from tests.support.figures import record
from tests.support.polling import wait_for
from tests.support.squid import Servers, raw_get, start_squid

pytestmark = pytest.mark.integration

CYCLES = 200 if os.environ.get("EDGEAGENT_LONG") == "1" else 20
SITE = "kill9.site.test"  # URL decisions are pages of this site (the origin serves it)
LISTED = "listed-first"  # a page listed before the cycles: every index refuses it
HELPER_CHECK_SECONDS = 1.1  # the helper's --check-interval (1 s), and a margin


def test_kill_9_at_random_points_loses_nothing_and_leaves_old_or_new(tmp_path: Path) -> None:
    require_binary("squid")
    # Squid's helper runs as `proxy`: the index must be reachable by it.
    work = Path(tempfile.mkdtemp(prefix="edgeagent-kill9-"))
    os.chmod(work, 0o755)
    named = start_snippet_resolver(work)
    agent = zonefile_agent(
        work,
        rpz=SNIPPET_RPZ,
        proxy='group = "proxy"\n',
        publisher=reload_command(named.reload_argv),
        zone=SNIPPET_POLICY,
    )
    servers = Servers()
    squid = start_squid(
        work / "squid", agent.index, f"http://{HOST}:{servers.stop_port}", {SITE: HOST}
    )
    try:
        _cycles(tmp_path, agent, named.port, Proxy(squid.proxy_port, servers))
    finally:
        squid.stop()
        servers.close()
        named.stop()
        shutil.rmtree(work, ignore_errors=True)


class Proxy:
    """Pages of :data:`SITE` asked through the live Squid and its helper."""

    def __init__(self, port: int, servers: Servers) -> None:
        self.port = port
        self.servers = servers
        self.lookups = 0

    def refused(self, page: str) -> bool:
        """True if Squid sends ``page`` to the stop page, False if the origin served it."""
        url = f"http://{SITE}:{self.servers.origin_port}/{page}.html"
        status, headers, body = raw_get(self.port, url)
        self.lookups += 1
        if status == 302:
            assert headers["location"].startswith(f"http://{HOST}:{self.servers.stop_port}/")
            return True
        assert status == 200, (page, status, body[:200])
        return False

    def answers_as_the_index_in_place(self, index: Path, pages: list[str]) -> None:
        """The helper answers as the index file in place says, which is whole: the page
        listed first is refused, its sibling passes, and of ``pages`` (in the order
        accepted) the file lists a first run and none after."""
        # Each helper child looks for a new file at most HELPER_CHECK_SECONDS after its
        # last look: past that since the last write, every child has the file in place.
        age = time.time() - index.stat().st_mtime
        time.sleep(max(0.0, HELPER_CHECK_SECONDS - age))
        reader = IndexReader.open(index)
        try:
            listed = [reader.match(f"http://{SITE}/{p}.html") is not None for p in pages]
        finally:
            reader.close()
        assert listed == sorted(listed, reverse=True), list(zip(pages, listed, strict=True))
        assert self.refused(LISTED)
        assert not self.refused("sibling")
        assert [self.refused(p) for p in pages] == listed, pages


def _post(api: str, token: str, name: str, scope: str) -> int:
    body = decision(name, scope)
    if scope == "url":
        body["target"] = f"http://{SITE}/{name}.html"
    status, _ = http_json("POST", f"{api}/v1/decisions", token, body)
    return status


def _cycles(tmp_path: Path, agent: AgentFiles, resolver_port: int, proxy: Proxy) -> None:
    config, metrics_port, api = agent.config, agent.metrics_port, agent.api
    zone, index = agent.zone, agent.index
    token = create_token(config, "analyst", "ana")
    accepted: list[str] = []
    last_domain = last_page = ""
    rng = random.Random(13)
    serials: list[int] = []
    served: list[int] = [resolver_serial(resolver_port)]
    survived = 0
    for cycle in range(CYCLES):
        pages: list[str] = []
        with running_agent(config, metrics_port, tmp_path / "daemon.log") as proc:
            if cycle == 0:
                assert _post(api, token, LISTED, "url") == 201
                wait_for("the helper refusing the listed page", lambda: proxy.refused(LISTED), 30)
            timer = threading.Timer(rng.uniform(0.0, 0.6), proc.kill)
            timer.start()
            i = 0
            while proc.poll() is None:
                name = f"c{cycle}-{i}.example"
                scope = "url" if i % 3 == 2 else "domain"
                try:
                    status = _post(api, token, name, scope)
                except OSError:
                    break  # killed mid-request: not answered, may or may not be stored
                if status == 201:
                    accepted.append(name)
                    if scope == "domain":
                        last_domain = name
                    else:
                        pages.append(name)
                i += 1
            timer.join()
            proc.wait()
        if zone.exists():
            serials.append(zone_serial(zone, SNIPPET_POLICY))  # raises on a partial zone
            # The resolver serves a complete zone: the last one loaded, never ahead of
            # the file in place and never behind what it served before.
            served.append(resolver_serial(resolver_port))
            assert served[-2] <= served[-1] <= serials[-1], (served, serials)
        proxy.answers_as_the_index_in_place(index, pages)
        last_page = pages[-1] if pages else last_page
        survived += 1
    assert serials == sorted(serials), "a serial went backwards after a restart"

    verify = subprocess.run(
        [AGENT, "audit", "verify", "-c", str(config)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    settings = load_config(config)
    store = open_store(settings.store, settings.agent.state_dir)
    try:
        stored = Counter(d.reference for d in store.list_decisions(limit=100_000))
    finally:
        store.close()
    lost = [n for n in accepted if stored[f"CASE-{n}"] != 1]
    record(
        "faults",
        "kill9",
        {
            "cycles": CYCLES,
            "survived": survived,
            "decisions": len(accepted),
            "lost": len(lost),
            "resolver_serials": len(set(served)),
            "helper_lookups": proxy.lookups,
        },
    )
    assert not lost, lost

    with running_agent(config, metrics_port, tmp_path / "daemon.log"):
        wait_for("every decision published", lambda: last_domain in zone.read_text(), 30)
        final = zone_serial(zone, SNIPPET_POLICY)
        wait_for(
            "the resolver at the last serial",
            lambda: resolver_serial(resolver_port) == final,
            30,
        )
        if last_page:
            wait_for("the helper at the last page", lambda: proxy.refused(last_page), 30)
    print(f"kill -9: {survived} cycles survived, {len(accepted)} decisions kept")
