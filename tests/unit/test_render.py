"""``edgeagent render``: the shipped fleet snippets are the rendering of the example
inventory, every name agrees with the agent's config, and the limits grow with the fleet."""

from __future__ import annotations

import fnmatch
import math
import re
import tomllib
from pathlib import Path

import pytest

from edgeagent.config import default_settings, load_config
from edgeagent.errors import ConfigError
from edgeagent.intake.entryref import KEY_FILE_NAME
from edgeagent.proxy.enforcer import HELPER_STATS_FILE_NAME, ProxyConfig
from edgeagent.render.inventory import load_inventory, parse_inventory
from edgeagent.render.snippets import Sizing
from edgeagent.render.writing import rendering, write_rendering
from edgeagent.rpz.enforcer import RpzEnforcerConfig

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_INVENTORY = REPO / "config" / "fleet.example.toml"
EXAMPLE_CONFIG = REPO / "config" / "edgeagent.example.toml"
SHIPPED = REPO / "resolvers" / "fleet"


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return rendering(load_inventory(EXAMPLE_INVENTORY), load_config(EXAMPLE_CONFIG))


def test_shipped_snippets_are_the_rendering_of_the_example(files: dict[str, str]) -> None:
    shipped = {
        str(p.relative_to(SHIPPED)): p.read_text(encoding="utf-8")
        for p in SHIPPED.rglob("*")
        if p.is_file() and p.name != "README.md"
    }
    assert sorted(shipped) == sorted(files), "re-run: edgeagent render (see resolvers/fleet)"
    for rel, text in files.items():
        assert shipped[rel] == text, f"{rel} differs from its rendering"


def test_every_snippet_names_the_agents_zones_and_files(files: dict[str, str]) -> None:
    rpz = load_config(EXAMPLE_CONFIG).sections(RpzEnforcerConfig).rpz
    inventory = load_inventory(EXAMPLE_INVENTORY)
    with_zones = {"named.conf", "unbound.conf", "edgeagent-rpz.lua", "knot.conf", "kresd.conf"}
    zone_configs = [text for rel, text in files.items() if rel.rsplit("/", 1)[-1] in with_zones]
    assert len(zone_configs) == 2 + 4 + 6 + 1  # primaries, secondaries, resolvers, Knot DNS
    for text in zone_configs:
        named = set(re.findall(r"[a-z0-9.-]*rpz\.invalid", text))
        assert named <= {
            rpz.zone,
            rpz.exception_zone,
            f"{rpz.zone}.zone",
            f"{rpz.exception_zone}.zone",
        }
        assert rpz.zone in text
        assert rpz.exception_zone in text
    # The primaries' initial zones carry the agent's canary and SOA expire (fail static).
    first = files[f"primaries/primary-1/{rpz.zone}.zone"]
    assert rpz.canary_name in first
    assert str(rpz.soa_expire) in first
    # Every region's key is the one its secondaries and resolvers include.
    for s in inventory.secondaries:
        key = inventory.regions[s.region].transfer_key
        assert f'include "/etc/bind/{key}.key";' in files[f"secondaries/{s.name}/named.conf"]
        assert f'key "{key}"' in files["primaries/primary-2/named.conf"]


def test_secondaries_admit_unbound_by_address_and_notify_their_region(
    files: dict[str, str],
) -> None:
    inventory = load_inventory(EXAMPLE_INVENTORY)
    north = files["secondaries/dist-north-1/named.conf"]
    unbound = next(r for r in inventory.resolvers if r.kind == "unbound" and r.region == "north")
    other = next(r for r in inventory.resolvers if r.kind == "unbound" and r.region == "south")
    assert f'allow-transfer {{ key "edgeagent-transfer-north"; {unbound.address}; }};' in north
    assert other.address not in north
    for r in inventory.region_resolvers("north"):
        assert f"{r.address} port {r.port};" in north
    # The Knot resolver is notified on its Knot DNS secondary's port.
    knot = next(r for r in inventory.resolvers if r.kind == "knot")
    assert f"{knot.address} port {knot.knot_port};" in files["secondaries/dist-south-1/named.conf"]


def test_powerdns_answers_no_older_than_its_rpz_refresh(files: dict[str, str]) -> None:
    """PowerDNS 4.8 keeps a packet-cache answer given before its name was blocked; the
    rendering bounds that cache by the RPZ refresh, and policy answers are never cached."""
    refresh = load_inventory(EXAMPLE_INVENTORY).fleet.powerdns_refresh_seconds
    recursors = {rel: t for rel, t in files.items() if rel.endswith("/recursor.conf")}
    assert recursors
    for rel, text in recursors.items():
        assert f"\npacketcache-ttl={refresh}\n" in text, rel
        lua = files[rel.replace("recursor.conf", "edgeagent-rpz.lua")]
        assert lua.count("maxTTL = 0,") == 2, rel


def test_limits_grow_with_the_fleet() -> None:
    small, big = Sizing.for_fanout(2, 2), Sizing.for_fanout(250, 2)
    # BIND sends 10 messages per tick of its rate limiters: a tick every 10 ms at least.
    assert small.notify_rate == 1000
    assert small.serial_query_rate == 1000
    assert small.transfers_out == 10  # BIND's default
    # 250 resolvers, two zones each: every NOTIFY of one change leaves within 0.1 s.
    assert math.ceil(2 * 250 / 10) * 10 / big.notify_rate <= 0.1
    assert big.transfers_out >= 500
    assert big.tcp_clients > 500


def test_the_agent_fragment_is_a_valid_config(files: dict[str, str], tmp_path: Path) -> None:
    inventory = load_inventory(EXAMPLE_INVENTORY)
    data = tomllib.loads(EXAMPLE_INVENTORY.read_text())
    data["paths"]["agent_secrets_dir"] = str(tmp_path)
    (tmp_path / "edgeagent-update.secret").write_text("c2VjcmV0\n")
    fragment = rendering(parse_inventory(data, "x"), load_config(EXAMPLE_CONFIG))
    config = tmp_path / "edgeagent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n' + fragment["agent/fleet.toml"]
    )
    section = load_config(config).sections(RpzEnforcerConfig)
    assert sorted(section.publishers) == ["primary-1", "primary-2"]
    assert [r.name for r in section.resolvers] == [r.name for r in inventory.resolvers]
    assert {r.region for r in section.resolvers} == {"north", "south"}


def test_inventory_mistakes_name_their_key() -> None:
    data = tomllib.loads(EXAMPLE_INVENTORY.read_text())
    data["resolvers"][2]["region"] = "west"
    data["resolvers"][3]["name"] = data["resolvers"][0]["name"]
    data["proxies"][0]["address"] = "not-an-address"
    with pytest.raises(ConfigError) as err:
        parse_inventory(data, "fleet.toml")
    assert "proxies[0].address" in str(err.value)
    data["proxies"][0]["address"] = "203.0.113.80"
    with pytest.raises(ConfigError) as err:
        parse_inventory(data, "fleet.toml")
    text = str(err.value)
    assert "resolvers[2].region: unknown region" in text
    assert "resolvers[3].name: duplicate server name" in text


def test_writing_is_atomic_and_complete(files: dict[str, str], tmp_path: Path) -> None:
    written = write_rendering(tmp_path, files)
    assert len(written) == len(files)
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temp file left
    assert (tmp_path / "agent" / "fleet.toml").read_text() == files["agent/fleet.toml"]


def test_the_agent_verifies_the_inventorys_resolvers(tmp_path: Path) -> None:
    """``[rpz] inventory``: no [[resolvers]] block per resolver."""
    config = tmp_path / "edgeagent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n\n'
        f'[rpz]\ninventory = "{EXAMPLE_INVENTORY}"\n\n'
        '[[resolvers]]\nname = "lab-resolver"\nhost = "127.0.0.1"\n'
    )
    section = load_config(config).sections(RpzEnforcerConfig)
    inventory = load_inventory(EXAMPLE_INVENTORY)
    verified = {r.name: r for r in section.verified_resolvers()}
    assert sorted(verified) == sorted(["lab-resolver", *(r.name for r in inventory.resolvers)])
    knot = verified["res-south-knot-1"]
    assert (knot.kind, knot.region, knot.host) == ("other", "south", "198.51.100.23")
    assert verified["res-north-unbound-1"].kind == "unbound"


def test_a_bad_inventory_is_a_config_error_at_its_key(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.toml"
    bad.write_text('[regions.north]\ntransfer_key = "k"\n')
    config = tmp_path / "edgeagent.toml"
    config.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n\n[rpz]\ninventory = "{bad}"\n')
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert "rpz.inventory" in str(err.value)
    assert "primaries" in str(err.value)


def _tmpfiles_entries(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line and not line.startswith("#")]


def test_names_agree_between_defaults_example_config_snippets_and_tmpfiles(
    files: dict[str, str], tmp_path: Path
) -> None:
    """An operator deploys the shipped snippets under an agent on its embedded defaults or
    on the example config, with the shipped tmpfiles.d, and renames nothing."""
    inventory = load_inventory(EXAMPLE_INVENTORY)
    # The embedded defaults name what the example config names: the same rendering.
    assert rendering(inventory, default_settings(tmp_path / "state")) == files
    example = load_config(EXAMPLE_CONFIG).sections(RpzEnforcerConfig).rpz
    defaults = RpzEnforcerConfig().rpz
    for key in ("zone", "exception_zone", "canary_name"):
        assert getattr(example, key) == getattr(defaults, key), key
    # The shipped tmpfiles.d is the rendered one.
    rendered_tmpfiles = files["agent/edgeagent.tmpfiles.conf"]
    shipped_tmpfiles = (REPO / "systemd" / "edgeagent.tmpfiles.conf").read_text()
    assert _tmpfiles_entries(shipped_tmpfiles) == _tmpfiles_entries(rendered_tmpfiles)
    dirs = {e[1]: (e[2], e[4]) for e in _tmpfiles_entries(rendered_tmpfiles)}
    proxy_dir = f"{inventory.paths.publish_dir}/proxy"
    rpz_dir = f"{inventory.paths.publish_dir}/rpz"
    assert dirs[proxy_dir] == ("3770", "proxy")
    assert dirs[rpz_dir] == ("2750", "bind")
    # Squid's helpers read the index, its filter and the appeal key, and write their
    # counters, in that directory; the example config recommends the same index path.
    squid = files["proxies/proxy-north-1/squid.conf"]
    index = re.findall(r"--index (\S+)", squid)
    key = re.findall(r"--appeal-key (\S+)", squid)
    stats = re.findall(r"--stats-file (\S+)", squid)
    assert {Path(p).parent for p in (*index, *key, *stats)} == {Path(proxy_dir)}
    assert f"filter={index[0]}.paths" in squid
    assert f'index_path = "{index[0]}"' in EXAMPLE_CONFIG.read_text()
    assert f'"{rpz_dir}"' in EXAMPLE_CONFIG.read_text()  # the zonefile publisher's directory
    # An agent with that index_path keeps its appeal key and reads the counters there.
    proxy = ProxyConfig(enabled=True, index_path=Path(index[0]), group="proxy")
    assert proxy.artefacts_dir(Path("/var/lib/edgeagent")) / KEY_FILE_NAME == Path(key[0])
    assert fnmatch.fnmatch(
        Path(stats[0].replace("%p", "4242")).name, HELPER_STATS_FILE_NAME.replace("%p", "*")
    )
