"""mTLS: ``make_ssl_context`` with a throwaway CA, served for real on loopback."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgeagent.api import bound_port, create_app, make_ssl_context, start_site
from edgeagent.store import open_store
from tests.api_support import add_tokens, make_context, make_guard


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    subject: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name, issuer_key = issuer if issuer else (_name(subject), key)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".key").chmod(0o600)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    ca_cert, ca_key = _issue("edgeagent test CA", None, ca=True)
    _write(tmp_path / "ca", ca_cert, ca_key)
    issuer = (ca_cert.subject, ca_key)
    server_cert, server_key = _issue("api.example", issuer, server=True)
    _write(tmp_path / "server", server_cert, server_key)
    client_cert, client_key = _issue("noc.example", issuer)
    _write(tmp_path / "client", client_cert, client_key)
    rogue_ca, rogue_key = _issue("rogue CA", None, ca=True)
    rogue_cert, rogue_client_key = _issue("rogue.example", (rogue_ca.subject, rogue_key))
    _write(tmp_path / "rogue", rogue_cert, rogue_client_key)
    return tmp_path


def _client_ctx(pki: Path, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert is not None:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    return ctx


async def _get(
    port: int, ctx: ssl.SSLContext, path: str = "/healthz", token: str | None = None
) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"https://127.0.0.1:{port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url, ssl=ctx, headers=headers) as r:
        return r.status


async def test_required_client_certificate(pki: Path, tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    tokens = add_tokens(store)
    server_ctx = make_ssl_context(
        pki / "server.crt", pki / "server.key", pki / "ca.crt", require_client_cert=True
    )
    runner = await start_site(
        create_app(make_context(store, make_guard(tmp_path / "p"))),
        "127.0.0.1",
        0,
        ssl_context=server_ctx,
    )
    try:
        port = bound_port(runner)
        assert await _get(port, _client_ctx(pki, "client")) == 200
        # A certificate is not a token: the API still wants the bearer token.
        assert await _get(port, _client_ctx(pki, "client"), "/v1/status") == 401
        assert await _get(port, _client_ctx(pki, "client"), "/v1/status", tokens["noc"]) == 200
        for cert in (None, "rogue"):
            with pytest.raises(aiohttp.ClientError):
                await _get(port, _client_ctx(pki, cert))
    finally:
        await runner.cleanup()
        store.close()


async def test_optional_client_certificate(pki: Path, tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    server_ctx = make_ssl_context(pki / "server.crt", pki / "server.key", pki / "ca.crt")
    assert server_ctx.verify_mode == ssl.CERT_OPTIONAL
    runner = await start_site(
        create_app(make_context(store, make_guard(tmp_path / "p"))),
        "127.0.0.1",
        0,
        ssl_context=server_ctx,
    )
    try:
        port = bound_port(runner)
        assert await _get(port, _client_ctx(pki, None)) == 200
        assert await _get(port, _client_ctx(pki, "client")) == 200
        with pytest.raises(aiohttp.ClientError):
            await _get(port, _client_ctx(pki, "rogue"))
    finally:
        await runner.cleanup()
        store.close()


def test_require_without_ca_is_refused(pki: Path) -> None:
    with pytest.raises(ValueError, match="client_ca_file"):
        make_ssl_context(pki / "server.crt", pki / "server.key", None, require_client_cert=True)


def test_context_refuses_old_tls(pki: Path) -> None:
    ctx = make_ssl_context(pki / "server.crt", pki / "server.key")
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_NONE
