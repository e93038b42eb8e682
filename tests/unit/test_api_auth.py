"""Authentication, roles and the audit of refusals; every route against its declared role."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgeagent.api.auth import authenticate
from edgeagent.api.routes import ROUTES, Route
from edgeagent.roles import Role
from edgeagent.store import SqliteStore
from edgeagent.tokens import hash_token, new_token
from tests.support.api import ApiHarness, add_tokens, make_context, make_guard

# A token name holding exactly each role.
HOLDER = {
    Role.NOC: "noc",
    Role.ANALYST: "analyst",
    Role.SUPERVISOR: "supervisor",
    Role.ADMIN: "admin",
}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _denials(api: ApiHarness) -> list[tuple[str, str, dict[str, object]]]:
    return [
        (r.actor, r.subject, dict(r.detail))
        for r in api.store.audit_since()
        if r.action == "auth.denied"
    ]


def test_new_token_is_random_and_hash_matches() -> None:
    a, digest_a = new_token()
    b, _ = new_token()
    assert a != b
    assert a.startswith("ea_")
    assert len(a) > 40
    assert digest_a == hash_token(a)
    assert len(digest_a) == 32


def test_role_order_and_parse() -> None:
    assert Role.NOC < Role.ANALYST < Role.SUPERVISOR < Role.ADMIN
    assert Role.parse(" Supervisor ") is Role.SUPERVISOR
    assert Role.token_roles() == ("noc", "analyst", "supervisor", "admin")
    for bad in ("public", "root", ""):
        with pytest.raises(ValueError, match="unknown role"):
            Role.parse(bad)


def test_only_health_probes_are_public() -> None:
    public = {r.path for r in ROUTES if r.role is Role.PUBLIC}
    assert public == {"/healthz", "/readyz"}
    assert all(isinstance(r.role, Role) for r in ROUTES)


def test_unknown_role_in_store_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    secret, digest = new_token()
    store.add_token("odd", "wizard", digest)
    with pytest.raises(Exception, match="no valid role") as info:
        authenticate(store, secret)
    assert getattr(info.value, "status", None) == 403
    store.close()


async def test_missing_token_is_401_and_audited(api: ApiHarness) -> None:
    assert api.client is not None
    resp = await api.client.get("/v1/decisions")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["error"]["code"] == "unauthorized"
    assert _denials(api) == [
        (
            "anonymous",
            "route:GET /v1/decisions",
            {"status": 401, "reason": "missing or malformed bearer token", "count": 1},
        )
    ]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer ea_not-a-real-token",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer " + "x" * 600,
    ],
)
async def test_bad_token_is_401_audited_without_the_secret(api: ApiHarness, header: str) -> None:
    status, _ = await api.call("GET", "/v1/status", None, headers={"Authorization": header})
    assert status == 401
    denials = _denials(api)
    assert [d[0] for d in denials] == ["anonymous"]
    assert "ea_not-a-real-token" not in repr(api.store.audit_since())


async def test_revoked_token_is_401(api: ApiHarness) -> None:
    token = next(t for t in api.store.list_tokens() if t.name == "analyst")
    api.store.revoke_token(token.id)
    status, out = await api.call("GET", "/v1/decisions", "analyst")
    assert status == 401
    assert out["error"]["message"] == "token revoked"
    assert _denials(api)[0][0] == "analyst"


async def test_wrong_role_is_403_audited_with_token_name(api: ApiHarness) -> None:
    status, out = await api.call("POST", "/v1/decisions/1/revoke", "analyst", json={"reason": "x"})
    assert status == 403
    assert out["error"]["code"] == "forbidden"
    assert _denials(api) == [
        (
            "analyst",
            r"route:POST /v1/decisions/{id:\d+}/revoke",
            {"status": 403, "reason": "role analyst below required supervisor", "count": 1},
        )
    ]


async def test_denied_lookup_does_not_audit_the_raw_target(api: ApiHarness) -> None:
    status, _ = await api.call("GET", "/v1/lookup", "noc", params={"target": "secret.example"})
    assert status == 403
    assert "secret.example" not in repr(api.store.audit_since())


def _route_id(r: Route) -> str:
    return f"{r.method} {r.path}"


@pytest.mark.parametrize("route", [r for r in ROUTES if r.role is not Role.PUBLIC], ids=_route_id)
async def test_role_boundary(api: ApiHarness, route: Route) -> None:
    """One level below the declared role gets 403 (or 401 with no token for noc routes);
    the declared role itself, and every role above it, gets past the role check."""
    path = _concrete(route.path)
    body = {} if route.method == "POST" else None
    below = Role(route.role - 1)
    if below is Role.PUBLIC:
        status, _ = await api.call(route.method, path, None, json=body)
        assert status == 401
    else:
        status, out = await api.call(route.method, path, HOLDER[below], json=body)
        assert status == 403
        assert out["error"]["code"] == "forbidden"
    for role in Role:
        if role >= route.role:
            status, out = await api.call(route.method, path, HOLDER[role], json=body)
            assert status not in (401, 403), (role, out)


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_need_no_token(api: ApiHarness, path: str) -> None:
    status, out = await api.call("GET", path, None)
    assert status == 200
    ready = {"ready": True, "reasons": [], "leader": True, "role": "leader"}
    assert out in ({"status": "ok"}, ready)


async def test_revocation_applies_within_token_cache_ttl(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    tokens = add_tokens(store)
    now = [100.0]
    ctx = make_context(
        store, make_guard(tmp_path / "p"), token_cache_seconds=2.0, clock=lambda: now[0]
    )
    async with ApiHarness(store, ctx, tokens) as api:
        assert (await api.call("GET", "/v1/status", "noc"))[0] == 200
        token = next(t for t in store.list_tokens() if t.name == "noc")
        store.revoke_token(token.id)
        # Still trusted from the cache for up to token_cache_seconds ...
        assert (await api.call("GET", "/v1/status", "noc"))[0] == 200
        now[0] += 2.5
        # ... then the store is asked again.
        status, out = await api.call("GET", "/v1/status", "noc")
    store.close()
    assert status == 401
    assert out["error"]["message"] == "token revoked"
