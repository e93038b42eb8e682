"""The triage queue through the control API: accept, reject, uphold, revoke, roles, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgeagent.intake.base import IntakeChannel, IntakeContent
from edgeagent.intake.entryref import EntryRefs
from edgeagent.intake.triage import Triage
from edgeagent.model import Indicator, Scope
from edgeagent.store import SqliteStore
from tests.support.api import ApiHarness, add_tokens, decision_body, make_context, make_guard


@pytest.fixture
def told() -> list[str]:
    """References of the items whose outcome was sent to the appellant."""
    return []


@pytest.fixture
async def api(tmp_path: Path, told: list[str]) -> AsyncIterator[ApiHarness]:
    store = SqliteStore(tmp_path / "store.db")
    tokens = add_tokens(store)
    ctx = make_context(store, make_guard(tmp_path / "protected"))
    triage = Triage(
        ctx.decisions,
        refs=EntryRefs(b"k" * 32),
        notify=lambda item: told.append(item.reference),
    )
    async with ApiHarness(store, ctx, tokens).with_settings(triage=triage) as harness:
        yield harness
    store.close()


def _triage(api: ApiHarness) -> Triage:
    assert api.context.triage is not None
    return api.context.triage


async def test_accepted_public_report_becomes_pending_public_decisions(api: ApiHarness) -> None:
    item = _triage(api).submit(
        IntakeChannel.PUBLIC_REPORT,
        IntakeContent(urls=("http://bad.example/a", "not a url at all"), category="c"),
    )
    status, listed = await api.call("GET", "/v1/intake", "analyst", params={"state": "pending"})
    assert status == 200
    assert [i["reference"] for i in listed["items"]] == [item.reference]
    assert (await api.call("GET", "/v1/intake", "noc"))[0] == 403
    status, out = await api.call(
        "POST", f"/v1/intake/{item.id}/accept", "analyst", json={"reason": "confirmed"}
    )
    assert status == 200, out
    assert out["item"]["state"] == "accepted"
    assert [d["status"] for d in out["decisions"]] == ["pending-approval"]
    assert len(out["refused"]) == 1
    assert "not a url" not in str(out["refused"])
    decision = api.store.get_decision(out["decisions"][0]["id"])
    assert decision.notice_source.value == "public"
    assert decision.reference == item.reference
    # Once decided, never again.
    again = await api.call("POST", f"/v1/intake/{item.id}/reject", json={"reason": "x"})
    assert again[0] == 409
    audit = api.store.audit_since()
    assert [r.action for r in audit if r.subject == f"intake:{item.id}"] == [
        "intake.receive",
        "intake.accepted",
    ]
    assert not any("bad.example" in str(r.detail) for r in audit)


async def test_rejected_report_is_kept_with_its_reason(api: ApiHarness) -> None:
    item = _triage(api).submit(
        IntakeChannel.PUBLIC_REPORT, IntakeContent(urls=("http://ok.example/",))
    )
    status, out = await api.call(
        "POST", f"/v1/intake/{item.id}/reject", json={"reason": "legal adult content"}
    )
    assert status == 200
    assert out["decisions"] == []
    status, shown = await api.call("GET", f"/v1/intake/{item.id}")
    assert (shown["state"], shown["reason"], shown["decided_by"]) == (
        "rejected",
        "legal adult content",
        "analyst",
    )
    assert shown["content"]["urls"] == ["http://ok.example/"]


async def test_appeal_revoke_needs_a_supervisor_and_revokes_the_blocking_decision(
    api: ApiHarness, told: list[str]
) -> None:
    status, made = await api.call(
        "POST",
        "/v1/decisions",
        json=decision_body("http://site.example/page", scope="url"),
    )
    assert status == 201
    assert made["status"] == "active"
    ref = EntryRefs(b"k" * 32).of(Indicator.parse(Scope.URL, "http://site.example/page"))
    item = _triage(api).submit(
        IntakeChannel.APPEAL,
        IntakeContent(statement="my own page", contact="owner@site.example", subject=ref),
    )
    # The person deciding sees which block is appealed (the match revoke makes).
    assert [d.id for d in _triage(api).appealed(item)] == [made["id"]]
    other = _triage(api).submit(
        IntakeChannel.APPEAL, IntakeContent(statement="x", subject="a" * len(ref))
    )
    assert _triage(api).appealed(other) == []
    body = {"reason": "not abuse material"}
    assert (await api.call("POST", f"/v1/intake/{item.id}/revoke", "analyst", json=body))[0] == 403
    assert (await api.call("POST", f"/v1/intake/{item.id}/accept", "analyst", json=body))[0] == 409
    status, out = await api.call("POST", f"/v1/intake/{item.id}/revoke", "supervisor", json=body)
    assert status == 200, out
    assert out["item"]["state"] == "revoked"
    assert out["item"]["decision_ids"] == [made["id"]]
    assert api.store.get_decision(made["id"]).status.value == "revoked"
    assert told == [item.reference]


async def test_challenge_upheld_keeps_the_block(api: ApiHarness, told: list[str]) -> None:
    status, made = await api.call("POST", "/v1/decisions", json=decision_body(reference="CASE-9"))
    item = _triage(api).submit(
        IntakeChannel.CHALLENGE, IntakeContent(statement="lawful", subject="CASE-9")
    )
    status, out = await api.call(
        "POST", f"/v1/intake/{item.id}/uphold", "supervisor", json={"reason": "confirmed"}
    )
    assert status == 200
    assert out["item"]["state"] == "upheld"
    assert api.store.get_decision(made["id"]).status.value == "active"
    assert told == []  # no contact given


async def test_challenge_revoke_ends_the_case_blocks(api: ApiHarness) -> None:
    _, made = await api.call("POST", "/v1/decisions", json=decision_body(reference="CASE-7"))
    item = _triage(api).submit(
        IntakeChannel.CHALLENGE, IntakeContent(statement="lawful", subject="CASE-7")
    )
    status, out = await api.call(
        "POST", f"/v1/intake/{item.id}/revoke", "supervisor", json={"reason": "mistake"}
    )
    assert status == 200
    assert out["item"]["decision_ids"] == [made["id"]]
    assert api.store.get_decision(made["id"]).status.value == "revoked"
