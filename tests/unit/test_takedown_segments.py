"""On-segment detail: when the locator probes, its limits and counters, and where the
detail goes (ticket JSON, notice, e-mail, webhook, evidence).

The kernel and the wire are replaced here by small functions with the same signatures;
the real route reads and probes run in namespaces (test_takedown_netns.py and, through
the daemon, test_takedown_segment_daemon.py).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import pytest

from edgeagent.config import ConfigError, load_config
from edgeagent.errors import ConfigProblem
from edgeagent.metrics import Metrics
from edgeagent.takedown.delivery import notice_for
from edgeagent.takedown.evidence import RetentionPolicy, build_bundle, verify_bundle
from edgeagent.takedown.notifiers.smtp import render_text
from edgeagent.takedown.notifiers.webhook import notice_json
from edgeagent.takedown.segment import SegmentDetail
from edgeagent.takedown.segment_locator import SegmentLocator
from edgeagent.takedown.space import OwnSpace
from edgeagent.takedown.tickets import (
    Ticket,
    TicketUrl,
    ticket_from_json,
    ticket_to_json,
    with_segments,
)
from tests.support.tickets import T0, make_ticket

OWN = OwnSpace(["192.0.2.0/25"])
MAC = "02:00:00:00:00:10"


class Segment:
    """A pretend segment: which addresses the kernel routes directly, which it has a MAC
    for, and which answer a probe. Records every probe sent."""

    def __init__(self, cached: dict[str, str], answering: dict[str, str]) -> None:
        self.cached = cached
        self.answering = answering
        self.probed: list[str] = []

    def read(self, address: str) -> SegmentDetail:
        if address.startswith("198.51.100."):
            return SegmentDetail(address, T0, "eth1", next_hop="192.0.2.1")
        mac = self.cached.get(address, "")
        learned = "cache" if mac else ""
        return SegmentDetail(address, T0, "eth1", mac=mac, learned_from=learned)

    def probe(self, address: str, interface: str, timeout: float) -> str:
        assert (interface, timeout) == ("eth1", 0.5)
        self.probed.append(address)
        return self.answering.get(address, "")


def locator(segment: Segment, mode: str, metrics: Metrics, **kw: object) -> SegmentLocator:
    return SegmentLocator(
        OWN,
        mode,  # type: ignore[arg-type]
        probe_timeout=0.5,
        metrics=metrics,
        read=segment.read,
        probe=segment.probe,
        **kw,  # type: ignore[arg-type]
    )


def counts(m: Metrics) -> dict[str, float]:
    out = {}
    for metric in m.registry.collect():
        if metric.name.startswith("edgeagent_takedown_probes"):
            for s in metric.samples:
                if s.name.endswith("_total"):
                    out[s.name + "".join(f":{v}" for v in s.labels.values())] = s.value
    return out


async def test_when_not_cached_probes_only_unknown_own_addresses() -> None:
    seg = Segment(cached={"192.0.2.20": "02:00:00:00:00:20"}, answering={"192.0.2.10": MAC})
    m = Metrics()
    loc = locator(seg, "when-not-cached", m)
    probed, cached, routed, silent, foreign = await loc.lookup_many(
        ["192.0.2.10", "192.0.2.20", "198.51.100.7", "192.0.2.99", "192.0.2.200", "192.0.2.10"]
    )
    assert (probed.mac, probed.learned_from, probed.probe) == (MAC, "probe", "answered")
    assert probed.learned_at is not None
    assert (cached.learned_from, cached.probe) == ("cache", "")
    assert (routed.on_segment, routed.next_hop, routed.probe) == (False, "192.0.2.1", "")
    assert (silent.mac, silent.probe) == ("", "timed-out")
    assert (foreign.mac, foreign.probe) == ("", "refused")
    assert seg.probed == ["192.0.2.10", "192.0.2.99"]  # once per address, never outside
    assert counts(m) == {
        "edgeagent_takedown_probes_sent_total": 2,
        "edgeagent_takedown_probes_answered_total": 1,
        "edgeagent_takedown_probes_timed_out_total": 1,
        "edgeagent_takedown_probes_refused_total:outside-own-prefixes": 1,
    }


async def test_never_and_always() -> None:
    seg = Segment(cached={"192.0.2.20": "02:00:00:00:00:20"}, answering={"192.0.2.20": MAC})
    never = await locator(seg, "never", Metrics()).lookup_many(["192.0.2.20", "192.0.2.99"])
    assert [d.probe for d in never] == ["", ""]
    assert seg.probed == []
    (again,) = await locator(seg, "always", Metrics()).lookup_many(["192.0.2.20"])
    assert (again.mac, again.learned_from) == (MAC, "probe")  # the answer wins over the cache


async def test_probes_are_rate_limited() -> None:
    seg = Segment(cached={}, answering={})
    now = [0.0]
    m = Metrics()
    loc = locator(seg, "always", m, probes_per_minute=2, clock=lambda: now[0])
    first = await loc.lookup_many(["192.0.2.1", "192.0.2.2", "192.0.2.3"])
    assert [d.probe for d in first] == ["timed-out", "timed-out", "rate-limited"]
    now[0] = 30.0  # one token back after half a minute
    assert (await loc.lookup("192.0.2.3")).probe == "timed-out"
    assert counts(m)["edgeagent_takedown_probes_refused_total:rate-limit"] == 1
    assert seg.probed == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]


async def test_a_failing_read_or_probe_never_raises() -> None:
    def no_netlink(address: str) -> SegmentDetail:
        raise OSError("netlink")

    def no_raw_socket(address: str, interface: str, timeout: float) -> str:
        raise PermissionError("CAP_NET_RAW")

    m = Metrics()
    broken = SegmentLocator(OWN, "always", metrics=m, read=no_netlink)
    detail = await broken.lookup("192.0.2.10")
    assert (detail.error, detail.on_segment) == ("route lookup failed", False)
    seg = Segment(cached={}, answering={})
    denied = SegmentLocator(OWN, "always", metrics=m, read=seg.read, probe=no_raw_socket)
    assert (await denied.lookup("192.0.2.10")).probe == "failed"
    assert counts(m)["edgeagent_takedown_probes_refused_total:send-error"] == 1


def test_probe_setting_and_its_old_booleans(tmp_path: Path) -> None:
    path = tmp_path / "edgeagent.toml"
    path.write_text('[takedown]\nprobe = "always"\nprobe_rate_per_minute = 5\n')
    settings = load_config(path)
    assert (settings.takedown.probe, settings.takedown.probe_rate_per_minute) == ("always", 5)
    assert settings.warnings == ()
    for old, new in ((False, "never"), (True, "when-not-cached")):
        path.write_text(f"[takedown]\nprobe = {str(old).lower()}\n")
        settings = load_config(path)
        assert settings.takedown.probe == new
        (warning,) = settings.warnings
        assert warning.path == "takedown.probe"
        assert f'write "{new}"' in warning.reason
    path.write_text('[takedown]\nprobe = "sometimes"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems == (
        ConfigProblem("takedown.probe", "must be one of never, when-not-cached, always"),
    )


# ----------------------------------------------------------------- where it goes


def ticket() -> Ticket:
    urls = (
        TicketUrl("http://a.hosted.test/1", "r1", ("192.0.2.10",), T0, T0),
        TicketUrl("http://b.hosted.test/2", "r2", ("198.51.100.7",), T0, T0, status="moved"),
    )
    return make_ticket(urls=urls)


DETAILS = (
    SegmentDetail("192.0.2.10", T0, "eth1", mac=MAC, learned_from="probe", learned_at=T0),
    SegmentDetail("198.51.100.7", T0, "eth1", next_hop="192.0.2.1"),
)


def test_ticket_keeps_the_latest_detail_per_address_and_round_trips() -> None:
    t = with_segments(ticket(), DETAILS)
    newer = replace(DETAILS[0], mac="02:00:00:00:00:99", checked_at=T0 + dt.timedelta(hours=1))
    t = with_segments(t, (newer,))
    assert [d.address for d in t.segments] == ["192.0.2.10", "198.51.100.7"]
    assert t.segments[0].mac == "02:00:00:00:00:99"
    assert ticket_from_json(json.loads(json.dumps(ticket_to_json(t)))) == t
    stored_before = ticket_to_json(ticket())
    del stored_before["segments"]  # a ticket stored before the detail existed
    assert ticket_from_json(stored_before).segments == ()


def test_notice_mail_webhook_and_evidence_carry_the_detail() -> None:
    t = with_segments(ticket(), DETAILS)
    notice = notice_for(t, "notice")
    assert notice.segments == DETAILS[:1]  # only the live URLs' addresses
    _, text = render_text(notice)
    assert f"192.0.2.10: on the segment of eth1, MAC {MAC} (probe answered {T0.isoformat()})" in (
        text
    )
    assert notice_json(notice)["segments"] == [DETAILS[0].to_json()]
    assert "not on a local segment; next hop 192.0.2.1 via eth1" in DETAILS[1].describe()
    bundle = build_bundle(
        t, (), audit_head=(0, ""), policy=RetentionPolicy(), exported_by="sam", now=T0
    )
    assert json.loads(bundle["files"]["segments.json"]) == [d.to_json() for d in DETAILS]
    assert verify_bundle(bundle) == []
