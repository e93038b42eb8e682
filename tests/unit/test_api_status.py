"""Status, plan, lookup (rate limit, audit), audit endpoints, probes and the metrics app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edgeagent.api import create_metrics_app
from edgeagent.api.validation import (
    AuditListOut,
    AuditVerifyOut,
    LookupOut,
    PlanOut,
    ReadyOut,
    StatusOut,
)
from edgeagent.metrics import Metrics
from edgeagent.model import Action, Entry, Indicator, Scope
from edgeagent.store import SqliteStore
from edgeagent.store.base import DatabaseStatus, GenerationStatus, Store
from tests.support.api import (
    ApiHarness,
    FakeClock,
    add_tokens,
    decision_body,
    make_context,
    make_guard,
)


def _feed(store: Store) -> None:
    entries = [
        Entry(Indicator(Scope.DOMAIN, "listed.example"), Action.BLOCK, "iwf"),
        Entry(Indicator(Scope.HOST, "h.listed.test"), Action.BLOCK, "iwf"),
        Entry(Indicator.parse(Scope.URL, "http://pages.example/a/b"), Action.BLOCK, "iwf"),
    ]
    store.add_generation("iwf", entries, status=GenerationStatus.LIVE, serial="1")


@pytest.fixture
def api_settings() -> dict[str, Any]:
    return {
        "feeds": lambda: {"iwf": {"state": "ok", "age_seconds": 3}},
        "publishers": lambda: {"bind": {"state": "verified"}},
        "plan": lambda entries: {
            "held_generations": [{"feed": "interpol", "reason": "shrank 60%"}]
        },
        "database": lambda: DatabaseStatus("sqlite").to_dict(),
        "lookup_rate_per_minute": 3,
        "clock": FakeClock(),
        "metrics": Metrics(),
    }


@pytest.fixture
def api(api: ApiHarness) -> ApiHarness:
    """The conftest ``api`` with one live feed generation in its store."""
    _feed(api.store)
    return api


async def test_status_counts_without_entries(api: ApiHarness) -> None:
    await api.call("POST", "/v1/decisions", json=decision_body("d1.example"))
    await api.call("POST", "/v1/decisions", json=decision_body("d2.example", source="public"))
    status, body = await api.call("GET", "/v1/status", "noc")
    assert status == 200
    out = StatusOut.model_validate(body)
    assert out.policy_loaded
    assert out.policy_version == api.store.policy_version()
    assert out.entries["total"] == 4
    assert out.entries["by_scope"] == {"domain": 1, "host": 2, "url": 1}
    assert out.entries["by_source"] == {"decisions": 1, "iwf": 3}
    assert out.decisions == {"pending-approval": 1}
    assert out.feeds == {"iwf": {"state": "ok", "age_seconds": 3}}
    assert out.publishers == {"bind": {"state": "verified"}}
    assert out.database["backend"] == "sqlite"
    assert out.database["reachable"] is True
    assert out.database["synchronous"] is False
    text = repr(body)
    for entry in ("listed.example", "d1.example", "d2.example", "pages.example"):
        assert entry not in text


async def test_plan_hides_targets_from_noc(api: ApiHarness) -> None:
    await api.call("POST", "/v1/decisions", json=decision_body("pend.example", source="public"))
    status, body = await api.call("GET", "/v1/plan", "noc")
    assert status == 200
    out = PlanOut.model_validate(body)
    assert out.pending_decisions == 1
    assert out.pending[0].target is None
    assert "pend.example" not in repr(body)
    assert out.plan == {"held_generations": [{"feed": "interpol", "reason": "shrank 60%"}]}
    _, body = await api.call("GET", "/v1/plan", "analyst")
    assert body["pending"][0]["target"] == "pend.example"


async def test_held_entries_are_asked_for_supervisors_only(api: ApiHarness) -> None:
    asked: list[bool] = []

    def plan(entries: bool) -> dict[str, bool]:
        asked.append(entries)
        return {"entries_shown": entries}

    async with api.with_settings(plan=plan) as harness:
        for who in ("noc", "analyst", "supervisor", "admin"):
            status, body = await harness.call("GET", "/v1/plan", who)
            assert status == 200
    assert asked == [False, False, True, True]
    assert body["plan"] == {"entries_shown": True}


async def test_lookup_explains_and_audits(api: ApiHarness) -> None:
    status, body = await api.call(
        "GET", "/v1/lookup", params={"target": "http://www.listed.example/x"}
    )
    assert status == 200
    out = LookupOut.model_validate(body)
    assert out.dns == "block"
    assert out.matches[0].target == "listed.example"
    assert out.matches[0].source == "iwf"

    _, body = await api.call("GET", "/v1/lookup", params={"target": "http://pages.example/a/b"})
    assert (body["dns"], body["proxy"]) == ("divert", "stop-page")

    lookups = [r for r in api.store.audit_since() if r.action == "lookup"]
    assert [r.actor for r in lookups] == ["analyst", "analyst"]
    assert lookups[0].detail["dns"] == "block"
    assert "listed.example" not in repr(lookups)
    assert lookups[0].subject.startswith("target:")


async def test_lookup_bad_target_is_400(api: ApiHarness) -> None:
    status, body = await api.call("GET", "/v1/lookup", params={"target": "bad name.example"})
    assert status == 400
    assert body["error"]["field"] == "target"
    status, body = await api.call("GET", "/v1/lookup")
    assert (status, body["error"]["field"]) == (400, "target")


async def test_lookup_rate_limited_per_token(api: ApiHarness) -> None:
    params = {"target": "free.example"}
    for _ in range(3):
        assert (await api.call("GET", "/v1/lookup", params=params))[0] == 200
    assert api.client is not None
    resp = await api.client.get(
        "/v1/lookup",
        params=params,
        headers={"Authorization": f"Bearer {api.tokens['analyst']}"},
    )
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"]["code"] == "rate-limited"
    # Another token has its own budget.
    assert (await api.call("GET", "/v1/lookup", "analyst2", params=params))[0] == 200
    # Time refills the bucket (3 a minute: one every 20 s).
    clock = api.context.clock
    assert isinstance(clock, FakeClock)
    clock.now += 20.5
    assert (await api.call("GET", "/v1/lookup", params=params))[0] == 200
    limited = [r for r in api.store.audit_since() if r.action == "lookup.limited"]
    assert [r.actor for r in limited] == ["analyst"]


async def test_lookup_without_policy_is_503(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    tokens = add_tokens(store)
    ctx = make_context(store, make_guard(tmp_path / "p"), policy=lambda: None)
    async with ApiHarness(store, ctx, tokens) as api:
        status, body = await api.call("GET", "/v1/lookup", params={"target": "a.example"})
        s_status, s_body = await api.call("GET", "/v1/status", "noc")
    store.close()
    assert (status, body["error"]["code"]) == (503, "policy-not-loaded")
    assert s_status == 200
    assert s_body["policy_loaded"] is False


async def test_audit_since_and_verify(api: ApiHarness) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    await api.call("POST", "/v1/decisions", json=decision_body("au.example"))
    status, body = await api.call(
        "GET",
        "/v1/audit",
        "supervisor",
        params={"since": before.isoformat().replace("+00:00", "Z")},
    )
    assert status == 200
    out = AuditListOut.model_validate(body)
    assert [r.action for r in out.items] == ["decision.create"]
    assert out.items[0].actor == "analyst"
    status, body = await api.call("GET", "/v1/audit/verify", "supervisor")
    assert status == 200
    verified = AuditVerifyOut.model_validate(body)
    assert verified.ok
    assert verified.rows >= 1


async def test_readyz_reports_reasons(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    tokens = add_tokens(store)
    reasons = ["feed iwf older than its limit"]
    ctx = make_context(store, make_guard(tmp_path / "p"), readiness=lambda: list(reasons))
    async with ApiHarness(store, ctx, tokens) as api:
        status, body = await api.call("GET", "/readyz", None)
        assert status == 503
        assert ReadyOut.model_validate(body).reasons == reasons
        reasons.clear()
        status, body = await api.call("GET", "/readyz", None)
        ready = {"ready": True, "reasons": [], "leader": True, "role": "leader"}
        assert (status, body) == (200, ready)
    store.close()


async def test_standby_is_ready_and_says_it_does_not_lead(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    tokens = add_tokens(store)
    ha = {"role": "standby", "epoch": 4, "leader": "central-2:77"}
    ctx = make_context(
        store, make_guard(tmp_path / "p"), leader=lambda: {"leader": False, "ha": ha}
    )
    async with ApiHarness(store, ctx, tokens) as api:
        status, body = await api.call("GET", "/readyz", None)
        assert (status, body) == (200, ReadyOut.model_validate(body).model_dump())
        assert (body["ready"], body["leader"], body["role"]) == (True, False, "standby")
        status, out = await api.call("GET", "/v1/status", "noc")
        assert status == 200
        assert out["leader"] is False
        assert out["ha"] == ha
    store.close()


async def test_requests_counted_by_route_template(api: ApiHarness) -> None:
    await api.call("GET", "/v1/decisions/12345")
    await api.call("GET", "/v1/status", None)
    metrics = api.context.metrics
    assert metrics is not None
    sample = metrics.registry.get_sample_value(
        "edgeagent_api_requests_total", {"route": "/v1/decisions/{id}", "status": "404"}
    )
    assert sample == 1.0
    assert (
        metrics.registry.get_sample_value(
            "edgeagent_api_requests_total", {"route": "/v1/status", "status": "401"}
        )
        == 1.0
    )


async def test_metrics_app_serves_metrics_and_probes() -> None:
    metrics = Metrics()
    metrics.policy_version.set(7)
    state = {"reasons": ["no policy"]}
    app = create_metrics_app(metrics.registry, lambda: state["reasons"])
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.content_type.startswith("text/plain")
        assert "edgeagent_policy_version 7.0" in await resp.text()
        assert (await client.get("/healthz")).status == 200
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["reasons"] == ["no policy"]
        state["reasons"] = []
        assert (await client.get("/readyz")).status == 200
        assert (await client.post("/metrics")).status == 405


async def test_status_shows_the_store_s_version_while_the_counts_lag_a_rebuild(
    tmp_path: Path,
) -> None:
    """The daemon hands status the last policy built (it never waits for a rebuild): the
    version is the store's all the same, and the counts say which version they are of."""
    from edgeagent.model import DesiredState
    from edgeagent.tally import EntryTally

    store = SqliteStore(tmp_path / "s.db")
    tokens = add_tokens(store)
    _feed(store)
    built = EntryTally.of(DesiredState(0, (), ()))  # the one before the feed's version
    ctx = make_context(store, make_guard(tmp_path / "p"), tally=lambda: built)
    async with ApiHarness(store, ctx, tokens) as api:
        status, body = await api.call("GET", "/v1/status", "noc")
    version = store.policy_version()
    store.close()
    assert status == 200
    out = StatusOut.model_validate(body)
    assert version > 0
    assert out.policy_version == version
    assert (out.entries["version"], out.entries["total"]) == (0, 0)
