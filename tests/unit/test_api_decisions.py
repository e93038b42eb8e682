"""Decision flows through the control API: create, list, get, approve (four-eyes), revoke."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeagent.api.validation import DecisionListOut, DecisionOut
from edgeagent.store import SqliteStore
from tests.support.api import ApiHarness, add_tokens, decision_body, make_context, make_guard


async def test_create_returns_canonical_active_decision(api: ApiHarness) -> None:
    status, body = await api.call("POST", "/v1/decisions", json=decision_body("H1.Example."))
    assert status == 201
    out = DecisionOut.model_validate(body)
    assert out.status == "active"
    assert out.target == "h1.example"
    assert out.actor == "analyst"
    stored = api.store.get_decision(out.id)
    assert stored.indicator.value == "h1.example"
    assert stored.notice_source.value == "hotline"


async def test_create_sets_location_and_audits(api: ApiHarness) -> None:
    assert api.client is not None
    resp = await api.client.post(
        "/v1/decisions",
        json=decision_body("h2.example"),
        headers={"Authorization": f"Bearer {api.tokens['analyst']}"},
    )
    body = await resp.json()
    assert resp.headers["Location"] == f"/v1/decisions/{body['id']}"
    creates = [r for r in api.store.audit_since() if r.action == "decision.create"]
    assert [r.actor for r in creates] == ["analyst"]
    # The audit names the entry by short hash only.
    assert "h2.example" not in repr(creates[0])


async def test_notice_received_at_is_kept(api: ApiHarness) -> None:
    when = "2026-01-02T03:04:05+00:00"
    status, body = await api.call(
        "POST", "/v1/decisions", json=decision_body("h3.example", notice_received_at=when)
    )
    assert status == 201
    assert body["notice_received_at"] == when


async def test_duplicate_active_decision_is_409(api: ApiHarness) -> None:
    assert (await api.call("POST", "/v1/decisions", json=decision_body("dup.example")))[0] == 201
    status, body = await api.call("POST", "/v1/decisions", json=decision_body("DUP.example"))
    assert status == 409
    assert body["error"]["code"] == "conflict"
    assert "dup.example" not in body["error"]["message"]


async def test_public_report_starts_pending_and_needs_a_second_person(api: ApiHarness) -> None:
    status, body = await api.call(
        "POST", "/v1/decisions", "supervisor", json=decision_body("p.example", source="public")
    )
    assert status == 201
    assert body["status"] == "pending-approval"
    did = body["id"]

    status, body = await api.call("POST", f"/v1/decisions/{did}/approve", "supervisor", json={})
    assert status == 403
    assert body["error"]["code"] == "four-eyes"

    status, body = await api.call(
        "POST", f"/v1/decisions/{did}/approve", "supervisor2", json={"reason": "checked"}
    )
    assert status == 200
    assert body["status"] == "active"
    assert body["approved_by"] == "supervisor2"
    assert api.store.get_decision(did).status.value == "active"


async def test_public_report_active_at_once_when_configured(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    tokens = add_tokens(store)
    ctx = make_context(store, make_guard(tmp_path / "p"), public_needs_approval=False)
    async with ApiHarness(store, ctx, tokens) as api:
        status, body = await api.call(
            "POST", "/v1/decisions", json=decision_body("q.example", source="public")
        )
    store.close()
    assert status == 201
    assert body["status"] == "active"


async def test_protected_name_and_address_blocks_need_approval(api: ApiHarness) -> None:
    status, body = await api.call(
        "POST", "/v1/decisions", json=decision_body("www.protected.example")
    )
    assert (status, body["status"]) == (201, "pending-approval")
    status, body = await api.call(
        "POST", "/v1/decisions", json=decision_body("192.0.2.7", scope="ip")
    )
    assert (status, body["status"]) == (201, "pending-approval")


@pytest.mark.parametrize(
    ("target", "scope"),
    [
        ("canary.edgeagent.example", "host"),  # the RPZ canary: the zone would not load
        ("edgeagent.example", "domain"),  # covers the canary
        ("block.rpz.invalid", "domain"),  # the policy zone's own name
        ("x.allow.rpz.invalid", "host"),  # a name under the exception zone
        ("http://canary.edgeagent.example/page", "url"),
    ],
)
async def test_blocks_of_the_agents_own_names_are_refused(
    api: ApiHarness, target: str, scope: str
) -> None:
    status, body = await api.call(
        "POST", "/v1/decisions", "supervisor", json=decision_body(target, scope=scope)
    )
    assert status == 400, body
    assert body["error"]["field"] == "target"
    assert "agent's own names" in body["error"]["message"]
    assert target not in body["error"]["message"]
    assert api.store.list_decisions() == []
    refused = [r for r in api.store.audit_since() if r.action == "decision.refused"]
    assert [r.detail["reason"] for r in refused] in (["reserved name"], ["covers a reserved name"])


@pytest.mark.parametrize(
    ("target", "scope", "words"),
    [
        ("test", "domain", "public suffix"),  # would unblock a whole TLD
        ("example", "domain", "public suffix"),
        ("co.uk", "domain", "public suffix"),
        ("0.0.0.0/1", "cidr", "prefix shorter than /24"),
        ("::/1", "cidr", "prefix shorter than /24 (IPv4) or /48 (IPv6)"),
        ("edgeagent.example", "domain", "agent's own names"),  # would pass the canary
        ("canary.edgeagent.example", "host", "agent's own names"),
    ],
)
async def test_wide_allows_are_refused_whoever_asks(
    api: ApiHarness, target: str, scope: str, words: str
) -> None:
    for who in ("analyst", "supervisor"):
        status, body = await api.call(
            "POST", "/v1/decisions", who, json=decision_body(target, scope=scope, action="allow")
        )
        assert status == 400, body
        assert body["error"]["field"] == "target"
        assert body["error"]["message"].startswith("an allow ")
        assert words in body["error"]["message"]
    assert api.store.list_decisions() == []


async def test_domain_allow_over_a_protected_name_needs_a_second_person(api: ApiHarness) -> None:
    status, body = await api.call(
        "POST",
        "/v1/decisions",
        json=decision_body("protected.example", scope="domain", action="allow"),
    )
    assert (status, body["status"]) == (201, "pending-approval")
    status, body = await api.call(
        "POST", "/v1/decisions", json=decision_body("www.protected.example", action="allow")
    )
    assert (status, body["status"]) == (201, "active")  # one host: no second person


async def test_approve_empty_body_is_allowed(api: ApiHarness) -> None:
    _, body = await api.call(
        "POST", "/v1/decisions", json=decision_body("e.example", source="public")
    )
    assert api.client is not None
    resp = await api.client.post(
        f"/v1/decisions/{body['id']}/approve",
        headers={"Authorization": f"Bearer {api.tokens['supervisor']}"},
    )
    assert resp.status == 200
    assert (await resp.json())["status"] == "active"


async def test_approve_active_decision_is_409(api: ApiHarness) -> None:
    _, body = await api.call("POST", "/v1/decisions", json=decision_body("a.example"))
    status, err = await api.call("POST", f"/v1/decisions/{body['id']}/approve", "supervisor")
    assert status == 409
    assert err["error"]["code"] == "invalid-transition"


async def test_revoke_then_revoke_again(api: ApiHarness) -> None:
    _, body = await api.call("POST", "/v1/decisions", json=decision_body("r.example"))
    did = body["id"]
    status, out = await api.call(
        "POST", f"/v1/decisions/{did}/revoke", "supervisor", json={"reason": "legal content"}
    )
    assert status == 200
    assert out["status"] == "revoked"
    assert [h["status"] for h in out["history"]][-1] == "revoked"
    status, err = await api.call(
        "POST", f"/v1/decisions/{did}/revoke", "supervisor", json={"reason": "again"}
    )
    assert status == 409
    assert err["error"]["code"] == "invalid-transition"
    # Once revoked, the same target may be decided again.
    assert (await api.call("POST", "/v1/decisions", json=decision_body("r.example")))[0] == 201


async def test_revoke_needs_a_reason(api: ApiHarness) -> None:
    _, body = await api.call("POST", "/v1/decisions", json=decision_body("nr.example"))
    status, err = await api.call(
        "POST", f"/v1/decisions/{body['id']}/revoke", "supervisor", json={}
    )
    assert status == 400
    assert err["error"]["field"] == "reason"


async def test_get_and_not_found(api: ApiHarness) -> None:
    _, body = await api.call("POST", "/v1/decisions", json=decision_body("g.example"))
    status, got = await api.call("GET", f"/v1/decisions/{body['id']}")
    assert status == 200
    assert got == body
    status, err = await api.call("GET", "/v1/decisions/999999")
    assert status == 404
    assert err["error"]["code"] == "not-found"
    status, _ = await api.call(
        "POST", "/v1/decisions/999999/revoke", "supervisor", json={"reason": "x"}
    )
    assert status == 404
    status, _ = await api.call("GET", "/v1/decisions/abc")
    assert status == 404


async def test_list_filters_and_pagination(api: ApiHarness) -> None:
    for i in range(5):
        await api.call(
            "POST", "/v1/decisions", json=decision_body(f"l{i}.example", reference=f"REF-{i % 2}")
        )
    await api.call(
        "POST",
        "/v1/decisions",
        json=decision_body("l9.example/page", scope="url", source="law-enforcement"),
    )
    status, body = await api.call("GET", "/v1/decisions", params={"reference": "REF-0"})
    assert status == 200
    page = DecisionListOut.model_validate(body)
    assert {d.target for d in page.items} == {"l0.example", "l2.example", "l4.example"}

    _, body = await api.call("GET", "/v1/decisions", params={"scope": "url"})
    assert [d["target"] for d in body["items"]] == ["http://l9.example/page"]
    _, body = await api.call("GET", "/v1/decisions", params={"source": "law-enforcement"})
    assert len(body["items"]) == 1
    _, body = await api.call("GET", "/v1/decisions", params={"status": "revoked"})
    assert body["items"] == []

    seen: list[int] = []
    offset: int | None = 0
    while offset is not None:
        _, body = await api.call(
            "GET", "/v1/decisions", params={"limit": "4", "offset": str(offset)}
        )
        seen.extend(d["id"] for d in body["items"])
        offset = body["next_offset"]
    assert len(seen) == len(set(seen)) == 6


async def test_on_change_called_after_writes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    tokens = add_tokens(store)
    calls: list[int] = []
    ctx = make_context(store, make_guard(tmp_path / "p"), on_change=lambda: calls.append(1))
    async with ApiHarness(store, ctx, tokens) as api:
        _, body = await api.call("POST", "/v1/decisions", json=decision_body("c.example"))
        await api.call(
            "POST", f"/v1/decisions/{body['id']}/revoke", "supervisor", json={"reason": "x"}
        )
        await api.call("POST", "/v1/decisions", json={})  # refused: no change
    store.close()
    assert len(calls) == 2
