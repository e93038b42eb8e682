"""The fleet paths against real daemons: bind-update and http-notify.

A real hidden primary ``named`` (template ``named.conf.rpz-primary``) takes UPDATEs
from the ``bind-update`` publisher and serves a real secondary resolver ``named``
(``named.conf.rpz-secondary``) by IXFR + NOTIFY; a real ``unbound``
(template ``unbound-rpz-http.conf``) fetches the zones from the agent's HTTP
server after the ``http-notify`` publisher's NOTIFY. Test names live in a synthetic
``test.`` zone served by a separate authoritative ``named``.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import pytest

from edgeagent.errors import PublishError
from edgeagent.lab.daemons import HOST, RunningDaemon, spawn, wait_answering
from edgeagent.lab.resolvers import (
    TRANSFER_KEY,
    UPDATE_KEY,
    bootstrap_zones,
    start_authoritative,
    start_primary,
    start_secondary,
    start_unbound_http,
    update_publisher,
)
from edgeagent.lab.root import keep_on_loopback
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.render.filling import render_template
from edgeagent.rpz.compiler import RpzAction, RpzSettings
from edgeagent.rpz.publishers.base import (
    ResolverTarget,
    ZoneRelease,
    query_canary,
    zone_file_name,
)
from edgeagent.rpz.publishers.bind_update import BindUpdatePublisher
from edgeagent.rpz.publishers.http_notify import (
    HttpNotifyPublisher,
    NotifyTarget,
    ThreadedZoneServer,
    ZoneServer,
)
from edgeagent.rpz.verify import ResolverCheck, Verifier
from tests.support.ports import free_port
from tests.support.resolvers import stop_all

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------ daemons
# The launchers are shared with `edgeagent lab` (edgeagent.lab.resolvers).


def wait_serial(d: RunningDaemon, canary: str, serial: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    target = ResolverTarget(d.name, d.host, d.port)
    while query_canary(target, canary, 0.5).serial != serial:
        if time.monotonic() > deadline or d.proc.poll() is not None:
            raise AssertionError(f"{d.name} never served serial {serial}:\n{d.log_text()[-2000:]}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------- fixtures

TEST_ZONE = textwrap.dedent(
    """\
    $TTL 60
    @ SOA ns.test. hostmaster.test. 1 60 60 600 60
    @ NS ns.test.
    ns A 127.0.0.1
    dom-block A 192.0.2.10
    www.dom-block A 192.0.2.11
    ok.dom-block A 192.0.2.12
    host-block A 192.0.2.20
    url-host A 192.0.2.30
    clean A 192.0.2.40
    late A 192.0.2.41
    *.bulk A 192.0.2.42
    stop.edgeagent A 192.0.2.90
    """
)

SETTINGS = RpzSettings(
    proxy_ipv4="192.0.2.80",
    stop_page_host="stop.edgeagent.test",
    source_actions={"decision": RpzAction.STOP_PAGE, "interpol": RpzAction.NXDOMAIN},
)


def entry(scope: Scope, value: str, source: str, action: Action = Action.BLOCK) -> Entry:
    return Entry(Indicator.parse(scope, value), action, source)


def state(*blocks: Entry, allows: tuple[Entry, ...] = ()) -> DesiredState:
    return DesiredState(1, tuple(sorted(blocks, key=lambda e: e.indicator)), allows)


def policy(*, host_block: bool = True, extra: tuple[Entry, ...] = ()) -> DesiredState:
    blocks = [
        entry(Scope.DOMAIN, "dom-block.test", "interpol"),
        entry(Scope.URL, "http://url-host.test/bad/page.html", "iwf"),
        *extra,
    ]
    if host_block:
        blocks.append(entry(Scope.HOST, "host-block.test", "decision:1"))
    allows = (entry(Scope.HOST, "ok.dom-block.test", "decision:2", Action.ALLOW),)
    return state(*blocks, allows=allows)


@dataclass
class Fleet:
    base: Path
    auth: RunningDaemon
    primary: RunningDaemon
    secondary: RunningDaemon
    unbound: RunningDaemon
    http: ThreadedZoneServer
    bind_pub: BindUpdatePublisher
    http_pub: HttpNotifyPublisher
    serial: int = 1
    daemons: list[RunningDaemon] = field(default_factory=list)

    def release(self, s: DesiredState) -> ZoneRelease:
        self.serial += 1
        return ZoneRelease(s, SETTINGS, self.serial)

    def publish(self, s: DesiredState) -> ZoneRelease:
        rel = self.release(s)
        self.bind_pub.publish(rel)
        self.http_pub.publish(rel)
        return rel

    def bind_publisher(self, **kw: object) -> BindUpdatePublisher:
        args: dict[str, object] = {
            "targets": [target(self.secondary)],
            "retries": 2,
            "backoff_base": 0.05,
            "verify_timeout": 10.0,
        }
        args.update(kw)
        return update_publisher(self.primary, **args)


def target(d: RunningDaemon) -> ResolverTarget:
    return ResolverTarget(d.name, d.host, d.port)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("fleet")
    first = ZoneRelease(DesiredState(0, (), ()), SETTINGS, 1)
    bootstrap_zones(base / "primary-zones", first)
    http_pub = HttpNotifyPublisher("http-notify", directory=base / "served", retries=2)
    http_pub.publish(first)  # served before Unbound starts: it fetches at start-up
    server = http_pub.server([SETTINGS.zone, SETTINGS.exception_zone], port=0)
    http = ThreadedZoneServer(server).start()
    auth = primary = secondary = unbound = None
    try:
        auth = start_authoritative(base / "auth", {"test": TEST_ZONE})
        sec_port = free_port()
        primary = start_primary(base / "primary", base / "primary-zones", [sec_port])
        secondary = start_secondary(
            base / "secondary", primary, sec_port, forwards={"test": auth.port}
        )
        unbound = start_unbound_http(base / "unbound", server.base_url, {"test": auth.port})
        http_pub.notify_targets = (NotifyTarget(unbound.host, unbound.port),)
        http_pub.targets = (target(unbound),)
        wait_serial(secondary, SETTINGS.canary, 1)
        wait_serial(unbound, SETTINGS.canary, 1)
        f = Fleet(base, auth, primary, secondary, unbound, http, None, http_pub)  # type: ignore[arg-type]
        f.bind_pub = f.bind_publisher()
        yield f
    finally:
        http.stop()
        stop_all(unbound, secondary, primary, auth)


# ------------------------------------------------------------------------------- asking


def ask(d: RunningDaemon, name: str, rtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rtype), d.host, port=d.port, timeout=3)


def addresses(r: dns.message.Message) -> set[str]:
    return {
        rd.to_text()
        for rrset in r.answer
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for rd in rrset
    }


def cnames(r: dns.message.Message) -> set[str]:
    return {
        rd.to_text() for rrset in r.answer if rrset.rdtype == dns.rdatatype.CNAME for rd in rrset
    }


def resolvers(f: Fleet) -> tuple[RunningDaemon, RunningDaemon]:
    return (f.secondary, f.unbound)


def assert_policy_answers(d: RunningDaemon, *, host_block: bool = True) -> None:
    assert ask(d, "dom-block.test").rcode() == dns.rcode.NXDOMAIN
    assert ask(d, "www.dom-block.test").rcode() == dns.rcode.NXDOMAIN
    r = ask(d, "ok.dom-block.test")  # passthru
    assert (r.rcode(), addresses(r)) == (dns.rcode.NOERROR, {"192.0.2.12"})
    r = ask(d, "url-host.test")  # divert to the proxy
    assert (r.rcode(), addresses(r)) == (dns.rcode.NOERROR, {"192.0.2.80"})
    r = ask(d, "host-block.test")
    if host_block:
        assert cnames(r) == {"stop.edgeagent.test."}
    else:
        assert (r.rcode(), cnames(r), addresses(r)) == (dns.rcode.NOERROR, set(), {"192.0.2.20"})
    assert addresses(ask(d, "clean.test")) == {"192.0.2.40"}


# -------------------------------------------------------------------------------- tests


def test_decisions_reach_both_resolvers_and_revoke_removes_them(fleet: Fleet) -> None:
    rel = fleet.publish(policy())
    for d in resolvers(fleet):
        assert query_canary(target(d), SETTINGS.canary).serial == rel.serial
        assert_policy_answers(d)
    fleet.publish(policy(host_block=False))
    for d in resolvers(fleet):
        assert_policy_answers(d, host_block=False)


def test_incremental_update_carries_only_the_change(fleet: Fleet) -> None:
    base_rel = fleet.publish(policy())
    rel = fleet.release(policy(extra=(entry(Scope.HOST, "late.test", "decision:3"),)))
    plan = fleet.bind_pub.prepare(rel)
    fleet.bind_pub.cleanup(plan)
    # One new owner + the canary TXT swap (old out, new in); one message.
    assert plan.message_count == 1
    assert plan.record_count == 3
    assert max(plan.zones[0].wire_sizes()) < 1024
    fleet.bind_pub.publish(rel)
    assert cnames(ask(fleet.secondary, "late.test")) == {"stop.edgeagent.test."}
    assert fleet.bind_pub.live_serial == rel.serial != base_rel.serial


def test_large_diff_is_split_and_applied_whole(fleet: Fleet) -> None:
    n = 3000
    bulk = tuple(entry(Scope.DOMAIN, f"b{i:05d}.bulk.test", "interpol") for i in range(n))
    rel = fleet.release(policy(extra=bulk))
    plan = fleet.bind_pub.prepare(rel)
    fleet.bind_pub.cleanup(plan)
    assert plan.message_count > 1
    assert all(size < 65_535 for size in plan.zones[0].wire_sizes())
    fleet.bind_pub.publish(rel)
    assert fleet.bind_pub.live_serial == rel.serial + plan.message_count - 1
    fleet.serial = fleet.bind_pub.live_serial  # the next release must be newer
    for name in ("b00000.bulk.test", f"x.b{n - 1:05d}.bulk.test"):
        assert ask(fleet.secondary, name).rcode() == dns.rcode.NXDOMAIN
    # Back to the small policy: the removal is split as well and lands whole.
    fleet.bind_pub.publish(fleet.release(policy()))
    fleet.serial = fleet.bind_pub.live_serial or fleet.serial
    assert addresses(ask(fleet.secondary, f"b{n - 1:05d}.bulk.test")) == {"192.0.2.42"}


def test_resync_from_axfr_after_restart(fleet: Fleet) -> None:
    fleet.publish(policy())
    fresh = fleet.bind_publisher()  # a restarted agent: nothing in memory
    rel = fleet.release(policy(host_block=False))
    fresh.publish(rel)
    assert fresh.resyncs == 2  # both zones read back by AXFR
    assert_policy_answers(fleet.secondary, host_block=False)
    fleet.bind_pub = fresh


def test_wrong_tsig_key_retries_then_fails_and_old_zone_stays(fleet: Fleet) -> None:
    rel = fleet.publish(policy())
    wrong = fleet.bind_publisher(secret=base64.b64encode(os.urandom(32)).decode(), retries=2)
    started = time.monotonic()
    with pytest.raises(PublishError, match="SOA"):
        wrong.publish(fleet.release(policy(host_block=False)))
    assert time.monotonic() - started >= 0.05  # it backed off between attempts
    # Refused UPDATE (key known to the primary for queries but not allowed to update).
    assert query_canary(target(fleet.secondary), SETTINGS.canary).serial == rel.serial
    assert_policy_answers(fleet.secondary)


def test_update_refused_is_retried_with_backoff(fleet: Fleet) -> None:
    """The transfer key may read the zone but not change it: BIND answers REFUSED."""
    rel = fleet.publish(policy())
    refused = fleet.bind_publisher(
        key_name=TRANSFER_KEY, secret=fleet.primary.extra["transfer_secret"], retries=3
    )
    with pytest.raises(PublishError, match="REFUSED") as err:
        refused.publish(fleet.release(policy(host_block=False)))
    assert "4 attempt" in str(err.value)
    assert refused.attempts == 4
    assert query_canary(target(fleet.secondary), SETTINGS.canary).serial == rel.serial
    assert_policy_answers(fleet.secondary)


def test_update_made_against_a_stale_soa_is_refused_by_the_primary(fleet: Fleet) -> None:
    """The fence at BIND: a writer that read the zone before another changed it (a paused
    leader, woken after the standby took over) has its UPDATE refused by the primary
    (its SOA prerequisite fails), and the newer zone stays whole."""
    fleet.publish(policy())
    stale = fleet.bind_publisher()
    plan = stale.prepare(fleet.release(policy(host_block=False)))  # reads the SOA now
    newer = fleet.publish(policy(extra=(entry(Scope.HOST, "late.test", "decision:3"),)))
    before = stale.attempts
    with pytest.raises(PublishError, match=r"refused by the primary \(NXRRSET\)"):
        stale.apply(plan)
    stale.cleanup(plan)
    assert stale.prerequisite_refusals == 1
    assert stale.attempts == before + 1  # refused at once, not retried
    assert query_canary(target(fleet.secondary), SETTINGS.canary).serial == newer.serial
    assert_policy_answers(fleet.secondary)  # the host block the stale plan removes stays
    assert cnames(ask(fleet.secondary, "late.test")) == {"stop.edgeagent.test."}
    # Its next publish starts from what the primary really holds and is accepted.
    stale.publish(fleet.release(policy(host_block=False)))
    assert_policy_answers(fleet.secondary, host_block=False)
    fleet.bind_pub = stale


def test_primary_down_fails_after_retries(fleet: Fleet) -> None:
    rel = fleet.publish(policy())
    down = fleet.bind_publisher(port=free_port(), retries=2, timeout=0.5)
    with pytest.raises(PublishError, match="cannot read the SOA"):
        down.publish(fleet.release(policy(host_block=False)))
    for d in resolvers(fleet):
        assert query_canary(target(d), SETTINGS.canary).serial == rel.serial


def test_broken_release_never_reaches_the_primary(fleet: Fleet) -> None:
    rel = fleet.publish(policy())

    @dataclass(frozen=True, slots=True)
    class Absolute(ZoneRelease):
        def policy_records(self) -> Iterator[tuple[str, str, str]]:
            yield from ZoneRelease.policy_records(self)
            yield ("outside.test.", "CNAME", ".")

    before = fleet.bind_pub.attempts
    with pytest.raises(PublishError, match="relative"):
        fleet.bind_pub.publish(Absolute(policy(host_block=False), SETTINGS, fleet.serial + 1))
    assert fleet.bind_pub.attempts == before
    assert query_canary(target(fleet.secondary), SETTINGS.canary).serial == rel.serial


def test_large_policy_one_change_is_o1(tmp_path: Path) -> None:
    """100,000 entries loaded at a real primary; one decision -> one small UPDATE."""
    n = 100_000
    blocks = tuple(entry(Scope.DOMAIN, f"d{i:06d}.example.com", "feed") for i in range(n))
    big = DesiredState(1, blocks, ())
    first = ZoneRelease(big, SETTINGS, 10)
    bootstrap_zones(tmp_path / "zones", first)
    primary = start_primary(tmp_path / "primary", tmp_path / "zones", [])
    try:
        pub = update_publisher(primary, first)
        added = entry(Scope.HOST, "new-decision.example.net", "decision:1")
        changed = DesiredState(2, tuple(sorted((*blocks, added), key=lambda e: e.indicator)), ())
        rel = ZoneRelease(changed, SETTINGS, 11)
        plan = pub.prepare(rel)
        assert (plan.message_count, plan.record_count) == (1, 3)
        assert sum(plan.zones[0].wire_sizes()) < 1024
        pub.apply(plan)
        assert pub.attempts == 1
        assert pub.resyncs == 0
        q = dns.message.make_query(f"new-decision.example.net.{SETTINGS.zone}", "CNAME")
        keyring = {dns.name.from_text(UPDATE_KEY): pub.keyring[pub.key_name]}
        q.use_tsig(keyring, keyname=pub.key_name)
        r = dns.query.tcp(q, HOST, port=primary.port, timeout=5)
        assert cnames(r) == {"stop.edgeagent.test."}
    finally:
        primary.stop()


def test_zone_server_refuses_other_networks(fleet: Fleet) -> None:
    url = f"{fleet.http.server.base_url}/zones/{SETTINGS.zone}.zone"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read().decode()
    assert "edgeagent-canary serial=" in body
    closed = ZoneServer(
        fleet.http_pub.directory,
        [SETTINGS.zone],
        port=0,
        allowed=(ipaddress.ip_network("192.0.2.0/24"),),
    )
    other = ThreadedZoneServer(closed).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{closed.base_url}/zones/{SETTINGS.zone}.zone", timeout=5)
        assert err.value.code == 403
    finally:
        other.stop()


def test_verification_reports_lag_of_a_stopped_feed(fleet: Fleet) -> None:
    """Unbound cannot fetch (agent HTTP server down): it keeps the old serial -> lag 1."""
    rel = fleet.publish(policy())
    checks = [ResolverCheck(target(d)) for d in resolvers(fleet)]
    verifier = Verifier(checks, SETTINGS.canary, grace_seconds=0.0)
    verifier.note_published(rel.serial)
    ok = verifier.check()
    assert ok.ready
    assert [(r.lag, r.canary_ok) for r in ok.resolvers] == [(0, True), (0, True)]
    port = fleet.http.server.port
    fleet.http.stop()
    try:
        nxt = fleet.release(policy(host_block=False))
        fleet.bind_pub.publish(nxt)
        slow = HttpNotifyPublisher(
            "http-notify",
            directory=fleet.http_pub.directory,
            notify=fleet.http_pub.notify_targets,
            targets=fleet.http_pub.targets,
            verify_timeout=1.5,
        )
        with pytest.raises(PublishError, match="not served by: unbound"):
            slow.publish(nxt)
        verifier.note_published(nxt.serial)
        state_ = verifier.check()
        by_name = {r.name: r for r in state_.resolvers}
        assert (by_name["secondary"].lag, by_name["secondary"].stale) == (0, False)
        assert (by_name["unbound"].lag, by_name["unbound"].canary_ok) == (1, True)
        assert by_name["unbound"].stale
        assert not state_.ready
        assert state_.reasons == (
            f"resolver unbound serves serial {rel.serial} (published {nxt.serial})",
        )
    finally:
        server = fleet.http_pub.server([SETTINGS.zone, SETTINGS.exception_zone], port=port)
        fleet.http = ThreadedZoneServer(server).start()
    # Back up: the next NOTIFY brings Unbound up to date.
    back = fleet.publish(policy())
    verifier.note_published(back.serial)
    assert verifier.check().ready


# ------------------------------------------------------- PowerDNS Recursor, Knot Resolver


def _spawn_checked(name: str, argv: list[str], workdir: Path, port: int) -> RunningDaemon:
    proc, log = spawn(name, argv, workdir)
    d = RunningDaemon(name, proc, port, workdir, log)
    wait_answering(d, f"{SETTINGS.canary}.")
    return d


def test_powerdns_recursor_transfers_from_the_primary(fleet: Fleet, tmp_path: Path) -> None:
    """The PowerDNS Recursor template (rpzPrimary with TSIG) against the real hidden primary."""
    rel = fleet.publish(policy())
    port = free_port()
    lua = tmp_path / "rpz.lua"
    lua.write_text(
        render_template(
            "recursor-rpz.lua",
            {
                "PRIMARY": f"{HOST}:{fleet.primary.port}",
                "TRANSFER_SECRET": fleet.primary.extra["transfer_secret"],
                "WORK_DIR": str(tmp_path),
                "ZONE_DIR": str(tmp_path),
            },
            SETTINGS,
        )
    )
    (tmp_path / "recursor.conf").write_text(
        f"local-address={HOST}\nlocal-port={port}\nlua-config-file={lua}\n"
        f"socket-dir={tmp_path}\ndaemon=no\nwrite-pid=no\nquiet=yes\n"
    )
    keep_on_loopback(tmp_path, "powerdns")
    d = _spawn_checked("pdns", ["pdns_recursor", f"--config-dir={tmp_path}"], tmp_path, port)
    try:
        wait_serial(d, SETTINGS.canary, rel.serial)
        assert ask(d, "www.dom-block.test").rcode() == dns.rcode.NXDOMAIN
    finally:
        d.stop()


def test_knot_resolver_watches_the_zone_files(tmp_path: Path) -> None:
    """The kresd template: zonefile publisher output, reloaded by file watch."""
    from edgeagent.rpz.publishers.zonefile import ZonefilePublisher

    zones = tmp_path / "zones"
    zones.mkdir()
    pub = ZonefilePublisher(
        "zonefile",
        policy_path=zones / zone_file_name(SETTINGS.zone),
        exception_path=zones / zone_file_name(SETTINGS.exception_zone),
    )
    pub.publish(ZoneRelease(policy(), SETTINGS, 5))
    frag = tmp_path / "rpz.lua"
    frag.write_text(render_template("kresd-rpz.lua", {"ZONE_DIR": str(zones)}, SETTINGS))
    port = free_port()
    conf = tmp_path / "kresd.conf"
    conf.write_text(
        f"net.listen('{HOST}', {port}, {{ kind = 'dns' }})\n"
        f"modules.load('policy')\ndofile('{frag}')\n"
    )
    keep_on_loopback(tmp_path, "knot")
    cache = tmp_path / "cache"
    cache.mkdir()
    d = _spawn_checked("kresd", ["kresd", "-n", "-c", str(conf), str(cache)], tmp_path, port)
    try:
        wait_serial(d, SETTINGS.canary, 5)
        assert ask(d, "www.dom-block.test").rcode() == dns.rcode.NXDOMAIN
        pub.publish(ZoneRelease(policy(host_block=False), SETTINGS, 6))
        wait_serial(d, SETTINGS.canary, 6)  # picked up by the file watch, no command
    finally:
        d.stop()
