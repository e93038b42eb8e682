"""The lab's DNS root, on loopback: every resolver the lab starts recurses to it only.

A recursive resolver asks the root for any name outside its stub and forward zones; the
lab's (:mod:`edgeagent.lab.resolvers`, :mod:`edgeagent.lab.fleet`) must never ask the
internet's. :func:`keep_on_loopback` appends to a resolver's config the root hints (or,
for Knot Resolver, the ``hints.root`` call) that name :func:`loopback_root`: an Unbound
on port 53 (root hints carry no port) of a 127.0.0.0/8 address of its own, one per
process, so that test runs and labs side by side each have theirs.

It answers the priming query (``. NS`` and its own address) and REFUSES every other
name at once (but those under its own name's TLD, ``.invalid``): the resolver answers
SERVFAIL without waiting on a timeout. Not NXDOMAIN: that is the policy's answer, and a
name the policy does not block must not look blocked.
Binding port 53 needs root; without it the hints name an address where nothing listens
(the queries still stay on loopback, and fail on the kernel's port-unreachable).
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile
import threading
from pathlib import Path

from edgeagent.lab.daemons import (
    RunningDaemon,
    dns_port_free,
    spawn,
    stop_process,
    wait_answering,
)
from edgeagent.render.filling import UNBOUND_LOCAL_TLDS
from edgeagent.render.inventory import ResolverKind

# The root server's own name, under a special-use TLD that the root answers itself.
SERVER_TLD = "invalid."
SERVER_NAME = f"root.loopback.{SERVER_TLD}"
HINTS_FILE = "loopback-root.hints"
# The config file each kind's extra lines go to (kresd.conf is Lua).
CONF_FILES: dict[ResolverKind, str] = {
    "bind": "named.conf",
    "unbound": "unbound.conf",
    "powerdns": "recursor.conf",
    "knot": "kresd.conf",
}

# Where the hints point when this process cannot bind port 53: nothing answers there.
UNSERVED = "127.53.0.1"


def root_hints(address: str) -> str:
    """Root hints naming one server, at ``address``."""
    return f".  3600000 NS {SERVER_NAME}\n{SERVER_NAME}  3600000 A {address}\n"


def _free_address() -> str:
    """A 127.0.0.0/8 address whose port 53 is free for UDP and TCP (away from the
    127.0.N blocks :class:`edgeagent.lab.LabAddresses` picks from and :data:`UNSERVED`)."""
    for _ in range(200):
        address = f"127.53.{random.randrange(1, 256)}.{random.randrange(1, 255)}"
        if dns_port_free(address, 53):
            return address
    raise OSError("no loopback address with port 53 free")


def _server_conf(workdir: Path, address: str) -> str:
    # Unbound answers special-use names (test., invalid., ...) from built-in zones: those
    # would be NXDOMAIN, not the REFUSED every other name gets.
    nodefault = "".join(
        f'    local-zone: "{tld}." nodefault\n'
        for tld in sorted(UNBOUND_LOCAL_TLDS)
        if f"{tld}." != SERVER_TLD
    )
    return (
        "server:\n"
        f"    interface: {address}@53\n"
        f'    directory: "{workdir}"\n    chroot: ""\n    username: ""\n'
        f'    pidfile: "{workdir}/unbound.pid"\n    use-syslog: no\n'
        # Every question in its log: what the resolvers would have asked the internet.
        "    log-queries: yes\n"
        '    module-config: "iterator"\n'
        "    access-control: 127.0.0.0/8 allow\n    do-ip6: no\n"
        f"{nodefault}"
        '    local-zone: "." refuse\n'
        # Its own name's TLD is answered (NODATA, NXDOMAIN), not refused: Knot Resolver
        # looks the server's addresses up from the top, and gives up on a refusal.
        f'    local-zone: "{SERVER_TLD}" static\n'
        f'    local-data: ". 3600000 IN NS {SERVER_NAME}"\n'
        f'    local-data: "{SERVER_NAME} 3600000 IN A {address}"\n'
        "remote-control:\n    control-enable: no\n"
    )


def _start() -> RunningDaemon:
    workdir = Path(tempfile.mkdtemp(prefix="edgeagent-root-"))
    address = _free_address()
    conf = workdir / "unbound.conf"
    conf.write_text(_server_conf(workdir, address), encoding="utf-8")
    proc, log = spawn("loopback-root", ["unbound", "-d", "-c", str(conf)], workdir)
    root = RunningDaemon("loopback-root", proc, 53, workdir, log, address=address)

    def stop() -> None:
        stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(stop)
    wait_answering(root)
    return root


class _Root:
    """This process's root server: one, started on first use, stopped at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._daemon: RunningDaemon | None = None

    def get(self) -> RunningDaemon:
        with self._lock:
            if self._daemon is None or not self._daemon.running():
                self._daemon = _start()
            return self._daemon


_ROOT = _Root()


def loopback_root() -> RunningDaemon | None:
    """This process's root server, started on first use; ``None`` when not root."""
    return _ROOT.get() if os.geteuid() == 0 else None


def root_address() -> str:
    """The address the lab's root hints name."""
    root = loopback_root()
    return UNSERVED if root is None else root.address


def _extra(kind: ResolverKind, hints: Path, address: str) -> str:
    if kind == "bind":
        return f'zone "." {{ type hint; file "{hints}"; }};\n'
    if kind == "unbound":
        # Unbound asks no 127.0.0.0/8 server unless told to.
        return f'server:\n    root-hints: "{hints}"\n    do-not-query-localhost: no\n'
    if kind == "powerdns":
        return (
            f"hint-file={hints}\n"
            # The default names 127.0.0.0/8 (and the private ranges): the root is never asked.
            "dont-query=\n"
            # No security-status lookup (a TXT under secpoll.powerdns.com, at start and
            # every 12 hours).
            "security-poll-suffix=\n"
            # Here a name the policy does not block fails at once (the root refuses it);
            # 4.8 keeps that failure in its packet cache for 60 s and does not drop it when
            # the RPZ later blocks the name: a name asked just before its block would go
            # on failing instead of being blocked for a minute.
            "packetcache-servfail-ttl=0\n"
        )
    return (
        "modules.load('hints > iterate')\n"
        f"hints.root({{['{SERVER_NAME}'] = '{address}'}})\n"
        # This root is unsigned: against the built-in anchor every answer is bogus, and
        # each question would stop at the root's DNSKEY.
        "trust_anchors.remove('.')\n"
    )


def keep_on_loopback(work: Path, kind: ResolverKind) -> None:
    """Append to the config of the resolver in ``work`` (:data:`CONF_FILES`) what makes
    the lab's loopback root its root; the hints file goes to ``work`` too."""
    address = root_address()
    hints = work / HINTS_FILE
    hints.write_text(root_hints(address), encoding="utf-8")
    comment = "--" if kind == "knot" else "#"
    with (work / CONF_FILES[kind]).open("a", encoding="utf-8") as f:
        f.write(f"{comment} lab: the root on loopback (edgeagent.lab.root)\n")
        f.write(_extra(kind, hints, address))
