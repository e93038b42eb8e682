"""Four-eyes for allows: lifting a block of an external list (a hotline's, the police's)
waits for a second person; approvals carry the approver's token identity."""

from __future__ import annotations

from typing import Any

import pytest

from edgeagent.model import Action, Entry, Indicator, NoticeSource, Scope
from edgeagent.policy import PolicyIndex, merge
from edgeagent.store.base import GenerationStatus
from tests.support.api import ApiHarness, decision_body

FEEDS = {"police": NoticeSource.LAW_ENFORCEMENT, "own": NoticeSource.INTERNAL}


def block(scope: str, value: str, source: str) -> Entry:
    return Entry(Indicator(Scope(scope), value), Action.BLOCK, source)


@pytest.fixture
def api_settings() -> dict[str, Any]:
    return {"feed_sources": FEEDS}


@pytest.fixture
def api(api: ApiHarness) -> ApiHarness:
    """The conftest ``api`` with a police list and an own list live."""
    api.store.add_generation(
        "police",
        [
            block("domain", "worst.example", "police"),
            block("url", "http://pages.example/listed.html", "police"),
        ],
        status=GenerationStatus.LIVE,
    )
    api.store.add_generation(
        "own", [block("host", "internal.example", "own")], status=GenerationStatus.LIVE
    )
    return api


def allow(target: str, scope: str = "host") -> dict[str, str]:
    return decision_body(target, scope=scope, action="allow", source="internal", reason="appeal")


async def test_an_allow_over_a_police_list_waits_for_a_supervisor(api: ApiHarness) -> None:
    # A subdomain of a listed domain: the allow would lift the police's block there.
    status, body = await api.call("POST", "/v1/decisions", json=allow("www.worst.example"))
    assert (status, body["status"]) == (201, "pending-approval")
    created = next(r for r in api.store.audit_since() if r.action == "decision.create")
    assert created.detail["overrides"] == ["police"]
    status, out = await api.call("POST", f"/v1/decisions/{body['id']}/approve", "analyst")
    assert status == 403  # an analyst cannot approve at all
    status, out = await api.call(
        "POST", f"/v1/decisions/{body['id']}/approve", "supervisor", json={"reason": "upheld"}
    )
    assert (status, out["status"], out["approved_by"]) == (200, "active", "supervisor")
    approval = next(r for r in api.store.audit_since() if r.action == "decision.approve")
    assert approval.actor == "supervisor"  # the token's holder, not an OS account


async def test_the_creator_cannot_approve_their_own_allow(api: ApiHarness) -> None:
    status, body = await api.call(
        "POST", "/v1/decisions", "supervisor", json=allow("worst.example", "domain")
    )
    assert body["status"] == "pending-approval"
    status, out = await api.call("POST", f"/v1/decisions/{body['id']}/approve", "supervisor")
    assert (status, out["error"]["code"]) == (403, "four-eyes")
    status, out = await api.call("POST", f"/v1/decisions/{body['id']}/approve", "supervisor2")
    assert (status, out["approved_by"]) == (200, "supervisor2")


async def test_url_allow_over_a_listed_url_waits_too(api: ApiHarness) -> None:
    _, body = await api.call(
        "POST", "/v1/decisions", json=allow("http://pages.example/listed.html", "url")
    )
    assert body["status"] == "pending-approval"
    # Another page of that host is not on the list: nothing to lift, active at once.
    _, body = await api.call(
        "POST", "/v1/decisions", json=allow("http://pages.example/other.html", "url")
    )
    assert body["status"] == "active"


async def test_allows_over_own_lists_apply_at_once(api: ApiHarness) -> None:
    _, body = await api.call("POST", "/v1/decisions", json=allow("internal.example"))
    assert body["status"] == "active"
    _, body = await api.call("POST", "/v1/decisions", json=allow("unlisted.example"))
    assert body["status"] == "active"


async def test_an_allow_over_a_hotline_decision_waits(api: ApiHarness) -> None:
    _, body = await api.call("POST", "/v1/decisions", json=decision_body("hot.example"))
    assert body["status"] == "active"  # a hotline notice, recorded as a decision
    _, body = await api.call("POST", "/v1/decisions", json=allow("hot.example"))
    assert body["status"] == "pending-approval"
    created = [r for r in api.store.audit_since() if r.action == "decision.create"][-1]
    assert created.detail["overrides"] == ["decision:1"]


def test_lifted_by_follows_the_merge_rules() -> None:
    entries = [
        block("domain", "a.example", "f"),
        block("host", "www.b.example", "f"),
        block("url", "http://www.c.example/x.html", "f"),
        block("url", "http://deep.a.example/y.html", "f"),
        block("ip", "192.0.2.1", "f"),
    ]

    class Open:
        allowed = True
        reason = ""

    class Gate:
        def check_indicator(self, indicator: Indicator, action: Action) -> Open:
            return Open()

    index = PolicyIndex(merge(1, entries, Gate()))

    def lifted(scope: str, value: str) -> set[str]:
        return {e.indicator.value for e in index.lifted_by(Indicator(Scope(scope), value))}

    assert lifted("host", "x.a.example") == {"a.example"}  # the covering domain block
    assert lifted("domain", "a.example") == {"a.example", "http://deep.a.example/y.html"}
    assert lifted("host", "www.c.example") == {"http://www.c.example/x.html"}  # no diversion
    assert lifted("url", "http://www.c.example/x.html") == {"http://www.c.example/x.html"}
    assert lifted("url", "http://www.c.example/other.html") == set()
    assert lifted("ip", "192.0.2.1") == {"192.0.2.1"}
    assert lifted("domain", "b.example") == {"www.b.example"}
