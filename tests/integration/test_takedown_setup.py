"""The service built from ``[takedown]`` settings, with an HTTP IPAM endpoint on loopback."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from edgeagent.lab.resolvers import unbound_server
from edgeagent.model import Indicator, Scope
from edgeagent.plugins import concrete_model
from edgeagent.store import SqliteStore, open_ticket_store
from edgeagent.store.sqlite import SqliteStoreConfig
from edgeagent.takedown.customers.http import HttpIpam
from edgeagent.takedown.notifiers.smtp import SmtpNotifier
from edgeagent.takedown.notifiers.webhook import WebhookNotifier
from edgeagent.takedown.service import TakedownService
from edgeagent.takedown.settings import TakedownSettings
from tests.support.binaries import require_binary
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

IPAM_ITEMS = [
    {"prefix": "198.51.100.0/28", "customer_id": "ipam-a", "service_id": "vm-1"},
    {"prefix": "198.51.100.16 - 198.51.100.31", "customer_id": "ipam-b", "contact": ""},
]


@pytest.fixture
async def ipam() -> AsyncIterator[dict[str, Any]]:
    state: dict[str, Any] = {"items": IPAM_ITEMS, "auth": [], "status": 200}

    async def handler(request: web.Request) -> web.Response:
        state["auth"].append(request.headers.get("Authorization", ""))
        return web.Response(
            status=state["status"], text=json.dumps(state["items"]), content_type="application/json"
        )

    app = web.Application()
    app.router.add_get("/assignments", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port(udp=False)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    state["url"] = f"http://127.0.0.1:{port}/assignments"
    yield state
    await runner.cleanup()


async def test_ipam_lookup_keeps_old_data_on_errors(ipam: dict[str, Any]) -> None:
    source = HttpIpam(ipam["url"], token="t0k3n", timeout=5)
    items = await source.load()
    assert [a.customer_id for a in items] == ["ipam-a", "ipam-b"]
    assert ipam["auth"] == ["Bearer t0k3n"]
    ipam["items"] = [{"prefix": "198.51.100.0/28"}]
    with pytest.raises(Exception, match=r"line 1: customer_id is empty"):
        await source.load()
    ipam["status"] = 500
    with pytest.raises(Exception, match="HTTP status 500"):
        await source.load()


async def test_service_from_settings(tmp_path: Path, ipam: dict[str, Any]) -> None:
    require_binary("unbound")
    secret = tmp_path / "hook.secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    csv_path = tmp_path / "customers.csv"
    csv_path.write_text("prefix,customer_id\n203.0.113.0/24,csv-c\n", encoding="utf-8")
    with unbound_server([("shop.hosted.test", "A", "198.51.100.20")]) as (host, port):
        settings = concrete_model(TakedownSettings).model_validate(
            {
                "enabled": True,
                "own_prefixes": ["198.51.100.0/24", "203.0.113.0/24"],
                "customers": [
                    {"kind": "csv", "path": str(csv_path)},
                    {"kind": "http", "url": ipam["url"]},
                ],
                "resolvers": [{"host": host, "port": port}],
                "sla_minutes_by_source": {"law-enforcement": 30},
                "require_authorisation_for": ["law-enforcement"],
                "notifiers": {
                    "hosting": {
                        "kind": "smtp",
                        "host": "127.0.0.1",
                        "sender": "ntd@isp.example",
                        "recipients": ["hosting@isp.example"],
                    },
                    "tickets": {
                        "kind": "webhook",
                        "url": "http://127.0.0.1:9/hook",
                        "secret_file": str(secret),
                    },
                },
            }
        )
        store = SqliteStore(tmp_path / "edgeagent.sqlite3")
        svc = TakedownService.from_settings(
            settings, store, open_ticket_store(SqliteStoreConfig(), tmp_path)
        )
        try:
            assert stat.S_IMODE(os.stat(tmp_path / "takedown.sqlite3").st_mode) == 0o600
            assert [type(n) for n in svc.notifiers] == [SmtpNotifier, WebhookNotifier]
            assert isinstance(svc.notifiers[1], WebhookNotifier)
            assert svc.notifiers[1].secret == b"s3cret"
            assert [n.name for n in svc.notifiers] == ["hosting", "tickets"]
            assert svc.policy.sla("law-enforcement") == dt.timedelta(minutes=30)
            assert svc.policy.sla("hotline") == dt.timedelta(minutes=60)
            assert "law-enforcement" in svc.policy.require_authorisation_for
            report = await svc.refresh_customers()
            assert report.loaded == {"csv0": 1, "http1": 2}
            (loc,) = await svc.locator.locate(
                [Indicator.parse(Scope.URL, "http://shop.hosted.test/x")]
            )
            assert loc.customers == ("ipam-b",)
            assert loc.answers[0].ttl == 300
            assert loc.answers[0].resolver == f"{host}:{port}"
        finally:
            svc.tickets.close()
            store.close()
