"""A day's decision work through the API: notices with many targets, search by target or
case, one pending count, dates with or without a zone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edgeagent.api.takedown_routes import TakedownReportQuery
from edgeagent.api.validation import (
    BULK_MAX_TARGETS,
    REQUEST_ZONE,
    DecisionListOut,
    NoticeOut,
    PlanOut,
    parse_query,
)
from tests.support.api import ApiHarness, decision_body

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def api_settings() -> dict[str, Any]:
    # The body limit of the config's default would refuse 10,001 targets before the
    # model does; a larger one shows the model's own limit.
    return {"time_zone": BERLIN, "max_body_bytes": 2**22}


def notice(targets: list[dict[str, str]], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "targets": targets,
        "action": "block",
        "reason": "police notice",
        "reference": "POL-2026-17",
        "source": "law-enforcement",
    }
    body.update(overrides)
    return body


def url(i: int) -> dict[str, str]:
    return {"target": f"http://shop{i}.hosted.test/listed/{i}.html", "scope": "url"}


async def test_a_notice_answers_per_target(api: ApiHarness) -> None:
    await api.call("POST", "/v1/decisions", json=decision_body("old.example"))  # decided before
    targets = [
        url(1),
        {"target": "HTTP://Shop2.Hosted.TEST/a/../listed.html", "scope": "url"},
        {"target": "protected.example", "scope": "domain"},  # needs a second person
        {"target": "192.0.2.7", "scope": "ip"},  # addresses too
        {"target": "co.uk", "scope": "domain"},  # a public suffix: never
        {"target": "not a name", "scope": "host"},  # invalid
        url(1),  # twice in one notice
        {"target": "old.example", "scope": "host"},  # already decided
    ]
    status, body = await api.call("POST", "/v1/decisions/bulk", json=notice(targets))
    assert status == 200, body
    out = NoticeOut.model_validate(body)
    assert (out.reference, out.targets, out.accepted, out.pending, out.refused) == (
        "POL-2026-17",
        8,
        2,
        2,
        4,
    )
    by_index = {r.index: r for r in out.results}
    assert [by_index[i].outcome for i in range(8)] == [
        "accepted",
        "accepted",
        "pending",
        "pending",
        "refused",
        "refused",
        "refused",
        "refused",
    ]
    assert by_index[1].target == "http://shop2.hosted.test/listed.html"
    assert by_index[4].reason.startswith("guardrail: ")
    assert by_index[5].reason.startswith("invalid: ")
    assert by_index[6].reason.startswith("duplicate: ")
    assert by_index[7].reason.startswith("duplicate: ")
    assert all(by_index[i].decision is None for i in range(4, 8))
    assert "not a name" not in repr(body)  # refusals never echo what was sent

    stored = api.store.list_decisions(reference="POL-2026-17")
    assert [d.indicator.value for d in stored][:2] == [
        "http://shop1.hosted.test/listed/1.html",
        "http://shop2.hosted.test/listed.html",
    ]
    assert {d.notice_source.value for d in stored} == {"law-enforcement"}
    audit = api.store.audit_since()
    assert sum(r.action == "decision.create" for r in audit) == 1 + 4
    (row,) = [r for r in audit if r.action == "decision.notice"]
    assert (row.actor, row.subject) == ("analyst", "notice:POL-2026-17")
    assert (row.detail["accepted"], row.detail["pending"], row.detail["refused"]) == (2, 2, 4)
    assert [r["index"] for r in row.detail["refusals"]] == [4, 5, 6, 7]
    assert "shop1.hosted.test" not in repr(audit)  # entries by short hash only


async def test_a_notice_of_1000_urls_is_one_call(api: ApiHarness) -> None:
    before = api.store.policy_version()
    status, body = await api.call(
        "POST", "/v1/decisions/bulk", json=notice([url(i) for i in range(1000)])
    )
    assert status == 200
    assert (body["accepted"], body["refused"]) == (1000, 0)
    assert api.store.count_decisions() == 1000
    assert api.store.policy_version() > before
    # The case: every decision of the notice by its reference.
    status, page = await api.call(
        "GET", "/v1/decisions", params={"reference": "POL-2026-17", "limit": "1000"}
    )
    assert (status, len(page["items"]), page["next_offset"]) == (200, 1000, None)


async def test_notice_limits_and_roles(api: ApiHarness) -> None:
    too_many = notice([url(0)] * (BULK_MAX_TARGETS + 1))
    status, body = await api.call("POST", "/v1/decisions/bulk", json=too_many)
    assert (status, body["error"]["field"]) == (400, "targets")
    status, body = await api.call("POST", "/v1/decisions/bulk", json=notice([]))
    assert (status, body["error"]["field"]) == (400, "targets")
    status, _ = await api.call("POST", "/v1/decisions/bulk", "noc", json=notice([url(1)]))
    assert status == 403


async def test_search_by_target_finds_the_url_its_host_and_the_case(api: ApiHarness) -> None:
    await api.call("POST", "/v1/decisions/bulk", json=notice([url(1), url(2), url(10), url(11)]))
    await api.call("POST", "/v1/decisions", json=decision_body("shop1.hosted.test"))
    await api.call("POST", "/v1/decisions", json=decision_body("shop1.hosted.test.example"))

    async def found(target: str) -> list[str]:
        status, body = await api.call("GET", "/v1/decisions", params={"target": target})
        assert status == 200, body
        return sorted(d.target for d in DecisionListOut.model_validate(body).items)

    assert await found("shop1.hosted.test") == [
        "http://shop1.hosted.test/listed/1.html",
        "shop1.hosted.test",
    ]
    # A URL as pasted: canonicalised; decisions on its host come along.
    assert await found("HTTP://SHOP2.hosted.test/listed/2.html") == [
        "http://shop2.hosted.test/listed/2.html"
    ]
    assert await found("http://shop1.hosted.test/other.html") == [
        "http://shop1.hosted.test/listed/1.html",
        "shop1.hosted.test",
    ]
    assert await found("nothing.example") == []
    status, body = await api.call("GET", "/v1/decisions", params={"target": "a b"})
    assert (status, body["error"]["field"]) == (400, "target")


async def test_one_pending_count_everywhere(api: ApiHarness) -> None:
    # More pending decisions than the plan lists: the count is still the whole number.
    public = notice([url(i) for i in range(1005)], source="public", reference="RPT-1")
    status, body = await api.call("POST", "/v1/decisions/bulk", json=public)
    assert (status, body["pending"]) == (200, 1005)
    status, body = await api.call("GET", "/v1/plan", "noc")
    plan = PlanOut.model_validate(body)
    assert plan.pending_decisions == 1005
    assert len(plan.pending) == 1000
    assert "pending_decisions" not in plan.plan  # one number, not two
    assert plan.pending[0].target is None  # the NOC: short hashes
    assert plan.pending[0].target_ref
    _, status_body = await api.call("GET", "/v1/status", "noc")
    assert status_body["decisions"] == {"pending-approval": 1005}
    await api.call("POST", "/v1/decisions/1/approve", "supervisor", json={"reason": "ok"})
    _, body = await api.call("GET", "/v1/plan", "analyst")
    assert body["pending_decisions"] == 1004
    assert body["pending"][0]["target"].startswith("http://shop1.hosted.test/")


async def test_dates_without_a_zone_are_the_configured_one(api: ApiHarness) -> None:
    status, body = await api.call(
        "POST",
        "/v1/decisions",
        json=decision_body("d1.example", notice_received_at="2026-01-01"),
    )
    assert status == 201, body
    assert datetime.fromisoformat(body["notice_received_at"]) == datetime(2026, 1, 1, tzinfo=BERLIN)
    status, body = await api.call(
        "POST",
        "/v1/decisions",
        json=decision_body("d2.example", notice_received_at="2026-07-01T09:30"),
    )
    assert datetime.fromisoformat(body["notice_received_at"]) == datetime(
        2026, 7, 1, 7, 30, tzinfo=UTC
    )
    status, body = await api.call(
        "POST",
        "/v1/decisions",
        json=decision_body("d3.example", notice_received_at="2026-07-01T09:30Z"),
    )
    assert datetime.fromisoformat(body["notice_received_at"]) == datetime(
        2026, 7, 1, 9, 30, tzinfo=UTC
    )
    status, body = await api.call("GET", "/v1/audit", "supervisor", params={"since": "2026-01-01"})
    assert status == 200
    assert len(body["items"]) == 3


def test_the_report_query_takes_a_plain_date() -> None:
    token = REQUEST_ZONE.set(BERLIN)
    try:
        q = parse_query([("from", "2026-01-01"), ("to", "2026-02-01T12:00")], TakedownReportQuery)
    finally:
        REQUEST_ZONE.reset(token)
    assert q.start == datetime(2026, 1, 1, tzinfo=BERLIN)
    assert q.end == datetime(2026, 2, 1, 11, 0, tzinfo=UTC)
