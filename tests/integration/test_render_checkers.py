"""Every snippet of the example inventory's rendering, accepted by its daemon's own checker.

The example inventory (``config/fleet.example.toml``, documentation addresses) is rendered
with its key directories moved to a temporary directory holding fresh keys (the checkers
read the included key files); nothing else changes. BIND's ``named-checkconf``, Unbound's
``unbound-checkconf``, Knot DNS's ``knotc conf-check`` and ``squid -k parse`` must accept
each file; PowerDNS Recursor and Knot Resolver, which have no checker, are started from
their rendered files in ``test_fleet_rendered.py``.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from edgeagent.config import load_config
from edgeagent.lab.proxy import prefilter_module
from edgeagent.render.inventory import parse_inventory
from edgeagent.render.snippets import bind_key_text, knot_key_text
from edgeagent.render.writing import rendering, write_rendering
from tests.support.binaries import require_binary

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("render-checkers")
    keys = base / "keys"
    keys.mkdir()
    data = tomllib.loads((REPO / "config" / "fleet.example.toml").read_text())
    for key in ("bind_keys_dir", "knot_keys_dir", "powerdns_keys_dir"):
        data["paths"][key] = str(keys)
    data["paths"]["squid_prefilter"] = str(prefilter_module(base / "prefilter"))
    inventory = parse_inventory(data, "fleet.example.toml")
    names = [inventory.fleet.update_key, *(r.transfer_key for r in inventory.regions.values())]
    for name in names:
        (keys / f"{name}.key").write_text(bind_key_text(name, SECRET))
        (keys / f"{name}.conf").write_text(knot_key_text(name, SECRET))
    out = base / "out"
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
    _accepts([squid, "-k", "parse", "-f", str(conf)])
