"""Every snippet of the example inventory's rendering, loaded by its real daemon.

The example inventory (``config/fleet.example.toml``, documentation addresses) is rendered
with its directories moved to a temporary directory, the key directories holding fresh
keys (the checkers read the included key files); nothing else changes. BIND's
``named-checkconf`` and ``named-checkzone`` (the primaries' initial zones), Unbound's
``unbound-checkconf``, Knot DNS's ``knotc conf-check`` and ``squid -k parse`` must accept
each file. PowerDNS Recursor, Knot Resolver and sniproxy have no checker: they are started
from their rendered files, unchanged, in a network namespace whose loopback carries the
example's documentation addresses, with the last good zones on disk (the primaries'
initial zones) and no centre reachable, and must answer (the resolvers: the canary from
those zones, i.e. fail static). systemd-tmpfiles applies the rendered tmpfiles.d file in
``test_systemd_units.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeagent.config import load_config
from edgeagent.lab.daemons import stop_process
from edgeagent.lab.proxy import prefilter_module
from edgeagent.render.inventory import load_inventory, parse_inventory
from edgeagent.render.snippets import bind_key_text, knot_key_text
from edgeagent.render.writing import rendering, write_rendering
from edgeagent.rpz.enforcer import RpzEnforcerConfig
from tests.support.binaries import require_binary

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("render-checkers")
    keys = base / "keys"
    keys.mkdir()
    out = base / "out"
    data = tomllib.loads((REPO / "config" / "fleet.example.toml").read_text())
    for key in ("bind_keys_dir", "knot_keys_dir", "powerdns_keys_dir"):
        data["paths"][key] = str(keys)
    for key in ("powerdns_dir", "knot_dir", "sniproxy_dir"):
        data["paths"][key] = str(base / "work" / "{name}")
    # PowerDNS Recursor reads its Lua config where the rendering puts it.
    data["paths"]["powerdns_conf_dir"] = str(out / "resolvers" / "{name}")
    data["paths"]["squid_prefilter"] = str(prefilter_module(base / "prefilter"))
    inventory = parse_inventory(data, "fleet.example.toml")
    names = [inventory.fleet.update_key, *(r.transfer_key for r in inventory.regions.values())]
    for name in names:
        (keys / f"{name}.key").write_text(bind_key_text(name, SECRET))
        (keys / f"{name}.conf").write_text(knot_key_text(name, SECRET))
    write_rendering(
        out, rendering(inventory, load_config(REPO / "config" / "edgeagent.example.toml"))
    )
    return out


def _accepts(argv: list[str]) -> None:
    run = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert run.returncode == 0, f"{argv}: {run.stdout}{run.stderr}"


def test_named_checkconf_accepts_every_bind_snippet(rendered: Path) -> None:
    checker = require_binary("named-checkconf")
    confs = sorted(rendered.glob("*/*/named.conf"))
    assert len(confs) == 2 + 4 + 2  # primaries, distribution secondaries, BIND resolvers
    for conf in confs:
        _accepts([checker, str(conf)])


def test_unbound_checkconf_accepts_every_unbound_snippet(rendered: Path) -> None:
    checker = require_binary("unbound-checkconf")
    confs = sorted(rendered.glob("resolvers/*/unbound.conf"))
    assert len(confs) == 2
    for conf in confs:
        _accepts([checker, str(conf)])


def test_knotc_accepts_the_knot_secondary(rendered: Path) -> None:
    knotc = require_binary("knotc")
    (conf,) = rendered.glob("resolvers/*/knot.conf")
    _accepts([knotc, "-c", str(conf), "conf-check"])


def test_squid_parses_the_proxy_snippet(rendered: Path) -> None:
    squid = require_binary("squid")
    (conf,) = rendered.glob("proxies/*/squid.conf")
    # In a network namespace of its own with no interface up: the snippet names no
    # visible_hostname, so Squid looks up the name of its listening address, through the
    # system's resolver, off the machine (and 10 s until that times out).
    _accepts([require_binary("unshare"), "--net", squid, "-k", "parse", "-f", str(conf)])


def test_named_checkzone_accepts_the_primaries_initial_zones(rendered: Path) -> None:
    checker = require_binary("named-checkzone")
    zones = sorted(rendered.glob("primaries/*/*.zone"))
    assert len(zones) == 2 * 2
    for zone in zones:
        _accepts([checker, zone.name.removesuffix(".zone"), str(zone)])


# Asks from inside the namespace: the example's addresses exist only there.
_ASK = r"""
import sys, time, dns.exception, dns.message, dns.query
address, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
query = dns.message.make_query(name, "TXT")
deadline = time.monotonic() + 20
while True:
    try:
        print(dns.query.udp(query, address, port=port, timeout=0.5).to_text())
        break
    except (OSError, dns.exception.DNSException) as exc:
        if time.monotonic() > deadline:
            print(f"no answer: {exc!r}")
            break
        time.sleep(0.1)
"""

_CONNECT = r"""
import socket, sys, time
deadline = time.monotonic() + 15
while True:
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5).close()
        print("accepted")
        break
    except OSError as exc:
        if time.monotonic() > deadline:
            print(f"refused: {exc!r}")
            break
        time.sleep(0.1)
"""


@dataclass
class Namespace:
    name: str

    def run(self, *argv: str) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    def spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.name, *argv], stdout=out, stderr=subprocess.STDOUT
            )


@pytest.fixture
def example_namespace() -> Iterator[Namespace]:
    """A network namespace whose loopback holds the example inventory's addresses."""
    require_binary("ip")
    if os.geteuid() != 0:
        pytest.fail("needs root: the example's addresses live in a network namespace")
    inventory = load_inventory(REPO / "config" / "fleet.example.toml")
    name = f"ea-render-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
        addresses = {r.address for r in inventory.resolvers} | {
            p.address for p in inventory.proxies
        }
        for address in sorted(addresses):
            subprocess.run(
                ["ip", "-n", name, "addr", "add", f"{address}/32", "dev", "lo"],
                check=True,
                timeout=10,
            )
        yield Namespace(name)
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=10)


def test_recursor_kresd_and_sniproxy_start_from_their_rendered_files(
    rendered: Path, example_namespace: Namespace
) -> None:
    for program in ("pdns_recursor", "kresd", "sniproxy"):
        require_binary(program)
    inventory = load_inventory(REPO / "config" / "fleet.example.toml")
    rpz = load_config(REPO / "config" / "edgeagent.example.toml").sections(RpzEnforcerConfig).rpz
    work = rendered.parent / "work"
    initial = sorted(rendered.glob("primaries/primary-1/*.zone"))
    started: list[subprocess.Popen[bytes]] = []
    try:
        for r in inventory.resolvers:
            if r.kind not in ("powerdns", "knot"):
                continue
            # The last good zones on disk, where the daemon keeps them (PowerDNS's dump,
            # Knot DNS's storage), as those write them: with their origin.
            (work / r.name).mkdir(parents=True, exist_ok=True)
            for zone in initial:
                origin = zone.name.removesuffix(".zone")
                (work / r.name / zone.name).write_text(f"$ORIGIN {origin}.\n{zone.read_text()}")
            conf_dir = rendered / "resolvers" / r.name
            if r.kind == "powerdns":
                argv = [
                    "pdns_recursor",
                    f"--config-dir={conf_dir}",
                    "--daemon=no",
                    "--write-pid=no",
                ]
            else:
                cache = work / r.name / "cache"
                cache.mkdir(exist_ok=True)
                argv = ["kresd", "-n", "-c", str(conf_dir / "kresd.conf"), str(cache)]
            started.append(example_namespace.spawn(argv, work / f"{r.name}.log"))
            answer = example_namespace.run(
                sys.executable, "-c", _ASK, r.address, str(r.port), rpz.canary_name
            )
            log = (work / f"{r.name}.log").read_text(errors="replace")[-2000:]
            assert "edgeagent-canary serial=1" in answer, f"{r.name}: {answer}\n{log}"
        for p in inventory.proxies:
            (work / p.name).mkdir(parents=True, exist_ok=True)
            conf = rendered / "proxies" / p.name / "sniproxy.conf"
            started.append(
                example_namespace.spawn(["sniproxy", "-f", "-c", str(conf)], work / "sni.log")
            )
            reply = example_namespace.run(
                sys.executable, "-c", _CONNECT, p.address, str(p.tls_port)
            )
            assert reply.strip() == "accepted", reply
    finally:
        for proc in started:
            stop_process(proc)
