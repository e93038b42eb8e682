"""The fleet inventory: every server of the enforcement fleet, described once.

A TOML file (``config/fleet.example.toml`` is the shipped example) with:

* ``[paths]``: where the daemons keep their files on their own hosts (Debian's defaults);
  ``{name}`` in a path becomes the server's name (a lab or a test running many daemons
  on one host gives each its own directory).
* ``[regions.NAME]``: the TSIG key the region's servers transfer the policy zones with.
* ``[[primaries]]``: the hidden primaries (BIND) the agent publishes to, all of them with
  the same serials.
* ``[[secondaries]]``: the distribution secondaries (BIND), one region each, transferring
  from every primary and notifying their region's resolvers.
* ``[[resolvers]]``: ``kind`` bind, unbound, powerdns or knot (Knot Resolver behind a Knot
  DNS secondary on the same host), one region each.
* ``[[proxies]]``: the filtering proxies (Squid and sniproxy).

Loading validates it and names the bad key (``resolvers[3].region``). Values are frozen.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from edgeagent.configtypes import ConfigModel, DnsName, IpAddress, Items, Name, Port
from edgeagent.errors import ConfigError, ConfigProblem

ResolverKind = Literal["bind", "unbound", "powerdns", "knot"]
Seconds = Annotated[int, Field(ge=1)]


class InventoryPaths(ConfigModel):
    """``[paths]``: directories and files on the fleet's hosts."""

    # BIND's working directory: secondaries keep their zone copies here.
    bind_dir: str = "/var/cache/bind"
    # BIND key files ("<key name>.key", each one `key` statement; owner root, group bind, 0640).
    bind_keys_dir: str = "/etc/bind"
    unbound_dir: str = "/var/lib/unbound"
    powerdns_dir: str = "/var/lib/pdns-recursor"
    powerdns_conf_dir: str = "/etc/powerdns"
    # The region's key as a BIND key file ("<key name>.key"), read by the Lua config.
    powerdns_keys_dir: str = "/etc/powerdns"
    # Knot DNS storage: the zone files it writes are the files Knot Resolver watches.
    knot_dir: str = "/var/lib/knot"
    knot_keys_dir: str = "/etc/knot"
    # Where the agent writes the artefacts other daemons read (tmpfiles.d creates it).
    publish_dir: str = "/var/lib/edgeagent-publish"
    squid_dir: str = "/var/spool/squid"
    squid_helper: str = "/usr/bin/edgeagent-squid-helper"
    squid_prefilter: str = "/usr/lib/edgeagent/edgeagent-prefilter.so"
    # Names Squid answers before asking its resolver (Squid's own default).
    squid_hosts_file: str = "/etc/hosts"
    sniproxy_dir: str = "/var/lib/sniproxy"
    # On the agent's host: the update key's base64 secret, "<key name>.secret".
    agent_secrets_dir: str = "/etc/edgeagent/secrets"


class InventoryRegion(ConfigModel):
    """``[regions.NAME]``: one region's transfer key."""

    transfer_key: DnsName


class InventoryServer(ConfigModel):
    """A server of the fleet: its name and the address and port it answers on."""

    name: Name
    address: IpAddress
    port: Port = 53


class InventorySecondary(InventoryServer):
    """``[[secondaries]]``: a BIND distribution secondary of one region."""

    region: Name


class InventoryResolver(InventoryServer):
    """``[[resolvers]]``: a resolver of one region. A ``knot`` resolver's Knot DNS
    secondary listens on ``127.0.0.1:knot_port`` of the same host."""

    region: Name
    kind: ResolverKind
    knot_port: Port = 5353


class InventoryProxy(ConfigModel):
    """``[[proxies]]``: a filtering proxy (Squid, and sniproxy for port 443)."""

    name: Name
    address: IpAddress
    region: Name
    proxy_port: Port = 3128
    accel_port: Port = 80
    tls_port: Port = 443
    # Route diversion's port (iptables REDIRECT); the rendered line stays commented.
    intercept_port: Port = 3129
    # The resolver WITHOUT the diversion policy that Squid and sniproxy resolve through.
    unfiltered_resolver: IpAddress


class InventoryFleet(ConfigModel):
    """``[fleet]``: fleet-wide settings (every key has a default)."""

    # The BIND key the agent signs its UPDATEs with.
    update_key: DnsName = "edgeagent-update"
    # PowerDNS Recursor takes no NOTIFY for RPZ: it asks for the SOA this often.
    powerdns_refresh_seconds: Seconds = 5
    # Networks the resolvers serve (allow-recursion, access-control).
    client_networks: Items[str] = ("127.0.0.0/8",)
    dnssec_validation: bool = True
    # The user Unbound drops to ("" keeps the starting user).
    unbound_user: str = "unbound"


class Inventory(ConfigModel):
    """The whole inventory file."""

    fleet: InventoryFleet = InventoryFleet()
    paths: InventoryPaths = InventoryPaths()
    regions: dict[Name, InventoryRegion]
    primaries: Items[InventoryServer]
    secondaries: Items[InventorySecondary]
    resolvers: Items[InventoryResolver] = ()
    proxies: Items[InventoryProxy] = ()

    def problems(self) -> list[ConfigProblem]:
        """Cross-field mistakes, each with its key path."""
        problems: list[ConfigProblem] = []
        if not self.primaries:
            problems.append(ConfigProblem("primaries", "at least one hidden primary"))
        seen: set[str] = set()
        groups: list[tuple[str, tuple[InventoryServer | InventoryProxy, ...]]] = [
            ("primaries", self.primaries),
            ("secondaries", self.secondaries),
            ("resolvers", self.resolvers),
            ("proxies", self.proxies),
        ]
        for key, servers in groups:
            for i, server in enumerate(servers):
                if server.name in seen:
                    problems.append(ConfigProblem(f"{key}[{i}].name", "duplicate server name"))
                seen.add(server.name)
        regional: list[tuple[str, tuple[InventorySecondary | InventoryResolver, ...]]] = [
            ("secondaries", self.secondaries),
            ("resolvers", self.resolvers),
        ]
        for key, servers in regional:
            for i, server in enumerate(servers):
                if server.region not in self.regions:
                    problems.append(ConfigProblem(f"{key}[{i}].region", "unknown region"))
        for i, resolver in enumerate(self.resolvers):
            if resolver.region in self.regions and not self.region_secondaries(resolver.region):
                problems.append(ConfigProblem(f"resolvers[{i}].region", "region has no secondary"))
        return problems

    def region_secondaries(self, region: str) -> tuple[InventorySecondary, ...]:
        return tuple(s for s in self.secondaries if s.region == region)

    def region_resolvers(self, region: str) -> tuple[InventoryResolver, ...]:
        return tuple(r for r in self.resolvers if r.region == region)


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for seg in loc:
        out += f"[{seg}]" if isinstance(seg, int) else f".{seg}"
    return out.removeprefix(".")


def parse_inventory(data: dict[str, object], source: str) -> Inventory:
    """Validate parsed TOML; :class:`ConfigError` names every bad key."""
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        problems = [
            ConfigProblem(_key_path(err["loc"]), str(err["msg"]).rstrip(".").lower())
            for err in exc.errors(include_url=False)
        ]
        raise ConfigError(source, problems) from None
    problems = inventory.problems()
    if problems:
        raise ConfigError(source, problems)
    return inventory


def load_inventory(path: Path) -> Inventory:
    """Read and validate the inventory at ``path``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problem = ConfigProblem("", f"cannot read file: {exc.strerror or exc}")
        raise ConfigError(str(path), [problem]) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [ConfigProblem("", f"not a TOML file: {exc}")]) from None
    return parse_inventory(data, str(path))
