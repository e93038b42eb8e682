"""Unit tests: RpzPublishing orchestration, serial persistence, verification state,
the HTTP zone server's access rule, NOTIFY on the wire, http-notify validation."""

from __future__ import annotations

import ipaddress
import math
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.opcode
import dns.rdatatype
import pytest
from aiohttp.test_utils import TestClient, TestServer

from edgeagent.config import Settings, load_config
from edgeagent.configtypes import Endpoint
from edgeagent.enforcement.base import EnforcerContext, SerialRecord
from edgeagent.errors import Fenced, PublishError
from edgeagent.metrics import Metrics
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.rpz.compiler import RpzAction, RpzSettings, StatsCounter
from edgeagent.rpz.enforcer import (
    RpzEnforcer,
    RpzEnforcerConfig,
    compiler_settings,
    verified_by,
)
from edgeagent.rpz.publishers.base import (
    CanaryResult,
    Publisher,
    PublisherConfig,
    PublisherContext,
    PublishResult,
    ResolverTarget,
    ZoneRelease,
)
from edgeagent.rpz.publishers.bind_update import BindUpdateConfig
from edgeagent.rpz.publishers.http_notify import (
    HttpNotifyConfig,
    HttpNotifyPublisher,
    NotifyTarget,
    ZoneServer,
)
from edgeagent.rpz.publishers.zonefile import ZonefileConfig
from edgeagent.rpz.publishing import SERIAL_FILE, RpzPublishing, compile_release
from edgeagent.rpz.verify import ResolverCheck, Verifier
from edgeagent.store.sqlite import SqliteStore


def state(version: int, *hosts: str) -> DesiredState:
    blocks = tuple(
        sorted(
            (Entry(Indicator(Scope.HOST, h), Action.BLOCK, "feed") for h in hosts),
            key=lambda e: e.indicator,
        )
    )
    return DesiredState(version, blocks, ())


def settings(tmp_path: Path, extra: str = "") -> Settings:
    path = tmp_path / "edgeagent.toml"
    path.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        '[rpz]\nzone = "rpz.edgeagent.invalid"\nexception_zone = "allow.edgeagent.invalid"\n'
        'stop_page_host = "stop.example.net"\nproxy_ipv4 = "192.0.2.80"\n'
        'canary_name = "canary.edgeagent.test"\nserial_grace_seconds = 30\n' + extra
    )
    return load_config(path)


def publishing(
    s: Settings,
    publishers: list[Publisher[ZoneRelease]],
    metrics: Metrics | None = None,
    serials: SerialRecord | None = None,
) -> RpzPublishing:
    """Publishing to ``publishers`` (no resolvers) under ``s``'s ``[rpz]``."""
    cfg = s.sections(RpzEnforcerConfig).rpz
    rpz = compiler_settings(cfg, s.feeds)
    verifier = Verifier([], rpz.canary, grace_seconds=cfg.serial_grace_seconds, metrics=metrics)
    return RpzPublishing(rpz, publishers, verifier, s.agent.state_dir, metrics, serials=serials)


def enforcer(s: Settings) -> RpzEnforcer:
    context = EnforcerContext(s.agent.state_dir, Metrics(), s.feeds)
    return RpzEnforcer.from_config(s.sections(RpzEnforcerConfig), context)


class FakePublisher(Publisher[ZoneRelease]):
    """Records what it was asked to publish; fails while ``fail`` is set."""

    KIND = "fake"

    @classmethod
    def from_config(
        cls, name: str, config: PublisherConfig, context: PublisherContext
    ) -> FakePublisher:
        return cls(name)

    def __init__(self, name: str, fail: bool = False) -> None:
        super().__init__(name)
        self.fail = fail
        self.serials: list[int] = []
        self.texts: list[str] = []

    def prepare(self, release: ZoneRelease) -> ZoneRelease:
        self.texts.append("".join(release.policy_text()))
        return release

    def apply(self, prepared: ZoneRelease) -> None:
        if self.fail:
            raise PublishError(self.name, "primary refused")
        self.serials.append(prepared.serial)

    def verify(self, release: ZoneRelease) -> tuple[CanaryResult, ...]:
        return ()


def test_a_publish_is_fenced_between_its_plan_and_its_apply(tmp_path: Path) -> None:
    """A deposed leader's publish plans against the zone it reads afresh (no SOA
    prerequisite can refuse that), then meets the leader-epoch fence: nothing applied."""
    s = settings(tmp_path)
    pub = FakePublisher("primary")
    leading = [False]

    def fence(what: str) -> None:
        if not leading[0]:
            raise Fenced(what, "leader epoch 3 is stale (the database has 4)")

    rpz = compiler_settings(s.sections(RpzEnforcerConfig).rpz, s.feeds)
    verifier = Verifier([], rpz.canary, grace_seconds=30)
    fenced = RpzPublishing(rpz, [pub], verifier, s.agent.state_dir, fence=fence)
    assert fenced.publish(state(1, "a.example.com")) == []
    assert (len(pub.texts), pub.serials) == (1, [])  # planned, never applied
    assert fenced.status()["publishers"]["primary"]["last_error"] == "Fenced"
    leading[0] = True
    (result,) = fenced.publish(state(1, "a.example.com"))
    assert pub.serials == [result.serial]


def test_compiler_settings_from_config(tmp_path: Path) -> None:
    s = settings(tmp_path, '[feeds.f]\nkind = "domain-list"\npath = "x"\naction = "divert"\n')
    r = compiler_settings(s.sections(RpzEnforcerConfig).rpz, s.feeds)
    assert (r.zone, r.exception_zone, r.canary) == (
        "rpz.edgeagent.invalid",
        "allow.edgeagent.invalid",
        "canary.edgeagent.test",
    )
    assert r.rdatas(RpzAction.STOP_PAGE) == (("CNAME", "stop.example.net."),)
    assert r.action_for("f") is RpzAction.DIVERT
    assert r.action_for("decision:7") is RpzAction.NXDOMAIN
    assert r.rdatas(RpzAction.DIVERT) == (("A", "192.0.2.80"),)


def test_failing_publisher_does_not_stop_the_others(tmp_path: Path) -> None:
    metrics = Metrics()
    good, bad = FakePublisher("good"), FakePublisher("bad", fail=True)
    pub = publishing(settings(tmp_path), [good, bad], metrics)
    results = pub.publish(state(1, "a.example.com"))
    assert [r.publisher for r in results] == ["good"]
    assert good.serials == [1]
    st = pub.status()
    assert st["publishers"]["good"]["up"] is True
    assert st["publishers"]["bad"]["last_error"] == "primary refused"
    assert "a.example.com" not in str(st)
    assert metrics.publisher_up.labels(publisher="bad")._value.get() == 0
    assert metrics.publish_failures.labels(publisher="bad")._value.get() == 1
    assert metrics.rpz_serial._value.get() == 1
    # Nothing changed: only the failed publisher gets the same release again.
    bad.fail = False
    results = pub.publish(state(1, "a.example.com"))
    assert [r.publisher for r in results] == ["bad"]
    assert (good.serials, bad.serials) == ([1], [1])
    assert pub.publish(state(1, "a.example.com")) == []
    # A new version: both, with the next serial, compiled once (same text for both).
    pub.publish(state(2, "a.example.com", "b.example.com"))
    assert (good.serials, bad.serials) == ([1, 2], [1, 2])
    assert good.texts[-1] == bad.texts[-1]
    assert "serial=2" in good.texts[-1]


def test_serial_persists_across_restarts_with_mode_0600(tmp_path: Path) -> None:
    s = settings(tmp_path)
    first = publishing(s, [FakePublisher("p")])
    first.publish(state(1, "a.example.com"))
    first.publish(state(2, "b.example.com"))
    path = Path(s.agent.state_dir) / SERIAL_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = FakePublisher("p")
    publishing(s, [again]).publish(state(1, "a.example.com"))
    assert again.serials == [3]  # a restart continues upward, even for an old version


def test_serial_continues_from_the_store_whoever_published_last(tmp_path: Path) -> None:
    # Two agents on one store, both built at start; the second leads after the first.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    store = SqliteStore(tmp_path / "store.sqlite3")
    try:
        first, second = FakePublisher("p"), FakePublisher("p")
        old_leader = publishing(settings(tmp_path / "a"), [first], serials=store)
        new_leader = publishing(settings(tmp_path / "b"), [second], serials=store)
        old_leader.publish(state(1, "a.example.com"))
        old_leader.publish(state(2, "b.example.com"))
        new_leader.publish(state(2, "b.example.com"))
        assert (first.serials, second.serials) == ([1, 2], [3])
        assert store.rpz_serial() == 3
        assert not (tmp_path / "b" / "state" / SERIAL_FILE).exists()  # no file of its own
    finally:
        store.close()


def test_a_serial_file_of_an_older_agent_is_continued_from(tmp_path: Path) -> None:
    s = settings(tmp_path)
    publishing(s, [FakePublisher("p")]).publish(state(1, "a.example.com"))  # file: 1
    store = SqliteStore(tmp_path / "store.sqlite3")
    try:
        upgraded = FakePublisher("p")
        publishing(s, [upgraded], serials=store).publish(state(2, "b.example.com"))
        assert upgraded.serials == [2]
        assert store.rpz_serial() == 2
    finally:
        store.close()


def test_corrupt_serial_file_is_an_error(tmp_path: Path) -> None:
    s = settings(tmp_path)
    (Path(s.agent.state_dir)).mkdir(parents=True)
    (Path(s.agent.state_dir) / SERIAL_FILE).write_text('{"serial": "x"}')
    with pytest.raises(PublishError, match="no valid serial"):
        publishing(s, [])


def test_compile_release_counts_not_enforceable(tmp_path: Path) -> None:
    url = Entry(Indicator.parse(Scope.URL, "http://u.example.com/p"), Action.BLOCK, "f")
    rel, stats = compile_release(DesiredState(1, (url,), ()), RpzSettings(), 5)
    assert stats.not_enforceable_at_dns == 1
    assert "u.example.com" not in "".join(rel.policy_text())
    assert "serial=5" in "".join(rel.policy_text())  # replayable: chunks, not a stream


def test_builds_publishers_from_config(tmp_path: Path) -> None:
    secret = tmp_path / "tsig.secret"
    secret.write_text("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\n")
    s = settings(
        tmp_path,
        f'[publishers.primary]\nkind = "bind-update"\nserver = "127.0.0.1"\nport = 5300\n'
        f'tsig_key_name = "edgeagent-update"\ntsig_secret_file = "{secret}"\n'
        '[publishers.unbound]\nkind = "http-notify"\nport = 0\n'
        'notify = [{host = "127.0.0.1", port = 5301}]\n'
        '[[resolvers]]\nname = "bind1"\nhost = "127.0.0.1"\nport = 5302\nkind = "bind"\n'
        '[[resolvers]]\nname = "unb1"\nhost = "127.0.0.1"\nport = 5301\nkind = "unbound"\n',
    )
    pub = enforcer(s).publishing
    assert pub is not None
    by_name = {p.name: p for p in pub.publishers}
    assert [t.name for t in by_name["primary"].targets] == ["bind1"]  # type: ignore[attr-defined]
    assert [t.name for t in by_name["unbound"].targets] == ["unb1"]  # type: ignore[attr-defined]
    assert by_name["unbound"].zone_server is not None  # type: ignore[attr-defined]
    assert [r.target.name for r in pub.verifier.resolvers] == ["bind1", "unb1"]


def test_unbound_fed_by_the_primary_is_verified_by_bind_update(tmp_path: Path) -> None:
    secret = tmp_path / "tsig.secret"
    secret.write_text("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\n")
    s = settings(
        tmp_path,
        f'[publishers.primary]\nkind = "bind-update"\nserver = "127.0.0.1"\nport = 5300\n'
        f'tsig_key_name = "edgeagent-update"\ntsig_secret_file = "{secret}"\n'
        '[[resolvers]]\nname = "bind1"\nhost = "127.0.0.1"\nport = 5302\nkind = "bind"\n'
        '[[resolvers]]\nname = "unb1"\nhost = "127.0.0.1"\nport = 5301\nkind = "unbound"\n',
    )
    pub = enforcer(s).publishing
    assert pub is not None
    (primary,) = pub.publishers
    assert [t.name for t in primary.targets] == ["bind1", "unb1"]  # type: ignore[attr-defined]


# ------------------------------------------------------------------------- verification


def fake_query(serials: dict[str, int | None]) -> object:
    def query(t: ResolverTarget, canary: str, timeout: float) -> CanaryResult:
        serial = serials[t.name]
        return CanaryResult(t, serial is not None, serial, 0.001)

    return query


def test_verifier_grace_and_lag() -> None:
    now = [1000.0]
    served: dict[str, int | None] = {"a": 5, "b": 5, "quiet": None}
    metrics = Metrics()
    v = Verifier(
        [
            ResolverCheck(ResolverTarget("a", "127.0.0.1", 1)),
            ResolverCheck(ResolverTarget("b", "127.0.0.1", 2)),
            ResolverCheck(ResolverTarget("quiet", "127.0.0.1", 3), counts_for_readiness=False),
        ],
        "canary.edgeagent.test",
        grace_seconds=60,
        metrics=metrics,
        clock=lambda: now[0],
        query=fake_query(served),  # type: ignore[arg-type]
    )
    v.note_published(5)
    first = v.check()
    assert first.ready
    assert [r.lag for r in first.resolvers] == [0, 0, None]
    v.note_published(6)
    served["a"] = 6
    now[0] += 30
    within = v.check()
    assert within.ready  # b is one behind, but within the grace
    assert {r.name: r.lag for r in within.resolvers} == {"a": 0, "b": 1, "quiet": None}
    now[0] += 31
    late = v.check()
    assert not late.ready
    assert late.reasons == ("resolver b serves serial 5 (published 6)",)
    assert metrics.rpz_serial_lag.labels(resolver="b")._value.get() == 1
    assert math.isnan(metrics.rpz_serial_lag.labels(resolver="quiet")._value.get())
    assert metrics.rpz_canary_ok.labels(resolver="quiet")._value.get() == 0
    served["b"] = 6
    assert v.check().ready
    assert v.last.to_dict()["ready"] is True


# ------------------------------------------------------------------------ HTTP + NOTIFY


async def test_zone_server_serves_allowed_networks_only(tmp_path: Path) -> None:
    (tmp_path / "rpz.edgeagent.invalid.zone").write_text("$TTL 60\n")
    for allowed, code in (
        ((ipaddress.ip_network("127.0.0.0/8"),), 200),
        ((ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32")), 403),
    ):
        server = ZoneServer(tmp_path, ["rpz.edgeagent.invalid"], allowed=allowed)
        async with TestClient(TestServer(server.app())) as client:
            r = await client.get("/zones/rpz.edgeagent.invalid.zone")
            assert r.status == code
            if code == 200:
                assert await r.text() == "$TTL 60\n"
                assert (await client.get("/zones/other.invalid.zone")).status == 404
        if code == 403:
            assert server.refused == 1


def test_notify_is_sent_as_notify_opcode(tmp_path: Path) -> None:
    """Flags first, then the opcode: setting the flags afterwards clears the opcode bits,
    and a QUERY goes out instead of a NOTIFY."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    seen: list[dns.message.Message] = []

    def answer() -> None:
        data, peer = sock.recvfrom(4096)
        q = dns.message.from_wire(data)
        seen.append(q)
        sock.sendto(dns.message.make_response(q).to_wire(), peer)

    t = threading.Thread(target=answer)
    t.start()
    pub = HttpNotifyPublisher(
        "h", directory=tmp_path / "served", notify=[NotifyTarget("127.0.0.1", port)]
    )
    try:
        assert pub._notify("rpz.edgeagent.invalid", pub.notify_targets[0])
    finally:
        t.join(5)
        sock.close()
    (msg,) = seen
    assert msg.opcode() == dns.opcode.NOTIFY
    assert msg.flags & dns.flags.AA
    assert msg.question[0].rdtype == dns.rdatatype.SOA
    assert msg.question[0].name.to_text() == "rpz.edgeagent.invalid."


@dataclass(frozen=True, slots=True)
class AbsoluteOwner(ZoneRelease):
    def policy_text(self, counter: StatsCounter | None = None) -> Iterator[str]:
        yield from ZoneRelease.policy_text(self, counter)
        yield "outside.example.com. CNAME .\n"


def test_http_notify_never_serves_a_broken_zone(tmp_path: Path) -> None:
    pub = HttpNotifyPublisher("h", directory=tmp_path / "served", checkzone=None)
    good = ZoneRelease(state(1, "a.example.com"), RpzSettings(), 1)
    result = pub.publish(good)
    assert isinstance(result, PublishResult)
    served = tmp_path / "served" / f"{RpzSettings().zone}.zone"
    before = served.read_bytes()
    assert stat.S_IMODE(served.stat().st_mode) == 0o600
    with pytest.raises(PublishError, match="absolute"):
        pub.publish(AbsoluteOwner(state(2, "b.example.com"), RpzSettings(), 2))
    assert served.read_bytes() == before
    zones = (RpzSettings().zone, RpzSettings().exception_zone)
    assert sorted(p.name for p in (tmp_path / "served").iterdir()) == sorted(
        f"{zone}.zone" for zone in zones
    )


def test_each_resolver_is_verified_by_the_publishers_that_reach_it_most_directly(
    tmp_path: Path,
) -> None:
    """bind-update: the BIND secondaries, plus the Unbound resolvers nothing else feeds;
    http-notify: the resolvers it notifies; zonefile: every resolver no publisher feeds
    directly."""
    zone_dir = tmp_path / "zones"
    bind = BindUpdateConfig(
        kind="bind-update", server="127.0.0.1", tsig_key_name="k", tsig_secret_env="HOME"
    )
    http = HttpNotifyConfig(kind="http-notify", notify=(Endpoint(host="127.0.0.1", port=5301),))
    files = ZonefileConfig(kind="zonefile", directory=zone_dir)
    resolvers = [
        ResolverTarget("bind1", "127.0.0.1", 5302, "bind"),
        ResolverTarget("unb-notified", "127.0.0.1", 5301, "unbound"),
        ResolverTarget("unb-quiet", "127.0.0.1", 5303, "unbound"),
        ResolverTarget("knot", "127.0.0.1", 5304, "other"),
    ]

    def names(pubs: dict[str, PublisherConfig]) -> dict[str, list[str]]:
        return {n: [t.name for t in ts] for n, ts in verified_by(pubs, resolvers).items()}

    assert names({"b": bind, "h": http}) == {
        "b": ["bind1", "unb-quiet"],
        "h": ["unb-notified"],
    }
    assert names({"b": bind, "h": http, "z": files}) == {
        "b": ["bind1"],
        "h": ["unb-notified"],
        "z": ["unb-quiet", "knot"],
    }
    assert names({"z": files}) == {"z": ["bind1", "unb-notified", "unb-quiet", "knot"]}
