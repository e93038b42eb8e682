"""The OpenAPI document matches the real router, route for route, and is well formed."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from edgeagent.api import create_app
from edgeagent.api.feed_routes import feed_routes
from edgeagent.api.openapi import build_document, openapi_path
from edgeagent.api.routes import ROUTES, Route
from edgeagent.api.takedown_routes import takedown_routes
from edgeagent.store import SqliteStore
from tests.support.api import ApiHarness, make_context, make_guard

METHODS = {"get", "post", "put", "patch", "delete"}


def _router_operations(app: web.Application) -> set[tuple[str, str]]:
    ops = set()
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        ops.add((route.method.lower(), resource.canonical))
    return ops


def _document_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


async def test_document_matches_router_both_ways(api: ApiHarness) -> None:
    status, doc = await api.call("GET", "/v1/openapi.json", "noc")
    assert status == 200
    assert api.client is not None
    router_ops = _router_operations(api.client.server.app)  # type: ignore[union-attr]
    assert router_ops == _document_operations(doc)
    assert len(router_ops) == len(ROUTES)


def test_every_operation_declares_role_and_security() -> None:
    doc = build_document(ROUTES)
    assert doc["openapi"] == "3.1.0"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            role = op["x-required-role"]
            assert role in {"public", "noc", "analyst", "supervisor", "admin"}, (path, method)
            if role == "public":
                assert op["security"] == []
            else:
                assert op["security"] == [{"bearer": []}]
                assert {"401", "403"} <= set(op["responses"])
            assert op["operationId"]
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


def test_roles_in_document_equal_route_table() -> None:
    doc = build_document(ROUTES)
    for r in ROUTES:
        op = doc["paths"][openapi_path(r.path)][r.method.lower()]
        assert op["x-required-role"] == r.role.label


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for value in node.values():
            found.extend(_refs(value))
        return found
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_every_reference_resolves() -> None:
    doc = build_document(ROUTES)
    schemas = doc["components"]["schemas"]
    refs = _refs(doc)
    assert refs
    for ref in refs:
        prefix = "#/components/schemas/"
        assert ref.startswith(prefix), ref
        assert ref.removeprefix(prefix) in schemas, ref


def test_decision_request_and_error_schemas() -> None:
    doc = build_document(ROUTES)
    post = doc["paths"]["/v1/decisions"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    create = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert create["additionalProperties"] is False
    assert set(create["required"]) == {"target", "scope", "action", "reason", "reference", "source"}
    assert post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/DecisionOut"
    )
    for code in ("400", "409", "413"):
        schema = post["responses"][code]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/ErrorOut")
    scope = create["properties"]["scope"]
    assert set(scope["enum"]) == {"domain", "host", "url", "url-prefix", "ip", "cidr"}


def test_path_and_query_parameters() -> None:
    doc = build_document(ROUTES)
    get_one = doc["paths"]["/v1/decisions/{id}"]["get"]
    assert get_one["parameters"] == [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
    ]
    listing = {p["name"]: p for p in doc["paths"]["/v1/decisions"]["get"]["parameters"]}
    assert set(listing) == {"status", "source", "scope", "reference", "target", "limit", "offset"}
    assert not listing["limit"]["required"]
    lookup = doc["paths"]["/v1/lookup"]["get"]
    assert lookup["parameters"][0]["name"] == "target"
    assert lookup["parameters"][0]["required"] is True
    assert "429" in lookup["responses"]


def test_openapi_path_conversion() -> None:
    assert openapi_path(r"/v1/decisions/{id:\d+}/revoke") == "/v1/decisions/{id}/revoke"
    assert openapi_path("/v1/feeds/{name:[a-z]{1,64}}/sync") == "/v1/feeds/{name}/sync"
    assert openapi_path("/v1/status") == "/v1/status"


async def test_document_served_equals_built(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    app = create_app(make_context(store, make_guard(tmp_path / "p")))
    from edgeagent.api.context import OPENAPI_DOCUMENT

    assert app[OPENAPI_DOCUMENT] == build_document(ROUTES)
    store.close()


def _all_routes() -> tuple[Route, ...]:
    # The route objects only: the feed runner and takedown service are used per request
    # (the on-segment route exists when the service has customer segments).
    takedown = SimpleNamespace(segments=object())
    return (*ROUTES, *feed_routes(None), *takedown_routes(takedown))  # type: ignore[arg-type]


_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def test_every_path_template_is_well_formed_with_typed_parameters() -> None:
    doc = build_document(_all_routes())
    typed = {"id": "integer", "name": "string"}
    for path, item in doc["paths"].items():
        segments = path.split("/")[1:]
        matches = [_SEGMENT.fullmatch(s) for s in segments]
        assert all(matches), path  # balanced braces, one name per pair, nothing else
        names = [m[1] for m in matches if m is not None and m[1]]
        assert len(names) == len(set(names)), path
        for method, op in item.items():
            declared = [p for p in op.get("parameters", []) if p["in"] == "path"]
            assert [p["name"] for p in declared] == names, (method, path)
            for p in declared:
                assert p["required"] is True
                assert p["schema"]["type"] == typed[p["name"]], (method, path, p)
            queries = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
            assert len(queries) == len(set(queries)), (method, path)


def test_feed_name_pattern_is_the_routers() -> None:
    doc = build_document(_all_routes())
    (param,) = doc["paths"]["/v1/feeds/{name}/sync"]["post"]["parameters"]
    pattern = re.compile(param["schema"]["pattern"])
    assert pattern.fullmatch("police-sample.v2")
    assert not pattern.fullmatch("a/b")
    assert not pattern.fullmatch("x" * 65)


def test_document_paths_are_the_routers_canonical_paths(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    app = create_app(make_context(store, make_guard(tmp_path / "p")), _all_routes())
    doc = build_document(_all_routes())
    assert _router_operations(app) == _document_operations(doc)
    store.close()


@pytest.mark.parametrize(
    "path", ["/v1/x/{id", "/v1/x/id}", "/v1/{a}/{a}", "/v1/{1x}", "/v1/{id:}", "/v1/{n:[a-z]{1,2}"]
)
def test_malformed_route_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="route path"):
        openapi_path(path)
