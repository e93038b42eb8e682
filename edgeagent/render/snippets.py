"""Every snippet of the fleet, rendered from the inventory and the agent's names. Pure.

:func:`render_fleet` returns ``{relative path: text}``; nothing here reads or writes
files (the caller loads the Squid and sniproxy templates and writes the result, see
:mod:`edgeagent.render.writing`). The zone names, zone file names (``<zone>.zone``, as the
``zonefile`` publisher writes them), the canary, the key names and the directories come
from one place each, so the pieces always agree:

* ``primaries/NAME/named.conf`` (+ the two initial zone files): a hidden primary; the
  agent UPDATEs it; it NOTIFYs every distribution secondary and lets them transfer with
  their region's key.
* ``secondaries/NAME/named.conf``: a regional distribution secondary; transfers from every
  primary (either one is enough), NOTIFYs its region's resolvers, lets them transfer with
  the region's key (Unbound, which has no TSIG for transfers, by its address).
* ``resolvers/NAME/``: ``named.conf`` (BIND), ``unbound.conf``, ``recursor.conf`` +
  ``edgeagent-rpz.lua`` (PowerDNS Recursor), ``knot.conf`` + ``kresd.conf`` (Knot DNS
  secondary writing the zone files Knot Resolver watches).
* ``proxies/NAME/``: ``squid.conf`` and ``sniproxy.conf`` (the shipped templates, filled).
* ``agent/fleet.toml``: the agent's ``[publishers.*]`` (one per primary: identical
  serials) and ``[[resolvers]]`` blocks; ``agent/edgeagent.tmpfiles.conf``.

Fail static: every resolver keeps its zones on disk (BIND ``file``, Unbound ``zonefile``,
PowerDNS ``seedFile``/``dumpFile``, Knot DNS storage) and the SOA expire is the agent's
(24 weeks by default), so a resolver that cannot reach any secondary keeps enforcing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from edgeagent.model import DesiredState
from edgeagent.render.filling import fill, unbound_nodefault
from edgeagent.render.inventory import (
    Inventory,
    InventoryPaths,
    InventoryProxy,
    InventoryResolver,
    InventorySecondary,
    InventoryServer,
)
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ZoneRelease, zone_file_name

# The subdirectories of [paths] publish_dir, one per reading daemon (tmpfiles.d makes them).
RPZ_SUBDIR = "rpz"
PROXY_SUBDIR = "proxy"
HEADER = "rendered by `edgeagent render` from the fleet inventory: re-render, do not edit"
ZONE_COUNT = 2  # the policy zone and the exception zone change together
# BIND's rate limiters send at most 10 messages per tick, one tick every 10/rate s: at
# BIND's default of 20/s the NOTIFYs of one change to 200 servers take 10 s. Rendered: a
# tick every 10 ms at least, and every NOTIFY of one change out within 0.1 s.
MIN_RATE = 1000
NOTIFY_SPREAD_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Sizing:
    """BIND's rate and connection limits for a server with ``downstream`` servers below.

    The defaults (notify-rate 20/s, transfers-out 10) make a change reach N secondaries in
    about N/20 s; sized here so that one change's NOTIFYs leave within
    :data:`NOTIFY_SPREAD_SECONDS` (BIND sends 10 per tick, :data:`MIN_RATE`) and every
    downstream server may transfer both zones at once.
    """

    notify_rate: int
    transfers_out: int
    tcp_clients: int
    serial_query_rate: int

    @classmethod
    def for_fanout(cls, downstream: int, upstream: int) -> Sizing:
        notifies = ZONE_COUNT * downstream
        return cls(
            notify_rate=max(MIN_RATE, round(10 * math.ceil(notifies / 10) / NOTIFY_SPREAD_SECONDS)),
            transfers_out=max(10, notifies),
            tcp_clients=max(150, notifies + 50),
            serial_query_rate=max(MIN_RATE, ZONE_COUNT * upstream * 10),
        )

    def options(self) -> str:
        return (
            f"    notify-rate {self.notify_rate};\n"
            f"    startup-notify-rate {self.notify_rate};\n"
            f"    transfers-out {self.transfers_out};\n"
            f"    tcp-clients {self.tcp_clients};\n"
            f"    serial-query-rate {self.serial_query_rate};\n"
        )


@dataclass(frozen=True, slots=True)
class ProxyNames:
    """What the proxies' snippets take from the agent's ``[proxy]`` section."""

    index_path: str
    fail_mode: str
    stop_url: str
    appeal_key_path: str  # the agent's key for the stop page's appeal references
    stats_file: str  # each helper's counters (%p: its pid), where the agent reads them


@dataclass(frozen=True, slots=True)
class Templates:
    """The shipped Squid and sniproxy configs (``@NAME@`` placeholders)."""

    squid: str
    sniproxy: str


def bind_key_text(name: str, secret: str, algorithm: str = "hmac-sha256") -> str:
    """A BIND (and PowerDNS, see its Lua) key file: ``<keys dir>/<name>.key``."""
    return f'key "{name}" {{\n    algorithm {algorithm};\n    secret "{secret}";\n}};\n'


def knot_key_text(name: str, secret: str, algorithm: str = "hmac-sha256") -> str:
    """A Knot DNS key file: ``<knot keys dir>/<name>.conf``."""
    return f"key:\n  - id: {name}\n    algorithm: {algorithm}\n    secret: {secret}\n"


def _path(template: str, server: str) -> str:
    return template.replace("{name}", server)


def _addr(server: InventoryServer) -> str:
    return f"{server.address} port {server.port}"


def _bind_list(items: Iterable[str]) -> str:
    return " ".join(f"{i};" for i in items)


def _bind_header(kind: str, server: InventoryServer) -> str:
    return f'// edgeagent: {kind} "{server.name}"; {HEADER}.\n'


def _bind_options(server: InventoryServer, work: str, extra: str) -> str:
    return (
        "options {\n"
        f'    directory "{work}";\n'
        f'    pid-file "{work}/named.pid";\n'
        f"    listen-on port {server.port} {{ {server.address}; }};\n"
        "    listen-on-v6 { none; };\n"
        # NOTIFYs and transfers leave from the address the peers know this server by.
        f"    notify-source {server.address};\n"
        f"    transfer-source {server.address};\n"
        "    querylog no;\n"
        f"{extra}"
        "};\n\n"
        "logging {\n"
        "    category queries { null; };\n"
        "    category rpz { null; };\n"
        # An UPDATE is logged with the owner names it adds: the list entries themselves.
        "    category update { null; };\n"
        "    category update-security { null; };\n"
        "};\n\n"
        # No rndc channel of our own: add the site's if it uses one.
        "controls { };\n\n"
    )


class FleetRenderer:
    """Renders one inventory against one agent's names."""

    def __init__(
        self,
        inventory: Inventory,
        rpz: RpzSettings,
        proxy: ProxyNames,
        templates: Templates,
    ) -> None:
        self.inv = inventory
        self.rpz = rpz
        self.proxy = proxy
        self.templates = templates
        # The exception zone first everywhere: an allow beats any block.
        self.zones = (rpz.exception_zone, rpz.zone)
        self.paths = inventory.paths

    def render(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for primary in self.inv.primaries:
            out |= self.primary(primary)
        for secondary in self.inv.secondaries:
            out[f"secondaries/{secondary.name}/named.conf"] = self.secondary(secondary)
        for resolver in self.inv.resolvers:
            out |= self.resolver(resolver)
        for proxy in self.inv.proxies:
            out |= self.proxy_files(proxy)
        out["agent/fleet.toml"] = self.agent_fragment()
        out["agent/edgeagent.tmpfiles.conf"] = self.tmpfiles()
        return out

    # -- keys -----------------------------------------------------------------------
    def _region_key(self, region: str) -> str:
        return self.inv.regions[region].transfer_key

    def _bind_includes(self, server: str, keys: Iterable[str]) -> str:
        base = _path(self.paths.bind_keys_dir, server)
        return "".join(f'include "{base}/{k}.key";\n' for k in keys) + "\n"

    # -- BIND -----------------------------------------------------------------------
    def primary(self, server: InventoryServer) -> dict[str, str]:
        work = _path(self.paths.bind_dir, server.name)
        update = self.inv.fleet.update_key
        region_keys = sorted({r.transfer_key for r in self.inv.regions.values()})
        readers = _bind_list(f'key "{k}"' for k in [update, *region_keys])
        notify = _bind_list(_addr(s) for s in self.inv.secondaries)
        sizing = Sizing.for_fanout(len(self.inv.secondaries), 0)
        text = _bind_header("hidden primary", server)
        text += "// Takes the agent's UPDATEs (update key); the distribution secondaries transfer\n"
        text += "// with their region's key. Hidden: no recursion, listed as no NS, keys only.\n"
        text += self._bind_includes(server.name, [update, *region_keys])
        text += _bind_options(
            server,
            work,
            "    recursion no;\n"
            "    dnssec-validation no;\n"
            "    allow-query { none; };\n"
            "    allow-transfer { none; };\n"
            "    allow-update { none; };\n"
            "    notify-delay 0;\n"
            f"{sizing.options()}"
            "    max-journal-size 64M;\n",
        )
        for zone in self.zones:
            text += (
                f'zone "{zone}" {{\n'
                "    type primary;\n"
                f'    file "{zone_file_name(zone)}";\n'
                f'    allow-update {{ key "{update}"; }};\n'
                f"    allow-query {{ {readers} }};\n"
                f"    allow-transfer {{ {readers} }};\n"
                "    notify explicit;\n"
                f"    also-notify {{ {notify} }};\n"
                "};\n\n"
            )
        # The initial zones (SOA, NS, canary at serial 1): the agent's first UPDATE fills them.
        first = ZoneRelease(DesiredState(0, (), ()), self.rpz, 1)
        base = f"primaries/{server.name}"
        return {
            f"{base}/named.conf": text.rstrip("\n") + "\n",
            f"{base}/{zone_file_name(self.rpz.zone)}": "".join(first.policy_text()),
            f"{base}/{zone_file_name(self.rpz.exception_zone)}": "".join(first.exception_text()),
        }

    def secondary(self, server: InventorySecondary) -> str:
        work = _path(self.paths.bind_dir, server.name)
        key = self._region_key(server.region)
        region = self.inv.region_resolvers(server.region)
        # Unbound transfers without TSIG: admitted by address, and only for the zones.
        unsigned = [r.address for r in region if r.kind == "unbound"]
        readers = _bind_list([f'key "{key}"', *sorted(set(unsigned))])
        notify = _bind_list(_addr(t) for t in self._notify_targets(region))
        primaries = _bind_list(f'{_addr(p)} key "{key}"' for p in self.inv.primaries)
        sizing = Sizing.for_fanout(len(region), len(self.inv.primaries))
        text = _bind_header(f"distribution secondary of region {server.region}", server)
        text += "// Transfers from every hidden primary (either one is enough) and passes each\n"
        text += "// version on to the region's resolvers at once (NOTIFY, then IXFR).\n"
        text += self._bind_includes(server.name, [key])
        text += _bind_options(
            server,
            work,
            "    recursion no;\n"
            "    dnssec-validation no;\n"
            "    allow-query { none; };\n"
            "    allow-transfer { none; };\n"
            "    notify-delay 0;\n"
            f"{sizing.options()}",
        )
        for zone in self.zones:
            text += (
                f'zone "{zone}" {{\n'
                "    type secondary;\n"
                f"    primaries {{ {primaries} }};\n"
                f'    file "{zone_file_name(zone)}";\n'
                f"    allow-query {{ {readers} }};\n"
                f"    allow-transfer {{ {readers} }};\n"
                "    notify explicit;\n"
                f"    also-notify {{ {notify} }};\n"
                "};\n\n"
            )
        return text.rstrip("\n") + "\n"

    def _notify_targets(self, resolvers: Iterable[InventoryResolver]) -> list[InventoryServer]:
        """Where a resolver takes NOTIFYs: its own port, or its Knot DNS secondary's."""
        return [
            InventoryServer(name=r.name, address=r.address, port=r.knot_port)
            if r.kind == "knot"
            else r
            for r in resolvers
        ]

    def resolver(self, server: InventoryResolver) -> dict[str, str]:
        base = f"resolvers/{server.name}"
        if server.kind == "bind":
            return {f"{base}/named.conf": self.bind_resolver(server)}
        if server.kind == "unbound":
            return {f"{base}/unbound.conf": self.unbound(server)}
        if server.kind == "powerdns":
            return {
                f"{base}/recursor.conf": self.recursor_conf(server),
                f"{base}/edgeagent-rpz.lua": self.recursor_lua(server),
            }
        return {
            f"{base}/knot.conf": self.knot_conf(server),
            f"{base}/kresd.conf": self.kresd_conf(server),
        }

    def bind_resolver(self, server: InventoryResolver) -> str:
        work = _path(self.paths.bind_dir, server.name)
        key = self._region_key(server.region)
        primaries = _bind_list(
            f'{_addr(s)} key "{key}"' for s in self.inv.region_secondaries(server.region)
        )
        clients = _bind_list(["localhost", *self.inv.fleet.client_networks])
        validation = "auto" if self.inv.fleet.dnssec_validation else "no"
        text = _bind_header(f"resolver of region {server.region}", server)
        text += self._bind_includes(server.name, [key])
        text += _bind_options(
            server,
            work,
            "    recursion yes;\n"
            f"    allow-recursion {{ {clients} }};\n"
            f"    allow-query {{ {clients} }};\n"
            f"    dnssec-validation {validation};\n"
            # A NOTIFY's SOA query waits for the refresh limiter's tick (500 ms at 20/s).
            f"    serial-query-rate {MIN_RATE};\n"
            # The exception zone first so an allow beats any block; answer blocked names
            # without waiting for upstream; apply each version at once; log no client;
            # do not reveal the policy zone's name.
            "    response-policy {\n"
            f'        zone "{self.zones[0]}" policy passthru log no;\n'
            f'        zone "{self.zones[1]}" log no;\n'
            "    } qname-wait-recurse no min-update-interval 0 add-soa no;\n",
        )
        for zone in self.zones:
            text += (
                f'zone "{zone}" {{\n'
                "    type secondary;\n"
                f"    primaries {{ {primaries} }};\n"
                f'    file "{zone_file_name(zone)}";\n'
                "    allow-query { localhost; };\n"
                "    allow-transfer { none; };\n"
                "    notify no;\n"
                "};\n\n"
            )
        return text.rstrip("\n") + "\n"

    # -- Unbound --------------------------------------------------------------------
    def unbound(self, server: InventoryResolver) -> str:
        work = _path(self.paths.unbound_dir, server.name)
        sources = self.inv.region_secondaries(server.region)
        clients = "".join(
            f"    access-control: {n} allow\n" for n in self.inv.fleet.client_networks
        )
        nodefault = unbound_nodefault(self.rpz.canary)
        text = (
            f'# edgeagent: Unbound resolver "{server.name}" of region {server.region}; {HEADER}.\n'
        )
        text += "# Transfers the policy zones from the region's distribution secondaries, which\n"
        text += "# admit it by address (Unbound has no TSIG for transfers).\n"
        text += (
            "server:\n"
            f"    interface: {server.address}\n"
            f"    port: {server.port}\n"
            f'    directory: "{work}"\n'
            f'    pidfile: "{work}/unbound.pid"\n'
            '    chroot: ""\n'
            f'    username: "{self.inv.fleet.unbound_user}"\n'
            "    verbosity: 1\n"
            "    log-queries: no\n"
            "    log-replies: no\n"
            "    log-local-actions: no\n"
            f"{clients}"
            # Transfers and NOTIFYs from the secondaries may come from loopback addresses.
            "    do-not-query-localhost: no\n"
            # RPZ needs the respip module in front of the iterator.
            '    module-config: "respip validator iterator"\n'
            f"{nodefault}"
            "\nremote-control:\n"
            "    control-enable: no\n"
        )
        for zone in self.zones:
            text += f'\nrpz:\n    name: "{zone}"\n'
            text += "".join(f"    primary: {s.address}@{s.port}\n" for s in sources)
            text += "".join(f"    allow-notify: {s.address}\n" for s in sources)
            text += f'    zonefile: "{zone_file_name(zone)}"\n'
            if zone == self.rpz.exception_zone:
                text += "    rpz-action-override: passthru\n"
            text += "    rpz-log: no\n"
        return text

    # -- PowerDNS Recursor ----------------------------------------------------------
    def recursor_conf(self, server: InventoryResolver) -> str:
        work = _path(self.paths.powerdns_dir, server.name)
        conf = _path(self.paths.powerdns_conf_dir, server.name)
        return (
            f'# edgeagent: PowerDNS Recursor "{server.name}" of region {server.region}; {HEADER}.\n'
            f"local-address={server.address}\n"
            f"local-port={server.port}\n"
            f"allow-from={', '.join(self.inv.fleet.client_networks)}\n"
            f"lua-config-file={conf}/edgeagent-rpz.lua\n"
            # 4.8 keeps serving a packet-cache answer given before its name was blocked
            # (a new RPZ does not wipe that cache): bound it by the RPZ refresh, so a
            # block reaches every client within about two refreshes. The record cache
            # still spares the upstream queries.
            f"packetcache-ttl={self.inv.fleet.powerdns_refresh_seconds}\n"
            f"socket-dir={work}\n"
            "quiet=yes\n"
            "log-common-errors=no\n"
        )

    def recursor_lua(self, server: InventoryResolver) -> str:
        work = _path(self.paths.powerdns_dir, server.name)
        keys = _path(self.paths.powerdns_keys_dir, server.name)
        key = self._region_key(server.region)
        sources = ", ".join(
            f'"{s.address}:{s.port}"' for s in self.inv.region_secondaries(server.region)
        )
        refresh = self.inv.fleet.powerdns_refresh_seconds
        text = (
            f'-- edgeagent: PowerDNS Recursor "{server.name}" RPZ; {HEADER}.\n'
            "-- Transfers from the region's distribution secondaries with the region's key\n"
            "-- (a BIND key file: the secret stays out of this file). PowerDNS takes no NOTIFY\n"
            f"-- for RPZ: it asks for the SOA every {refresh} s. The dump file is the last good\n"
            "-- zone, loaded again at start (fail static).\n"
            "local function tsig_secret(path)\n"
            "  local f = assert(io.open(path, 'r'))\n"
            "  local text = f:read('*a')\n"
            "  f:close()\n"
            "  return assert(text:match('secret%s+\"([^\"]+)\"'), path .. ': no secret')\n"
            "end\n"
            f'local secret = tsig_secret("{keys}/{key}.key")\n'
        )
        for zone in self.zones:
            exception = zone == self.rpz.exception_zone
            text += (
                f'rpzPrimary({{{sources}}}, "{zone}", {{\n'
                f'    policyName = "{zone}",\n'
                + ("    defpol = Policy.NoAction,\n" if exception else "")
                + f'    tsigname = "{key}", tsigalgo = "hmac-sha256", tsigsecret = secret,\n'
                f"    refresh = {refresh},\n"
                # Its packet cache would answer an old canary (and an old block or allow)
                # for the records' whole TTL after a change: policy answers are not cached.
                "    maxTTL = 0,\n"
                f'    dumpFile = "{work}/{zone_file_name(zone)}",\n'
                f'    seedFile = "{work}/{zone_file_name(zone)}",\n'
                "})\n"
            )
        return text

    # -- Knot DNS + Knot Resolver ---------------------------------------------------
    def knot_conf(self, server: InventoryResolver) -> str:
        storage = _path(self.paths.knot_dir, server.name)
        keys = _path(self.paths.knot_keys_dir, server.name)
        key = self._region_key(server.region)
        sources = self.inv.region_secondaries(server.region)
        ids = ", ".join(s.name for s in sources)
        text = (
            f'# edgeagent: Knot DNS secondary beside Knot Resolver "{server.name}"; {HEADER}.\n'
            "# Knot Resolver has no zone transfer: this secondary transfers the policy zones\n"
            "# and writes them at once (zonefile-sync: 0) to the files kresd watches.\n"
            "server:\n"
            f'    rundir: "{storage}"\n'
            f"    listen: {server.address}@{server.knot_port}\n\n"
            f'include: "{keys}/{key}.conf"\n\n'
            "log:\n  - target: stderr\n    any: warning\n\n"
            "remote:\n"
        )
        text += "".join(
            f"  - id: {s.name}\n    address: {s.address}@{s.port}\n    key: {key}\n"
            for s in sources
        )
        text += (
            "\nacl:\n  - id: edgeagent-notify\n"
            f"    address: [{', '.join(s.address for s in sources)}]\n"
            "    action: notify\n\n"
            "template:\n  - id: default\n"
            f'    storage: "{storage}"\n'
            "    zonefile-sync: 0\n\n"
            "zone:\n"
        )
        text += "".join(
            f"  - domain: {zone}\n    master: [{ids}]\n    acl: edgeagent-notify\n"
            f'    file: "{zone_file_name(zone)}"\n'
            for zone in self.zones
        )
        return text

    def kresd_conf(self, server: InventoryResolver) -> str:
        storage = _path(self.paths.knot_dir, server.name)
        exc, pol = (f"{storage}/{zone_file_name(z)}" for z in self.zones)
        return (
            f'-- edgeagent: Knot Resolver "{server.name}" of region {server.region}; {HEADER}.\n'
            "-- RPZ from the files the Knot DNS secondary beside it writes (knot.conf); the\n"
            "-- last argument `true` watches each file. Only QNAME triggers (rpz-ip ignored).\n"
            "-- kresd must be able to read them (its user in the knot group).\n"
            f"net.listen('{server.address}', {server.port}, {{ kind = 'dns' }})\n"
            "modules.load('policy')\n"
            f"policy.add(policy.rpz(policy.PASS, '{exc}', true))\n"
            f"policy.add(policy.rpz(policy.DENY_MSG('blocked by policy'), '{pol}', true))\n"
        )

    # -- proxies --------------------------------------------------------------------
    def proxy_files(self, proxy: InventoryProxy) -> dict[str, str]:
        base = f"proxies/{proxy.name}"
        return {
            f"{base}/squid.conf": fill(
                self.templates.squid,
                squid_values(proxy, self.paths, self.proxy),
                f"{base}/squid.conf",
            ),
            f"{base}/sniproxy.conf": fill(
                self.templates.sniproxy, sniproxy_values(proxy, self.paths), f"{base}/sniproxy.conf"
            ),
        }

    # -- the agent ------------------------------------------------------------------
    def agent_fragment(self) -> str:
        secrets = self.paths.agent_secrets_dir
        key = self.inv.fleet.update_key
        text = f"# edgeagent: the agent's publishers and resolvers; {HEADER}.\n"
        text += "# Paste into the agent's config. Every primary gets each version, same serial.\n"
        text += "# Instead of the [[resolvers]] blocks: [rpz] inventory = <this inventory>.\n"
        for p in self.inv.primaries:
            text += (
                f"\n[publishers.{p.name}]\n"
                'kind = "bind-update"\n'
                f'server = "{p.address}"\n'
                f"port = {p.port}\n"
                f'tsig_key_name = "{key}"\n'
                f'tsig_secret_file = "{secrets}/{key}.secret"\n'
            )
        for r in self.inv.resolvers:
            kind = r.kind if r.kind in ("bind", "unbound") else "other"
            text += (
                "\n[[resolvers]]\n"
                f'name = "{r.name}"\n'
                f'host = "{r.address}"\n'
                f"port = {r.port}\n"
                f'kind = "{kind}"\n'
                f'region = "{r.region}"\n'
            )
        return text

    def tmpfiles(self) -> str:
        publish = self.paths.publish_dir
        text = (
            f"# tmpfiles.d(5) for the agent's host; {HEADER}.\n"
            "# Artefacts other daemons read, outside the agent's 0700 state directory; setgid\n"
            "# directories so each file (0640) inherits its reader's group.\n"
            f"# {RPZ_SUBDIR}/: the zonefile publisher's zones. {PROXY_SUBDIR}/: the proxy index,\n"
            "# its path filter and the appeal key, read by Squid's helpers, and the helpers'\n"
            "# counters, read by the agent.\n"
            "#Type Path                              Mode User      Group     Age\n"
            f"d     {publish:<35} 0751 edgeagent edgeagent -\n"
        )
        # proxy/ is also the helpers' (their counters): sticky, so that they cannot
        # replace or remove the agent's files.
        for subdir, mode, group in ((RPZ_SUBDIR, 2750, "bind"), (PROXY_SUBDIR, 3770, "proxy")):
            text += f"d     {publish + '/' + subdir:<35} {mode} edgeagent {group:<9} -\n"
        return text


def squid_values(proxy: InventoryProxy, paths: InventoryPaths, names: ProxyNames) -> dict[str, str]:
    """The Squid template's placeholders for ``proxy``."""
    work = _path(paths.squid_dir, proxy.name)
    return {
        "LISTEN": proxy.address,
        "PROXY_PORT": str(proxy.proxy_port),
        "ACCEL_PORT": str(proxy.accel_port),
        "INTERCEPT_PORT": str(proxy.intercept_port),
        "HELPER": _path(paths.squid_helper, proxy.name),
        "PREFILTER": _path(paths.squid_prefilter, proxy.name),
        "INDEX": names.index_path,
        "FAIL_MODE": names.fail_mode,
        "APPEAL_KEY": names.appeal_key_path,
        "STATS_FILE": names.stats_file,
        "STOP_URL": names.stop_url,
        "RESOLVER_CONF": (
            f"hosts_file {paths.squid_hosts_file}\ndns_nameservers {proxy.unfiltered_resolver}"
        ),
        "WORK_DIR": work,
        "EFFECTIVE_USER": "proxy",
    }


def sniproxy_values(proxy: InventoryProxy, paths: InventoryPaths) -> dict[str, str]:
    """The sniproxy template's placeholders for ``proxy``."""
    return {
        "LISTEN": proxy.address,
        "PORT": str(proxy.tls_port),
        "RESOLVER": proxy.unfiltered_resolver,
        "WORK_DIR": _path(paths.sniproxy_dir, proxy.name),
        "USER": "daemon",
    }


def render_fleet(
    inventory: Inventory,
    rpz: RpzSettings,
    proxy: ProxyNames,
    templates: Templates,
) -> dict[str, str]:
    """Every snippet of the fleet: ``{relative path: text}``."""
    return FleetRenderer(inventory, rpz, proxy, templates).render()
