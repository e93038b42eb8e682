"""The shipped hidden-primary configs log no list entry: a real ``named`` takes UPDATEs
and its log, written as the snippet's ``logging`` statement says, holds no owner name.

The lab and the other tests run ``named -g``, which sends everything to stderr and
ignores the ``logging`` statement; here ``named -f`` honours it, as under systemd
(``start_primary(log_file=...)``: the one addition to the rendered snippet is a file
channel for the ``default`` category, which production sends to syslog).
"""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.name
import dns.query
import pytest

from edgeagent.lab.daemons import HOST
from edgeagent.lab.resolvers import UPDATE_KEY, bootstrap_zones, start_primary, update_publisher
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ZoneRelease

pytestmark = pytest.mark.integration

SETTINGS = RpzSettings()  # the zone names the shipped hidden-primary snippet serves
BLOCKED = "blocked-marker.example"
ALLOWED = "allowed-marker.example"


@pytest.mark.parametrize("unbound_clients", [None, "127.0.0.1; "], ids=["primary", "for-unbound"])
def test_updates_are_not_logged_with_owner_names(
    tmp_path: Path, unbound_clients: str | None
) -> None:
    first = ZoneRelease(DesiredState(1, (), ()), SETTINGS, 10)
    bootstrap_zones(tmp_path / "zones", first)
    log_file = tmp_path / "named-file.log"
    primary = start_primary(
        tmp_path / "primary",
        tmp_path / "zones",
        [],
        unbound_clients=unbound_clients,
        log_file=log_file,
        rpz=SETTINGS,
    )
    try:
        pub = update_publisher(primary, first)
        block = Entry(Indicator(Scope.HOST, BLOCKED), Action.BLOCK, "decision:1")
        allow = Entry(Indicator(Scope.HOST, ALLOWED), Action.ALLOW, "decision:2")
        pub.apply(pub.prepare(ZoneRelease(DesiredState(2, (block,), (allow,)), SETTINGS, 11)))
        # The UPDATE took effect: the block is in the primary's policy zone.
        q = dns.message.make_query(f"{BLOCKED}.{SETTINGS.zone}", "CNAME")
        q.use_tsig(
            {dns.name.from_text(UPDATE_KEY): pub.keyring[pub.key_name]}, keyname=pub.key_name
        )
        answer = dns.query.tcp(q, HOST, port=primary.port, timeout=5)
        assert answer.answer, answer
    finally:
        primary.stop()
    logged = log_file.read_text(encoding="utf-8", errors="replace")
    assert "running" in logged  # the channel is in use ...
    assert "marker" not in logged  # ... and names no record the agent changed
