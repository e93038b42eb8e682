"""mTLS: ``make_ssl_context`` with a throwaway CA, served for real on loopback."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest

from edgeagent.api import bound_port, create_app, make_ssl_context, start_site
from edgeagent.limits import DEFAULT_LIMITS
from edgeagent.store import SqliteStore
from tests.support.api import add_tokens, make_context, make_guard
from tests.support.pki import issue, write_pair


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    ca_cert, ca_key = issue("edgeagent test CA", None, ca=True)
    write_pair(tmp_path / "ca", ca_cert, ca_key)
    issuer = (ca_cert.subject, ca_key)
    server_cert, server_key = issue("api.example", issuer, server=True)
    write_pair(tmp_path / "server", server_cert, server_key)
    client_cert, client_key = issue("noc.example", issuer)
    write_pair(tmp_path / "client", client_cert, client_key)
    rogue_ca, rogue_key = issue("rogue CA", None, ca=True)
    rogue_cert, rogue_client_key = issue("rogue.example", (rogue_ca.subject, rogue_key))
    write_pair(tmp_path / "rogue", rogue_cert, rogue_client_key)
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
    store = SqliteStore(tmp_path / "s.db")
    tokens = add_tokens(store)
    server_ctx = make_ssl_context(
        pki / "server.crt", pki / "server.key", pki / "ca.crt", require_client_cert=True
    )
    runner = await start_site(
        create_app(make_context(store, make_guard(tmp_path / "p"))),
        "127.0.0.1",
        0,
        DEFAULT_LIMITS,
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
    store = SqliteStore(tmp_path / "s.db")
    server_ctx = make_ssl_context(pki / "server.crt", pki / "server.key", pki / "ca.crt")
    assert server_ctx.verify_mode == ssl.CERT_OPTIONAL
    runner = await start_site(
        create_app(make_context(store, make_guard(tmp_path / "p"))),
        "127.0.0.1",
        0,
        DEFAULT_LIMITS,
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
