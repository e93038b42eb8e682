"""A fleet on loopback, run from the RENDERED snippets (``edgeagent render``).

Used by ``edgeagent lab --fleet`` and by the fleet tests (one piece of code for both):
:func:`loopback_inventory` describes hidden primaries, regional distribution secondaries
and resolvers of every kind on 127.0.0.1 (each with its own port and directory,
``{name}`` in the paths); :func:`start_fleet` renders it, writes fresh keys, checks each
config with its daemon's checker and starts every daemon from the rendered file, unchanged.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.rdatatype
import dns.tsig

from edgeagent.intake.entryref import KEY_FILE_NAME
from edgeagent.lab.daemons import (
    HOST,
    ProcessGroup,
    RunningDaemon,
    check_config,
    free_port,
    spawn,
    wait_answering,
)
from edgeagent.lab.root import keep_on_loopback
from edgeagent.proxy.enforcer import HELPER_STATS_FILE_NAME, INDEX_FILE_NAME
from edgeagent.render.inventory import Inventory, ResolverKind, parse_inventory
from edgeagent.render.snippets import (
    ProxyNames,
    Templates,
    bind_key_text,
    knot_key_text,
    render_fleet,
)
from edgeagent.render.writing import write_rendering
from edgeagent.rpz.compiler import RpzSettings

KINDS: tuple[ResolverKind, ...] = ("bind", "unbound", "powerdns", "knot")
REGIONS = ("north", "south")
KEYS_DIR = "keys"


def resolver_kinds(count: int) -> list[ResolverKind]:
    """``count`` resolvers of mixed kinds: one Knot Resolver, one PowerDNS Recursor per
    ten, a quarter Unbound, the rest BIND (the usual mix of an ISP)."""
    kinds: list[ResolverKind] = ["knot"] if count >= 4 else []
    kinds += ["powerdns"] * max(1 if count >= 3 else 0, count // 10)
    kinds += ["unbound"] * max(1 if count >= 2 else 0, count // 4)
    kinds += ["bind"] * (count - len(kinds))
    return sorted(kinds, key=KINDS.index)[:count]


def loopback_inventory(
    base: Path,
    kinds: Sequence[ResolverKind],
    *,
    primaries: int = 2,
    secondaries_per_region: int = 1,
    regions: Sequence[str] = REGIONS,
    port: Callable[[], int] = free_port,
) -> Inventory:
    """A fleet on 127.0.0.1 under ``base``: the resolvers spread over ``regions``."""
    dirs = str(base / "{name}")
    keys = str(base / KEYS_DIR)
    data: dict[str, object] = {
        "fleet": {"dnssec_validation": False, "unbound_user": "", "powerdns_refresh_seconds": 1},
        "paths": {
            "bind_dir": dirs,
            "bind_keys_dir": keys,
            "unbound_dir": dirs,
            "powerdns_dir": dirs,
            "powerdns_conf_dir": dirs,
            "powerdns_keys_dir": keys,
            "knot_dir": dirs,
            "knot_keys_dir": keys,
            "publish_dir": str(base / "publish"),
            "agent_secrets_dir": keys,
        },
        "regions": {r: {"transfer_key": f"edgeagent-transfer-{r}"} for r in regions},
        "primaries": [
            {"name": f"primary-{i + 1}", "address": HOST, "port": port()} for i in range(primaries)
        ],
        "secondaries": [
            {"name": f"dist-{r}-{i + 1}", "region": r, "address": HOST, "port": port()}
            for r in regions
            for i in range(secondaries_per_region)
        ],
        "resolvers": [
            {
                "name": f"{kind}-{i:02d}",
                "region": regions[i % len(regions)],
                "kind": kind,
                "address": HOST,
                "port": port(),
                "knot_port": port(),
            }
            for i, kind in enumerate(kinds)
        ],
    }
    return parse_inventory(data, "<loopback fleet>")


@dataclass
class RunningFleet:
    """The fleet's daemons by server name (a Knot resolver: kresd under its name, its
    Knot DNS secondary under ``<name>-knotd``)."""

    base: Path
    inventory: Inventory
    update_key: str
    update_secret: str
    transfer_secrets: dict[str, str]  # region key name -> secret
    daemons: dict[str, RunningDaemon] = field(default_factory=dict)

    @property
    def update_secret_file(self) -> Path:
        return self.base / KEYS_DIR / f"{self.update_key}.secret"

    def stop(self) -> None:
        for d in reversed(list(self.daemons.values())):
            d.stop()


def _secret() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _write_keys(inventory: Inventory, base: Path) -> tuple[str, dict[str, str]]:
    """Fresh keys in every format the rendered snippets include; return the secrets."""
    keys = base / KEYS_DIR
    keys.mkdir(parents=True, exist_ok=True)
    update = _secret()
    (keys / f"{inventory.fleet.update_key}.key").write_text(
        bind_key_text(inventory.fleet.update_key, update)
    )
    (keys / f"{inventory.fleet.update_key}.secret").write_text(update + "\n")
    transfer = {}
    for region in inventory.regions.values():
        secret = transfer[region.transfer_key] = _secret()
        (keys / f"{region.transfer_key}.key").write_text(bind_key_text(region.transfer_key, secret))
        (keys / f"{region.transfer_key}.conf").write_text(
            knot_key_text(region.transfer_key, secret)
        )
    for path in keys.iterdir():
        path.chmod(0o600)
    return update, transfer


def _named(name: str, conf: Path, port: int, group: ProcessGroup | None) -> RunningDaemon:
    check_config(["named-checkconf", str(conf)])
    proc, log = spawn(name, ["named", "-g", "-n", "1", "-c", str(conf)], conf.parent, group)
    return RunningDaemon(name, proc, port, conf.parent, log)


def _daemon(
    name: str, argv: list[str], workdir: Path, port: int, group: ProcessGroup | None
) -> RunningDaemon:
    proc, log = spawn(name, argv, workdir, group)
    return RunningDaemon(name, proc, port, workdir, log)


def start_resolver(
    fleet: RunningFleet, name: str, group: ProcessGroup | None = None
) -> list[RunningDaemon]:
    """Start one rendered resolver (a Knot one: its Knot DNS secondary first)."""
    r = next(r for r in fleet.inventory.resolvers if r.name == name)
    work = fleet.base / name
    if r.kind == "bind":
        started = [_named(name, work / "named.conf", r.port, group)]
    elif r.kind == "unbound":
        conf = work / "unbound.conf"
        check_config(["unbound-checkconf", str(conf)])
        started = [_daemon(name, ["unbound", "-d", "-c", str(conf)], work, r.port, group)]
    elif r.kind == "powerdns":
        argv = ["pdns_recursor", f"--config-dir={work}", "--daemon=no", "--write-pid=no"]
        started = [_daemon(name, argv, work, r.port, group)]
    else:
        conf = work / "knot.conf"
        check_config(["knotc", "-c", str(conf), "conf-check"])
        knotd = _daemon(f"{name}-knotd", ["knotd", "-c", str(conf)], work, r.knot_port, group)
        wait_answering(knotd)
        cache = work / "cache"
        cache.mkdir(exist_ok=True)
        argv = ["kresd", "-n", "-c", str(work / "kresd.conf"), str(cache)]
        started = [knotd, _daemon(name, argv, work, r.port, group)]
    for d in started:
        wait_answering(d)
        fleet.daemons[d.name] = d
    return started


def start_fleet(
    base: Path,
    inventory: Inventory,
    rpz: RpzSettings,
    templates: Templates,
    *,
    group: ProcessGroup | None = None,
    parallel: int = 8,
) -> RunningFleet:
    """Render ``inventory`` under ``base``, write keys, start every daemon; the primaries
    hold the initial zones (serial 1) until the agent's first UPDATE."""
    artefacts = base / "publish" / "proxy"
    proxy = ProxyNames(
        str(artefacts / INDEX_FILE_NAME),
        "open",
        "http://stop.test",
        str(artefacts / KEY_FILE_NAME),
        str(artefacts / HELPER_STATS_FILE_NAME),
    )
    files = render_fleet(inventory, rpz, proxy, templates)
    # One directory per server under base ("{name}" in the paths): drop the kind level.
    flat = {
        rel if rel.startswith("agent/") else rel.split("/", 1)[1]: text
        for rel, text in files.items()
    }
    write_rendering(base, flat)
    for r in inventory.resolvers:
        keep_on_loopback(base / r.name, r.kind)
    update, transfer = _write_keys(inventory, base)
    fleet = RunningFleet(base, inventory, inventory.fleet.update_key, update, transfer)
    try:
        probe_key = dns.tsig.Key(fleet.update_key, fleet.update_secret, dns.tsig.HMAC_SHA256)
        for p in inventory.primaries:
            d = _named(p.name, base / p.name / "named.conf", p.port, group)
            probe = dns.message.make_query(rpz.zone, dns.rdatatype.SOA)
            probe.use_tsig(probe_key)
            wait_answering(d, probe=probe)
            fleet.daemons[p.name] = d
        for s in inventory.secondaries:
            d = _named(s.name, base / s.name / "named.conf", s.port, group)
            wait_answering(d)
            fleet.daemons[s.name] = d
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda r: start_resolver(fleet, r.name, group), inventory.resolvers))
    except BaseException:
        fleet.stop()
        raise
    return fleet
