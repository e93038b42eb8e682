"""The public report, appeal and challenge pages over HTTP: the bad input they must survive.

A real store and the real triage behind the pages; requests from aiohttp's test client.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edgeagent.decisions import DecisionService
from edgeagent.intake.app import PublicPages, create_public_pages_app
from edgeagent.intake.settings import IntakeSettings
from edgeagent.intake.triage import Triage
from edgeagent.metrics import Metrics
from edgeagent.store import SqliteStore
from tests.support.api import make_guard

SCRIPT = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"


@dataclass
class Pages:
    client: TestClient  # type: ignore[type-arg]
    store: SqliteStore
    metrics: Metrics
    db: Path

    async def form(self, path: str = "/report") -> str:
        resp = await self.client.get(path)
        assert resp.status == 200
        text = await resp.text()
        found = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', text)
        assert found, "no CSRF token in the form"
        return found.group(1)


def report(token: str, **fields: str) -> dict[str, str]:
    body = {
        "csrf_token": token,
        "urls": "http://bad.example/a\nbad.example/b",
        "category": IntakeSettings().categories[0],
        "came_across": "web",
        "live_video": "no",
        "discovered_at": "2026-01-31T14:05",
        "description": "",
        "anonymous": "yes",
        "contact": "",
    }
    body.update(fields)
    return body


@pytest.fixture
async def pages(tmp_path: Path) -> AsyncIterator[Pages]:
    db = tmp_path / "store.db"
    store = SqliteStore(db)
    metrics = Metrics()
    triage = Triage(
        DecisionService(store, make_guard(tmp_path / "g"), public_needs_approval=True),
        metrics=metrics,
    )
    settings = IntakeSettings(rate_per_source=5, daily_cap=50)
    app = create_public_pages_app(PublicPages(settings, triage.submit, metrics=metrics))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Pages(client, store, metrics, db)
    finally:
        await client.close()
        store.close()


def refused(p: Pages, reason: str) -> float:
    value = p.metrics.registry.get_sample_value(
        "edgeagent_intake_refused_total", {"reason": reason}
    )
    return value or 0.0


async def test_report_is_queued_and_its_reference_shown(pages: Pages) -> None:
    token = await pages.form()
    resp = await pages.client.post("/report", data=report(token))
    text = await resp.text()
    assert resp.status == 200, text
    ref = re.search(r'id="reference">([A-Z0-9-]+)<', text)
    assert ref is not None
    [item] = pages.store.list_intake_items()
    assert item.reference == ref.group(1)
    assert item.content.urls == ("http://bad.example/a", "http://bad.example/b")
    assert item.content.contact == ""
    assert "cannot reply" in text
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert [c.key for c in resp.cookies.values()] in ([], ["csrf"])


async def test_anonymous_choice_drops_a_typed_contact(pages: Pages) -> None:
    token = await pages.form()
    await pages.client.post(
        "/report", data=report(token, anonymous="yes", contact="me@reporter.example")
    )
    [item] = pages.store.list_intake_items()
    assert item.content.contact == ""
    assert b"reporter.example" not in pages.db.read_bytes()


async def test_without_csrf_token_nothing_is_stored(pages: Pages) -> None:
    await pages.form()
    resp = await pages.client.post("/report", data=report("0" * 64))
    assert resp.status == 403
    fresh = pages.client.session.cookie_jar.filter_cookies(pages.client.make_url("/"))
    assert list(fresh) == ["csrf"]
    other = TestClient(TestServer(pages.client.app))  # no cookie at all
    await other.start_server()
    try:
        assert (await other.post("/report", data=report("0" * 64))).status == 403
    finally:
        await other.close()
    assert pages.store.list_intake_items() == []
    assert refused(pages, "csrf") == 2


async def test_oversized_form_and_urls_are_refused(pages: Pages) -> None:
    token = await pages.form()
    big = await pages.client.post("/report", data=report(token, description="x" * 70_000))
    assert big.status == 413
    long_url = "http://bad.example/" + "a" * 3000
    resp = await pages.client.post("/report", data=report(token, urls=long_url))
    assert resp.status == 400
    assert "at most 2048 characters" in await resp.text()
    many = "\n".join(f"http://bad.example/{n}" for n in range(300))
    resp = await pages.client.post("/report", data=report(token, urls=many))
    assert resp.status == 400
    assert "at most 20 addresses" in await resp.text()
    assert pages.store.list_intake_items() == []


async def test_html_and_script_are_escaped_everywhere_shown(pages: Pages) -> None:
    token = await pages.form()
    bad = report(
        token,
        urls=SCRIPT,
        category=SCRIPT,
        came_across=SCRIPT,
        description=SCRIPT,
        discovered_at=SCRIPT,
        contact=SCRIPT,
        anonymous="no",
    )
    resp = await pages.client.post("/report", data=bad)
    text = await resp.text()
    assert resp.status == 400
    assert "<script>" not in text
    assert "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # A valid report with markup in its free text: stored as typed, shown escaped by the API.
    ok = report(token, description=SCRIPT, contact=SCRIPT, anonymous="no")
    resp = await pages.client.post("/report", data=ok)
    assert resp.status == 200
    [item] = pages.store.list_intake_items()
    assert item.content.description == SCRIPT


async def test_a_flood_from_one_source_is_limited_and_leaves_no_trace(pages: Pages) -> None:
    token = await pages.form()
    statuses = [(await pages.client.post("/report", data=report(token))).status for _ in range(12)]
    assert statuses[:5] == [200] * 5
    assert set(statuses[5:]) == {429}
    assert len(pages.store.list_intake_items()) == 5
    raw = pages.db.read_bytes() + b"".join(
        p.read_bytes() for p in pages.db.parent.glob("store.db-*")
    )
    assert b"127.0.0.1" not in raw
    assert refused(pages, "rate-limited") == 7


async def test_daily_cap_refuses_and_raises_the_alert_metric(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    metrics = Metrics()
    triage = Triage(
        DecisionService(store, make_guard(tmp_path / "g"), public_needs_approval=True),
        metrics=metrics,
    )
    settings = IntakeSettings(daily_cap=2, rate_per_source=100)
    client = TestClient(
        TestServer(create_public_pages_app(PublicPages(settings, triage.submit, metrics=metrics)))
    )
    await client.start_server()
    try:
        page = await (await client.get("/report")).text()
        token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page)
        assert token
        statuses = [
            (await client.post("/report", data=report(token.group(1)))).status for _ in range(3)
        ]
    finally:
        await client.close()
        store.close()
    assert statuses == [200, 200, 503]
    assert metrics.registry.get_sample_value("edgeagent_intake_daily_cap_reached") == 1
    assert (
        metrics.registry.get_sample_value(
            "edgeagent_intake_received_total", {"channel": "public-report"}
        )
        == 2
    )


async def test_appeal_keeps_only_the_opaque_reference(pages: Pages) -> None:
    ref = "a" * 24
    resp = await pages.client.get(f"/appeal?ref={ref}")
    text = await resp.text()
    token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', text)
    assert token
    assert f'value="{ref}"' in text
    resp = await pages.client.post(
        "/appeal",
        data={"csrf_token": token.group(1), "ref": ref, "statement": "mine", "contact": ""},
    )
    assert resp.status == 200
    bad = await pages.client.post(
        "/appeal",
        data={"csrf_token": token.group(1), "ref": "http://x.example/", "statement": "s"},
    )
    assert bad.status == 400
    [item] = pages.store.list_intake_items()
    assert (item.channel.value, item.content.subject) == ("appeal", ref)
