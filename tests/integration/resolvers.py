"""Start real ``named`` and ``unbound`` on 127.0.0.1 high ports from the shipped snippets.

Reusable by any test and by ``edgeagent lab``::

    auth = start_authoritative(tmp / "auth", {"test": TEST_ZONE})
    bind = start_named(tmp / "bind", zone_dir, forwards={"test": auth.port})
    unb = start_unbound(tmp / "unbound", zone_dir, stubs={"test": auth.port})
    ...
    for d in (unb, bind, auth): d.stop()

The resolver configs are exactly ``resolvers/bind/named.conf.rpz-resolver`` and
``resolvers/unbound/unbound-rpz.conf`` with their ``@PLACEHOLDERS@`` filled; the site-local
include carries only test plumbing (forward/stub zone to the synthetic authoritative
server). ``zone_dir`` must already hold ``rpz.zone`` and ``rpz-exceptions.zone``.
Every daemon runs in the foreground (``named -g``, ``unbound -d``) as a child process.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

REPO = Path(__file__).resolve().parents[2]
BIND_SNIPPET = REPO / "resolvers" / "bind" / "named.conf.rpz-resolver"
UNBOUND_SNIPPET = REPO / "resolvers" / "unbound" / "unbound-rpz.conf"
HOST = "127.0.0.1"


@dataclass
class RunningDaemon:
    """A started resolver or authoritative server; ``stop()`` ends it (idempotent)."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log: Path
    # Reload command template for the zonefile publisher ({zone} is substituted).
    reload_argv: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return HOST

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((HOST, 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((HOST, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def render(template: Path, values: dict[str, str]) -> str:
    """Fill ``@KEY@`` placeholders; every placeholder must have a value."""
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = set(re.findall(r"@([A-Z_]+)@", text)) - {"NAME"}
    if left:
        raise ValueError(f"unfilled placeholders in {template.name}: {sorted(left)}")
    return text


def _spawn(name: str, argv: list[str], workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = workdir / f"{name}.log"
    fh = log.open("wb")
    try:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=workdir)
    finally:
        fh.close()
    return proc, log


def wait_answering(d: RunningDaemon, qname: str = "localhost.", timeout: float = 20.0) -> None:
    """Block until ``d`` answers a UDP query (any rcode); raise with its log if it died."""
    deadline = time.monotonic() + timeout
    q = dns.message.make_query(qname, dns.rdatatype.SOA)
    while True:
        if d.proc.poll() is not None:
            raise RuntimeError(f"{d.name} exited {d.proc.returncode}:\n{d.log_text()[-3000:]}")
        try:
            dns.query.udp(q, HOST, port=d.port, timeout=0.3)
            return
        except (dns.exception.Timeout, OSError):
            pass
        if time.monotonic() > deadline:
            d.stop()
            raise RuntimeError(f"{d.name} not answering:\n{d.log_text()[-3000:]}")
        time.sleep(0.05)


def _rndc_key(path: Path) -> None:
    secret = base64.b64encode(os.urandom(32)).decode()
    path.write_text(f'key "rndc-key" {{\n    algorithm hmac-sha256;\n    secret "{secret}";\n}};\n')
    path.chmod(0o600)


def start_authoritative(workdir: Path, zones: dict[str, str]) -> RunningDaemon:
    """A non-recursive ``named`` serving ``zones`` (name -> zone text) on a free port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    zone_conf = []
    for zname, text in zones.items():
        f = workdir / f"{zname}.zone"
        f.write_text(text)
        zone_conf.append(f'zone "{zname}" {{ type primary; file "{f}"; }};')
    conf = workdir / "named.conf"
    conf.write_text(
        "options {\n"
        f'  directory "{workdir}";\n  pid-file "{workdir}/named.pid";\n'
        f"  listen-on port {port} {{ {HOST}; }};\n  listen-on-v6 {{ none; }};\n"
        "  recursion no;\n  dnssec-validation no;\n  allow-query { any; };\n};\n"
        + "\n".join(zone_conf)
        + "\n"
    )
    proc, log = _spawn("auth-named", ["named", "-g", "-n", "1", "-c", str(conf)], workdir)
    d = RunningDaemon("auth-named", proc, port, workdir, log)
    wait_answering(d)
    return d


def start_named(
    workdir: Path, zone_dir: Path, forwards: dict[str, int] | None = None
) -> RunningDaemon:
    """The shipped BIND resolver snippet, forwarding each zone in ``forwards`` to a port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, control = free_port(), free_port()
    key = workdir / "rndc.key"
    _rndc_key(key)
    local = workdir / "local.conf"
    local.write_text(
        "".join(
            f'zone "{z}" {{ type forward; forward only; forwarders {{ {HOST} port {p}; }}; }};\n'
            for z, p in (forwards or {}).items()
        )
    )
    conf = workdir / "named.conf"
    conf.write_text(
        render(
            BIND_SNIPPET,
            {
                "RNDC_KEY": str(key),
                "CONTROL_PORT": str(control),
                "WORK_DIR": str(workdir),
                "PORT": str(port),
                "LISTEN": HOST,
                "DNSSEC_VALIDATION": "no",
                "ZONE_DIR": str(zone_dir),
                "LOCAL_CONF": str(local),
            },
        )
    )
    subprocess.run(["named-checkconf", str(conf)], check=True, capture_output=True)
    proc, log = _spawn("named", ["named", "-g", "-n", "1", "-c", str(conf)], workdir)
    reload_argv = ("rndc", "-s", HOST, "-p", str(control), "-k", str(key), "reload", "{zone}")
    d = RunningDaemon("named", proc, port, workdir, log, reload_argv, {"conf": str(conf)})
    wait_answering(d)
    return d


def start_unbound(
    workdir: Path, zone_dir: Path, stubs: dict[str, int] | None = None
) -> RunningDaemon:
    """The shipped Unbound snippet, with a stub zone per entry of ``stubs`` (zone -> port)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    sock = workdir / "unbound.ctl"
    local = workdir / "local.conf"
    # Test plumbing only: the stub servers live on 127.0.0.1.
    local.write_text(
        "server:\n    do-not-query-localhost: no\n"
        + "".join(
            f'stub-zone:\n    name: "{z}"\n    stub-addr: {HOST}@{p}\n'
            for z, p in (stubs or {}).items()
        )
    )
    conf = workdir / "unbound.conf"
    conf.write_text(
        render(
            UNBOUND_SNIPPET,
            {
                "LISTEN": HOST,
                "PORT": str(port),
                "WORK_DIR": str(workdir),
                "USERNAME": "",
                "CONTROL_SOCKET": str(sock),
                "ZONE_DIR": str(zone_dir),
                "LOCAL_CONF": str(local),
            },
        )
    )
    subprocess.run(["unbound-checkconf", str(conf)], check=True, capture_output=True)
    proc, log = _spawn("unbound", ["unbound", "-d", "-c", str(conf)], workdir)
    reload_argv = ("unbound-control", "-c", str(conf), "auth_zone_reload", "{zone}")
    d = RunningDaemon("unbound", proc, port, workdir, log, reload_argv, {"conf": str(conf)})
    wait_answering(d)
    return d


def stop_all(*daemons: RunningDaemon | None) -> None:
    """Stop every daemon given, ignoring ``None`` and errors from ones already gone."""
    for d in daemons:
        if d is not None:
            with contextlib.suppress(Exception):
                d.stop()
