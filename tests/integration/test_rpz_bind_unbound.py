"""The RPZ compiled and published by the zonefile publisher to a real BIND and Unbound.

Resolvers run from the shipped snippets (see tests/integration/resolvers.py) and resolve
a synthetic ``test.`` zone served by a separate authoritative ``named``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from edgeagent.errors import PublishError
from edgeagent.lab.daemons import RunningDaemon
from edgeagent.lab.resolvers import start_authoritative, start_named, start_unbound
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.rpz.compiler import RpzSettings, StatsCounter
from edgeagent.rpz.publishers.base import ResolverTarget, ZoneRelease, zone_file_name
from edgeagent.rpz.publishers.zonefile import ZonefilePublisher
from tests.support.resolvers import stop_all

pytestmark = pytest.mark.integration

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
    sub.host-block A 192.0.2.21
    url-host A 192.0.2.30
    clean A 192.0.2.40
    ipblock A 192.0.2.66
    v6block AAAA 2001:db8:0:6::66
    stop.edgeagent A 192.0.2.90
    """
)

SETTINGS = RpzSettings(
    proxy_ipv4="192.0.2.80",
    stop_page_host="stop.edgeagent.test",
    source_actions={"decision": "stop-page", "interpol": "nxdomain"},
)
# The files the zonefile publisher writes and the resolver templates load.
POLICY_FILE = zone_file_name(SETTINGS.zone)
EXCEPTION_FILE = zone_file_name(SETTINGS.exception_zone)


def entry(scope: Scope, value: str, source: str, action: Action = Action.BLOCK) -> Entry:
    return Entry(Indicator.parse(scope, value), action, source)


def policy(version: int, *, with_host_block: bool = True) -> DesiredState:
    blocks = [
        entry(Scope.DOMAIN, "dom-block.test", "interpol"),
        entry(Scope.URL, "http://url-host.test/bad/page.html", "iwf"),
        entry(Scope.IP, "192.0.2.66", "ipfeed"),
        entry(Scope.CIDR, "2001:db8:0:6::/64", "ipfeed"),
        entry(Scope.CIDR, "198.51.0.0/16", "ipfeed"),  # too wide: refused
    ]
    if with_host_block:
        blocks.append(entry(Scope.HOST, "host-block.test", "decision:1"))
    allows = [entry(Scope.HOST, "ok.dom-block.test", "decision:2", Action.ALLOW)]
    return DesiredState(
        version=version,
        blocks=tuple(sorted(blocks, key=lambda e: e.indicator)),
        allows=tuple(allows),
    )


@dataclass
class Env:
    zone_dir: Path
    auth: RunningDaemon
    named: RunningDaemon
    unbound: RunningDaemon
    publisher: ZonefilePublisher
    serial: int = 1

    def release(self, state: DesiredState) -> ZoneRelease:
        self.serial += 1
        return ZoneRelease(state, SETTINGS, self.serial)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("rpz")
    zone_dir = base / "zones"
    zone_dir.mkdir()
    # The first version goes out before the resolvers start: they need the files to load.
    bootstrap = ZonefilePublisher(
        "bootstrap",
        policy_path=zone_dir / POLICY_FILE,
        exception_path=zone_dir / EXCEPTION_FILE,
    )
    bootstrap.publish(ZoneRelease(DesiredState(0, (), ()), SETTINGS, 1))
    auth = named = unbound = None
    try:
        auth = start_authoritative(base / "auth", {"test": TEST_ZONE})
        named = start_named(base / "named", zone_dir, forwards={"test": auth.port}, rpz=SETTINGS)
        unbound = start_unbound(base / "unbound", zone_dir, stubs={"test": auth.port}, rpz=SETTINGS)
        publisher = ZonefilePublisher(
            "zonefile",
            policy_path=zone_dir / POLICY_FILE,
            exception_path=zone_dir / EXCEPTION_FILE,
            reload_commands=[named.reload_argv, unbound.reload_argv],
            targets=[
                ResolverTarget("named", named.host, named.port),
                ResolverTarget("unbound", unbound.host, unbound.port),
            ],
            verify_timeout=10.0,
        )
        yield Env(zone_dir, auth, named, unbound, publisher)
    finally:
        stop_all(unbound, named, auth)


def ask(d: RunningDaemon, name: str, rtype: str = "A") -> dns.message.Message:
    q = dns.message.make_query(name, rtype)
    return dns.query.udp(q, d.host, port=d.port, timeout=3)


def addresses(r: dns.message.Message) -> set[str]:
    return {
        rd.to_text()
        for rrset in r.answer
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for rd in rrset
    }


def cname_targets(r: dns.message.Message) -> set[str]:
    return {
        rd.to_text() for rrset in r.answer if rrset.rdtype == dns.rdatatype.CNAME for rd in rrset
    }


RESOLVERS = ("named", "unbound")


def resolver(env: Env, which: str) -> RunningDaemon:
    return env.named if which == "named" else env.unbound


def assert_v1_answers(d: RunningDaemon) -> None:
    # domain block (nxdomain): the name and every subdomain
    assert ask(d, "dom-block.test").rcode() == dns.rcode.NXDOMAIN
    assert ask(d, "www.dom-block.test").rcode() == dns.rcode.NXDOMAIN
    # allow under a blocked domain: passthru resolves normally
    r = ask(d, "ok.dom-block.test")
    assert (r.rcode(), addresses(r)) == (dns.rcode.NOERROR, {"192.0.2.12"})
    # host block (stop page): the name only, never its subdomains
    r = ask(d, "host-block.test")
    assert cname_targets(r) == {"stop.edgeagent.test."}
    r = ask(d, "sub.host-block.test")
    assert addresses(r) == {"192.0.2.21"}
    # URL entry: the host is diverted to the proxy, not blocked
    r = ask(d, "url-host.test")
    assert (r.rcode(), addresses(r)) == (dns.rcode.NOERROR, {"192.0.2.80"})
    # unlisted name resolves normally
    assert addresses(ask(d, "clean.test")) == {"192.0.2.40"}
    # rpz-ip triggers, v4 and v6 (zz form)
    assert ask(d, "ipblock.test").rcode() == dns.rcode.NXDOMAIN
    assert ask(d, "v6block.test", "AAAA").rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize("which", RESOLVERS)
def test_published_policy_answers(env: Env, which: str) -> None:
    counter = StatsCounter()
    release = env.release(policy(1))
    result = env.publisher.publish(release)
    assert {c.target.name for c in result.canaries} == {"named", "unbound"}
    assert all(c.serial == release.serial for c in result.canaries)
    stats_text = "".join(release.policy_text(counter))
    assert "198.51" not in stats_text
    assert counter.freeze().refused_ip_prefix == 1
    assert_v1_answers(resolver(env, which))


def test_revoked_entry_is_unblocked(env: Env) -> None:
    env.publisher.publish(env.release(policy(1)))
    for d in (env.named, env.unbound):
        assert cname_targets(ask(d, "host-block.test")) == {"stop.edgeagent.test."}
    env.publisher.publish(env.release(policy(2, with_host_block=False)))
    for d in (env.named, env.unbound):
        r = ask(d, "host-block.test")
        assert (r.rcode(), addresses(r), cname_targets(r)) == (
            dns.rcode.NOERROR,
            {"192.0.2.20"},
            set(),
        )
        assert ask(d, "dom-block.test").rcode() == dns.rcode.NXDOMAIN


@dataclass(frozen=True, slots=True)
class BrokenRelease(ZoneRelease):
    """Test-only hook at the text level: the compiled zone plus one bad line."""

    bad_line: str = "broken CNAME .\nbroken A 192.0.2.1\n"

    def policy_text(self, counter: StatsCounter | None = None) -> Iterator[str]:
        yield from ZoneRelease.policy_text(self, counter)
        yield self.bad_line


@pytest.mark.parametrize(
    "bad_line",
    [
        "broken CNAME .\nbroken A 192.0.2.1\n",  # CNAME and other data
        "absolute.test. CNAME .\n",  # absolute owner
        "$INCLUDE /etc/passwd\n",  # directive
        "garbage ( line\n",  # does not parse
    ],
)
def test_broken_zone_never_reaches_resolvers(env: Env, bad_line: str) -> None:
    good = env.release(policy(1))
    env.publisher.publish(good)
    before = (env.zone_dir / POLICY_FILE).read_bytes()
    env.serial += 1
    broken = BrokenRelease(policy(2, with_host_block=False), SETTINGS, env.serial, bad_line)
    with pytest.raises(PublishError):
        env.publisher.publish(broken)
    assert (env.zone_dir / POLICY_FILE).read_bytes() == before
    assert not list(env.zone_dir.glob(".*tmp-*"))
    for d in (env.named, env.unbound):
        assert_v1_answers(d)
        assert d.proc.poll() is None


def test_verify_failure_restores_previous_file(env: Env, tmp_path: Path) -> None:
    env.publisher.publish(env.release(policy(1)))
    before = (env.zone_dir / POLICY_FILE).read_bytes()
    failing = ZonefilePublisher(
        "zonefile-failing",
        policy_path=env.zone_dir / POLICY_FILE,
        exception_path=env.zone_dir / EXCEPTION_FILE,
        reload_commands=[["false"]],  # the resolver "refuses" the reload
        targets=[ResolverTarget("named", env.named.host, env.named.port)],
    )
    with pytest.raises(PublishError, match="exited 1"):
        failing.publish(env.release(policy(2, with_host_block=False)))
    assert (env.zone_dir / POLICY_FILE).read_bytes() == before
    assert not (env.zone_dir / f"{POLICY_FILE}.prev").exists()


WRITER = textwrap.dedent(
    """\
    import sys
    from pathlib import Path
    from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
    from edgeagent.rpz.compiler import RpzSettings
    from edgeagent.rpz.publishers.base import ZoneRelease
    from edgeagent.rpz.publishers.zonefile import ZonefilePublisher

    d = Path(sys.argv[1])
    n = int(sys.argv[2])
    serial = int(sys.argv[3])
    blocks = tuple(
        Entry(Indicator(Scope.DOMAIN, f"d{i:07d}.example.com"), Action.BLOCK, "feed")
        for i in range(n)
    )
    p = ZonefilePublisher(
        "kill-test", policy_path=d / "rpz.zone", exception_path=d / "rpz-exceptions.zone",
        checkzone=None if n < 50000 else "named-checkzone",
    )
    print("start", flush=True)
    p.publish(ZoneRelease(DesiredState(serial, blocks, ()), RpzSettings(), serial))
    print("done", flush=True)
    """
)


def _serial_and_lines(path: Path) -> tuple[int, int]:
    lines = path.read_text().splitlines()
    soa = next(line for line in lines if line.startswith("@ SOA"))
    return int(soa.split()[4]), len(lines)


def test_kill_9_during_publish_leaves_old_or_new(tmp_path: Path) -> None:
    env_vars = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    run = [sys.executable, "-c", WRITER, str(tmp_path)]
    # Old version: small and complete.
    subprocess.run([*run, "1000", "1"], check=True, env=env_vars, capture_output=True)
    old_serial, old_lines = _serial_and_lines(tmp_path / "rpz.zone")
    assert (old_serial, old_lines) == (1, 1000 * 2 + 5)
    n_new = 300_000
    outcomes = set()
    for delay in (0.6, 1.2, 2.0):
        proc = subprocess.Popen(
            [*run, str(n_new), "2"], env=env_vars, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "start"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        serial, lines = _serial_and_lines(tmp_path / "rpz.zone")
        assert (serial, lines) in {(1, old_lines), (2, n_new * 2 + 5)}
        outcomes.add(serial)
        # Reset to the old version for the next round.
        subprocess.run([*run, "1000", "1"], check=True, env=env_vars, capture_output=True)
    assert 1 in outcomes  # at least one kill landed before the rename
