"""The lab's synthetic web: a ``lab.test`` zone on an authoritative ``named`` and an origin.

- :func:`lab_zone` is the zone text: every site name resolves to the origin address, the
  hosted example into the ISP's own (documentation) prefix, ``stop.lab.test`` to the
  stop page. No sample feed lists any of these names, so they start unblocked.
- :class:`Origin` answers ``200`` with a short page for any path on the site names (and
  ``421`` for any other Host), over HTTP and, with a throwaway certificate, over HTTPS
  (what diverted HTTPS reaches through the SNI pass-through). No access log.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ZONE = "lab.test"
SITES = ("news.lab.test", "shop.lab.test", "forum.lab.test")
HOSTED = "hosted.lab.test"
STOP_HOST = "stop.lab.test"


def lab_zone(origin: str, hosted: str, stop_page: str, ns: str = "127.0.0.1") -> str:
    """The ``lab.test`` zone text (relative owner names, TTL 60)."""
    records = [f"{site.removesuffix('.' + ZONE)} A {origin}" for site in SITES]
    return (
        "$TTL 60\n"
        f"@ SOA ns.{ZONE}. hostmaster.{ZONE}. 1 60 60 600 60\n"
        f"@ NS ns.{ZONE}.\n"
        f"ns A {ns}\n"
        + "".join(r + "\n" for r in records)
        + f"{HOSTED.removesuffix('.' + ZONE)} A {hosted}\n"
        + f"{STOP_HOST.removesuffix('.' + ZONE)} A {stop_page}\n"
    )


def throwaway_certificate(directory: Path, names: Sequence[str]) -> tuple[Path, Path]:
    """A self-signed certificate (one day, EC P-256) for ``names``; returns (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "origin.crt", directory / "origin.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Origin:
    """The synthetic sites' web server on ``host`` (HTTP ``http_port``, HTTPS ``https_port``).

    ``https_port=None`` serves HTTP only. Port 0 picks a free port (see :attr:`http_port`).
    """

    def __init__(
        self,
        host: str,
        http_port: int,
        https_port: int | None = None,
        *,
        names: Sequence[str] = (*SITES, HOSTED),
        cert_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.http_port = http_port
        self.https_port = https_port
        self.names = frozenset(names)
        self.cert_dir = cert_dir
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}" + ("" if self.http_port == 80 else f":{self.http_port}")

    async def _page(self, request: web.Request) -> web.Response:
        name = (request.host or "").rsplit(":", 1)[0].lower().rstrip(".")
        if name not in self.names:
            return web.Response(status=421, text="misdirected: not a lab site\n")
        body = (
            f"<!doctype html><title>{name}</title>"
            f"<h1>{name}</h1><p>Origin content for {request.path}</p>\n"
        )
        return web.Response(text=body, content_type="text/html")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.http_port)
        await site.start()
        if self.http_port == 0:
            self.http_port = _port_of(self._runner, 0)
        if self.https_port is not None:
            directory = self.cert_dir or Path(".")
            cert, key = throwaway_certificate(directory, sorted(self.names))
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            tls = web.TCPSite(self._runner, self.host, self.https_port, ssl_context=ctx)
            await tls.start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _port_of(runner: web.AppRunner, index: int) -> int:
    addrs = [a for a in runner.addresses if isinstance(a, tuple)]
    return int(addrs[index][1])
