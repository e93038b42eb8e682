"""Every name the canonicaliser accepts is zone-safe: proven with the real ``named-checkzone``.

Hypothesis generates hostile names and URLs; the accepted ones (as ``domain``, ``host``
and ``url`` blocks, with every RPZ action, and as allows) are compiled into one policy
zone and one exception zone per batch, which must pass ``named-checkzone`` with the flags
the publishers use (``check_zone_file``: check-names fail). The check runs once per batch,
not per example; when a batch fails, the entries that fail alone are named.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given

from edgeagent import canon
from edgeagent.errors import InvalidTarget, PublishError
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.rpz.compiler import (
    RpzSettings,
    StatsCounter,
    exception_zone_text,
    policy_zone_text,
)
from edgeagent.rpz.publishers.zonefile import check_zone_file
from edgeagent.rpz.zonetext import safe_owner
from tests.support.binaries import require_binary
from tests.support.fuzzing import EXAMPLES, LONG, fuzz_settings, hostile_names, hostile_urls

pytestmark = pytest.mark.integration

SETTINGS = RpzSettings(
    proxy_ipv4="192.0.2.10",
    proxy_ipv6="2001:db8::10",
    stop_page_host="stop.example",
    source_actions={"nx": "nxdomain", "nodata": "nodata", "stop": "stop-page", "divert": "divert"},
)
SOURCES = ("nx", "nodata", "stop", "divert")
BATCH = 5000 if LONG else 1000  # entries per named-checkzone run


def _entries(names: list[str], urls: list[str]) -> list[Entry]:
    """Each name blocked as a domain and as a host under rotating actions; each URL."""
    out: list[Entry] = []
    for i, name in enumerate(names):
        scope = Scope.DOMAIN if i % 2 else Scope.HOST
        out.append(Entry(Indicator(scope, name), Action.BLOCK, SOURCES[i % len(SOURCES)]))
    out.extend(Entry(Indicator(Scope.URL, url), Action.BLOCK, "divert") for url in urls)
    return sorted(out, key=lambda e: e.indicator)


def _zones(entries: list[Entry], directory: Path) -> list[tuple[str, Path, StatsCounter]]:
    blocks = tuple(entries)
    allows = tuple(
        Entry(e.indicator, Action.ALLOW, "x") for e in entries if e.indicator.scope.is_name
    )
    state = DesiredState(1, blocks, allows)
    out = []
    for zone, text in (
        (SETTINGS.zone, policy_zone_text),
        (SETTINGS.exception_zone, exception_zone_text),
    ):
        counter = StatsCounter()
        path = directory / f"{zone}.zone"
        path.write_text("".join(text(state, SETTINGS, 7, counter)), encoding="ascii")
        out.append((zone, path, counter))
    return out


def _named_checkzone_refuses(entries: list[Entry], directory: Path, checkzone: str) -> list[str]:
    """Zones (of ``entries``) that ``named-checkzone`` refuses, with its output."""
    refused = []
    for zone, path, _ in _zones(entries, directory):
        try:
            check_zone_file(path, zone, checkzone, "fuzz")
        except PublishError:
            proc = subprocess.run(
                [checkzone, "-i", "none", "-k", "fail", "-n", "ignore", zone, str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
            refused.append(f"{zone}: {proc.stdout.strip()}")
    return refused


def test_accepted_names_and_url_hosts_make_zones_named_checkzone_accepts(tmp_path: Path) -> None:
    checkzone = require_binary("named-checkzone")
    names: set[str] = set()
    urls: set[str] = set()

    @fuzz_settings(default=600, long=40_000)
    @given(hostile_names, hostile_urls)
    @example("foo_bar.example", "http://foo_bar.example/listed.html")
    @example("a" * 63 + ".example", "http://_dmarc.example/x")
    def collect(name_text: str, url_text: str) -> None:
        EXAMPLES.count("zone.named-checkzone")
        with contextlib.suppress(InvalidTarget):
            names.add(canon.canonical_name(name_text))
        with contextlib.suppress(InvalidTarget):
            urls.add(canon.canonical_url(url_text))

    collect()
    entries = _entries(sorted(names), sorted(urls))
    assert len(names) > 50  # the property is not vacuous
    batches = [entries[i : i + BATCH] for i in range(0, len(entries), BATCH)]
    for batch in batches:
        refused = _named_checkzone_refuses(batch, tmp_path, checkzone)
        if refused:
            culprits = [
                f"{e.indicator.scope}:{e.indicator.value} ({e.source}): {why}"
                for e in batch
                for why in _named_checkzone_refuses([e], tmp_path, checkzone)
            ]
            pytest.fail("named-checkzone refused:\n" + "\n".join(culprits[:5] or refused))
    # A name is left out of the policy zone only when it is too long once the zone's
    # origin (and "*." for a domain) is appended, or holds a "_" and would own address
    # records (a diversion); and then it is counted.
    zone_stats = _zones(entries, tmp_path)[0][2]
    left_out = sum(1 for e in entries if e.indicator.scope.is_name and not _owner_allowed(e))
    assert zone_stats.refused_name == left_out


def _owner_allowed(e: Entry) -> bool:
    name, scope = e.indicator.value, e.indicator.scope
    if safe_owner(name, SETTINGS.zone, wildcard=scope is Scope.DOMAIN) is None:
        return False
    rdatas = SETTINGS.rdatas(SETTINGS.action_for(e.source))
    return "_" not in name or not any(rtype in ("A", "AAAA") for rtype, _ in rdatas)
