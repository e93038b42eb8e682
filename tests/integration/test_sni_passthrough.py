"""Diverted HTTPS passes through sniproxy, by SNI, to the real origin, untouched.

Real components on loopback addresses (any 127.0.0.0/8 address works on Linux):

- an authoritative ``named`` for ``test.`` (127.0.0.1, high port);
- ``127.0.7.53:53`` an Unbound WITHOUT the diversion policy: sniproxy's resolver (udns
  takes an address only, so port 53);
- the zone-file BIND resolver template loading the RPZ compiled from a ``DesiredState`` with
  one ``url`` entry: ``mixed.site.test`` is diverted to ``127.0.7.80``;
- ``127.0.7.80`` Debian's ``sniproxy`` run from the ``sniproxy.conf`` template
  (placeholders filled, nothing else changed);
- ``127.0.7.10`` a TLS origin (aiohttp) with a throwaway certificate for
  ``mixed.site.test``.

The pass-through listens on the same port number as the origin (443 in production, a free
high port here): the shipped table connects to the SNI name on the listener's port.

Bypass figures (proxy mode ``sni-passthrough`` in ``var/reliability/bypass.json``): what a
client can send there other than a TLS handshake naming a site (plain HTTP in every
spelling of the listed page, no SNI, a name the resolver does not know) is closed before
anything reaches an origin; the sibling page passes. The listed page itself over TLS
passes too and is counted apart: inside TLS the path is invisible (the documented limit).
"""

from __future__ import annotations

import datetime
import shutil
import socket
import ssl
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgeagent.lab.daemons import RunningDaemon, free_tcp_port
from edgeagent.lab.resolvers import start_authoritative, start_named, start_unfiltered_resolver
from edgeagent.model import Action, DesiredState, Entry, Indicator
from edgeagent.render.filling import fill, template_text
from edgeagent.render.inventory import InventoryPaths, InventoryProxy
from edgeagent.render.snippets import sniproxy_values
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ZoneRelease, zone_file_name
from edgeagent.rpz.publishers.zonefile import ZonefilePublisher
from tests.support.binaries import require_binary
from tests.support.figures import Tally, recorded_at_module_end
from tests.support.resolvers import stop_all
from tests.support.spellings import page_spellings
from tests.support.webapps import BackgroundApps

pytestmark = pytest.mark.integration

PROXY_ADDR = "127.0.7.80"
ORIGIN_ADDR = "127.0.7.10"
DNS_ADDR = "127.0.7.53"
SITE = "mixed.site.test"
LISTED_PATH = "/gallery/listed.html"

ZONE = textwrap.dedent(
    f"""\
    $TTL 60
    @ SOA ns.test. hostmaster.test. 1 60 60 600 60
    @ NS ns.test.
    ns A 127.0.0.1
    mixed.site A {ORIGIN_ADDR}
    """
)
STATE = DesiredState(
    1,
    (Entry(Indicator.parse("url", f"http://{SITE}{LISTED_PATH}"), Action.BLOCK, "iwf"),),
    (),
)
RPZ = RpzSettings(proxy_ipv4=PROXY_ADDR)
TALLY = Tally("bypass", "sni-passthrough")


def throwaway_cert(workdir: Path) -> tuple[Path, Path, bytes]:
    """Self-signed EC certificate for ``SITE``: (cert file, key file, cert DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SITE)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SITE)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = workdir / "origin.crt", workdir / "origin.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file, cert.public_bytes(serialization.Encoding.DER)


class TlsOrigin(BackgroundApps):
    """aiohttp over TLS on ``ORIGIN_ADDR:port`` in a background loop; records paths."""

    def __init__(self, port: int, cert: Path, key: Path) -> None:
        super().__init__()
        self.hits: list[str] = []
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)

        async def page(request: web.Request) -> web.Response:
            self.hits.append(request.path)
            return web.Response(text=f"origin {request.host.split(':')[0]} {request.path}")

        app = web.Application()
        app.router.add_get("/{tail:.*}", page)
        self.serve(app, ORIGIN_ADDR, port, ssl_context=ctx)


@dataclass
class Env:
    port: int
    policy: RunningDaemon
    origin: TlsOrigin
    cert_file: Path
    cert_der: bytes
    conf: Path
    workdir: Path


def start_sniproxy(workdir: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    """Fill the sniproxy template and run ``sniproxy -f`` until it accepts connections."""
    conf = workdir / "sniproxy.conf"
    conf.write_text(
        fill(
            template_text("sniproxy.conf"),
            sniproxy_values(
                InventoryProxy(
                    name="sniproxy",
                    address=PROXY_ADDR,
                    region="test",
                    tls_port=port,
                    unfiltered_resolver=DNS_ADDR,
                ),
                InventoryPaths(sniproxy_dir=str(workdir)),
            ),
            "sniproxy.conf",
        )
    )
    with (workdir / "sniproxy.out").open("wb") as out:
        proc = subprocess.Popen(
            ["sniproxy", "-f", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sniproxy exited {proc.returncode}")
        try:
            with socket.create_connection((PROXY_ADDR, port), timeout=0.3):
                return proc, conf
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("sniproxy not listening")


bypass_figures = recorded_at_module_end(TALLY)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    for program in ("named", "unbound", "sniproxy"):
        require_binary(program)
    base = Path(tempfile.mkdtemp(prefix="edgeagent-sni-"))
    zone_dir = base / "zones"
    zone_dir.mkdir()
    ZonefilePublisher(
        "zonefile",
        policy_path=zone_dir / zone_file_name(RPZ.zone),
        exception_path=zone_dir / zone_file_name(RPZ.exception_zone),
    ).publish(ZoneRelease(STATE, RPZ, 1))
    cert_file, key_file, der = throwaway_cert(base)
    port = free_tcp_port(PROXY_ADDR, ORIGIN_ADDR)
    origin = TlsOrigin(port, cert_file, key_file)
    auth = plain = policy = None
    sni: subprocess.Popen[bytes] | None = None
    try:
        auth = start_authoritative(base / "auth", {"test": ZONE})
        plain = start_unfiltered_resolver(base / "plain", DNS_ADDR, {"test": auth.port})
        policy = start_named(base / "named", zone_dir, forwards={"test": auth.port}, rpz=RPZ)
        sni_dir = base / "sniproxy"
        sni_dir.mkdir()
        sni, conf = start_sniproxy(sni_dir, port)
        yield Env(port, policy, origin, cert_file, der, conf, sni_dir)
    finally:
        if sni is not None and sni.poll() is None:
            sni.terminate()
            try:
                sni.wait(10)
            except subprocess.TimeoutExpired:
                sni.kill()
                sni.wait(5)
        stop_all(policy, plain, auth)
        origin.close()
        shutil.rmtree(base, ignore_errors=True)


def resolve(d: RunningDaemon, name: str) -> list[str]:
    q = dns.message.make_query(name, "A")
    r = dns.query.udp(q, d.host, port=d.port, timeout=5)
    assert r.rcode() == dns.rcode.NOERROR  # diverted, never NXDOMAIN
    return [rr.to_text() for rrset in r.answer for rr in rrset]


def https_get(
    env: Env, addr: str, path: str, sni: str | None = SITE
) -> tuple[bytes | None, str, str]:
    """TLS to ``addr`` with ``sni`` verifying the origin's certificate, then ``GET path``.

    Returns (peer certificate DER, negotiated SNI name as sent, response text).
    """
    ctx = ssl.create_default_context(cafile=str(env.cert_file))
    if sni is None:
        ctx.check_hostname = False
    with (
        socket.create_connection((addr, env.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return der, sni or "", b"".join(chunks).decode("utf-8", "replace")


# What a closed pass-through looks like to a TLS client: the connection ends during the
# handshake (sniproxy's handshake_failure alert, EOF or reset). A timeout is NOT among
# them: it would hide a hang.
CLOSED = (ssl.SSLError, ConnectionResetError, BrokenPipeError)


def test_diverted_https_passes_through_to_the_origin_untouched(env: Env) -> None:
    addrs = resolve(env.policy, SITE)
    assert addrs == [PROXY_ADDR]  # the client is diverted ...
    TALLY.add("siblings")
    der, _, text = https_get(env, addrs[0], "/gallery/sibling.html")
    # ... and the TLS session is the origin's own: same certificate, verified for the
    # name, no interception (the pass-through holds no key).
    assert der == env.cert_der
    assert text.startswith("HTTP/1.1 200")
    assert text.endswith(f"origin {SITE} /gallery/sibling.html")
    assert env.origin.hits[-1] == "/gallery/sibling.html"
    TALLY.add("siblings_passed")


def test_listed_page_over_https_is_not_enforceable_at_url_level(env: Env) -> None:
    """The documented limit: inside TLS the path is invisible, so the listed page passes.

    Refusing the whole host would block every innocent page on it; the compiler counts
    these hosts and the README says so.
    """
    der, _, text = https_get(env, PROXY_ADDR, LISTED_PATH)
    assert der == env.cert_der
    assert text.endswith(f"origin {SITE} {LISTED_PATH}")
    TALLY.add("not_enforceable")


def test_client_hello_without_sni_is_closed(env: Env) -> None:
    TALLY.add("tried")
    before = len(env.origin.hits)
    with pytest.raises(CLOSED):
        https_get(env, PROXY_ADDR, LISTED_PATH, sni=None)
    assert len(env.origin.hits) == before
    TALLY.add("refused")


def test_name_the_unfiltered_resolver_does_not_know_is_closed(env: Env) -> None:
    TALLY.add("tried")
    before = len(env.origin.hits)
    with pytest.raises(CLOSED):
        https_get(env, PROXY_ADDR, LISTED_PATH, sni="absent.site.test")
    assert len(env.origin.hits) == before
    TALLY.add("refused")


@pytest.mark.parametrize("target", [*page_spellings(LISTED_PATH), f"http://{SITE}{LISTED_PATH}"])
def test_plain_http_to_the_pass_through_is_closed(env: Env, target: str) -> None:
    """No TLS handshake, no SNI: nothing to pass through, no answer from anyone."""
    TALLY.add("tried")
    before = len(env.origin.hits)
    with socket.create_connection((PROXY_ADDR, env.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {SITE}\r\n\r\n".encode())
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    assert not data.startswith(b"HTTP/"), data[:80]
    assert len(env.origin.hits) == before
    TALLY.add("refused")


def test_no_client_addresses_or_names_in_sniproxy_logs(env: Env) -> None:
    for sni in (None, "absent.site.test", SITE):
        try:
            https_get(env, PROXY_ADDR, "/", sni=sni)
        except CLOSED:
            assert sni != SITE
    time.sleep(0.2)  # sniproxy writes its log asynchronously
    logs = "".join(p.read_text(errors="replace") for p in env.workdir.glob("*.log"))
    assert "127.0." not in logs
    assert "site.test" not in logs
    text = env.conf.read_text()
    assert "access_log" not in text.replace("No access_log", "")
    assert f"nameserver {DNS_ADDR}" in text
    assert not list(env.workdir.glob("*access*"))
