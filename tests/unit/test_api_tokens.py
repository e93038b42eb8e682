"""Tokens through the API: an admin lists and revokes them; both audited; no secrets shown."""

from __future__ import annotations

from typing import Any

import pytest

from edgeagent.api.validation import TokenListOut, TokenOut
from tests.support.api import ApiHarness


@pytest.fixture
def api_settings() -> dict[str, Any]:
    return {"token_cache_seconds": 60.0}  # a revoke must not wait for the cache


async def test_admin_lists_tokens_without_secrets(api: ApiHarness) -> None:
    for who in ("noc", "analyst", "supervisor"):
        status, _ = await api.call("GET", "/v1/tokens", who)
        assert status == 403
    status, body = await api.call("GET", "/v1/tokens", "admin")
    assert status == 200
    listed = TokenListOut.model_validate(body)
    assert [(t.name, t.role, t.revoked) for t in listed.items][:2] == [
        ("noc", "noc", False),
        ("analyst", "analyst", False),
    ]
    text = repr(body)
    for secret in api.tokens.values():
        assert secret not in text
    assert "hash" not in text
    (row,) = [r for r in api.store.audit_since() if r.action == "token.list"]
    assert (row.actor, row.detail["count"]) == ("admin", 6)


async def test_revoked_token_is_refused_at_once_and_audited(api: ApiHarness) -> None:
    assert (await api.call("GET", "/v1/decisions", "analyst2"))[0] == 200  # now cached
    target = next(t for t in api.store.list_tokens() if t.name == "analyst2")
    status, body = await api.call(
        "POST", f"/v1/tokens/{target.id}/revoke", "supervisor", json={"reason": "left"}
    )
    assert status == 403
    status, body = await api.call(
        "POST", f"/v1/tokens/{target.id}/revoke", "admin", json={"reason": "left the team"}
    )
    assert status == 200
    assert TokenOut.model_validate(body).revoked
    status, body = await api.call("GET", "/v1/decisions", "analyst2")
    assert (status, body["error"]["message"]) == (401, "token revoked")
    (row,) = [r for r in api.store.audit_since() if r.action == "token.revoke"]
    assert (row.actor, row.subject) == ("admin", f"token:{target.id}")
    assert (row.detail["name"], row.detail["reason"]) == ("analyst2", "left the team")
    status, body = await api.call("POST", "/v1/tokens/999/revoke", "admin", json={"reason": "x"})
    assert status == 404
    status, body = await api.call("POST", f"/v1/tokens/{target.id}/revoke", "admin", json={})
    assert (status, body["error"]["field"]) == (400, "reason")
