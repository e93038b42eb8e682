"""The OpenAPI 3.1 document, generated from the route table and the pydantic shapes.

Nothing here is written by hand per endpoint: paths, methods, roles
(``x-required-role``), security, parameters and schemas all come from
:data:`edgeagent.api.routes.ROUTES`, so the document cannot drift from the router.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from edgeagent import __version__
from edgeagent.api.routes import Route
from edgeagent.api.validation import ErrorOut
from edgeagent.roles import Role

_REF = "#/components/schemas/{model}"
_DIGITS = r"\d+"

_ERROR_TEXT = {
    400: "Bad input; `error.field` names the field",
    401: "Missing, unknown or revoked token",
    403: "Role too low, or four-eyes: the creator cannot approve",
    404: "Not found",
    409: "Conflict: duplicate active decision, or a transition not allowed",
    413: "Body larger than the configured cap",
    429: "Rate limit reached; see Retry-After",
    503: "Not ready / no policy loaded",
}


@dataclass(frozen=True, slots=True)
class PathParam:
    """One ``{name}`` or ``{name:regex}`` of an aiohttp path; ``pattern`` None: the default."""

    name: str
    pattern: str | None

    def schema(self) -> dict[str, Any]:
        """``\\d+`` is an integer; any other pattern a string matching it whole."""
        if self.pattern is None:
            return {"type": "string"}
        if self.pattern == _DIGITS:
            return {"type": "integer"}
        return {"type": "string", "pattern": f"^(?:{self.pattern})$"}


def split_path(path: str) -> tuple[str, tuple[PathParam, ...]]:
    """aiohttp path -> (OpenAPI path, its parameters in order).

    A pattern may hold braces of its own (``{name:[a-z]{1,64}}``), so the closing brace
    is found by counting, not by the first ``}``. Unbalanced braces, a bad name or a name
    used twice raise ``ValueError`` naming the path: the document must not be built wrong.
    """
    out: list[str] = []
    params: list[PathParam] = []
    i = 0
    while i < len(path):
        char = path[i]
        if char == "}":
            raise ValueError(f"route path {path!r}: unbalanced '}}' at {i}")
        if char != "{":
            out.append(char)
            i += 1
            continue
        depth, j = 1, i + 1
        while j < len(path) and depth:
            depth += {"{": 1, "}": -1}.get(path[j], 0)
            j += 1
        if depth:
            raise ValueError(f"route path {path!r}: unbalanced '{{' at {i}")
        name, colon, pattern = path[i + 1 : j - 1].partition(":")
        if not name.isidentifier() or (colon and not pattern):
            raise ValueError(f"route path {path!r}: bad parameter at {i}")
        if any(p.name == name for p in params):
            raise ValueError(f"route path {path!r}: parameter {name!r} twice")
        params.append(PathParam(name, pattern or None))
        out.append(f"{{{name}}}")
        i = j
    return "".join(out), tuple(params)


def openapi_path(path: str) -> str:
    """aiohttp path -> OpenAPI path: ``/v1/decisions/{id:\\d+}`` -> ``/v1/decisions/{id}``."""
    return split_path(path)[0]


def build_document(
    routes: Iterable[Route], *, title: str = "edgeagent control API"
) -> dict[str, Any]:
    routes = tuple(routes)
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (ErrorOut, "serialization")
    ]
    for r in routes:
        if r.body is not None:
            models.append((r.body, "validation"))
        if r.query is not None:
            models.append((r.query, "validation"))
        if r.response is not None:
            models.append((r.response, "serialization"))
    unique = list(dict.fromkeys(models))
    keyed, top = models_json_schema(unique, ref_template=_REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))

    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "operationId": r.operation_id,
            "summary": r.summary,
            "x-required-role": r.role.label,
            "security": [] if r.role is Role.PUBLIC else [{"bearer": []}],
            "responses": _responses(r, keyed),
        }
        params = _path_params(r.path) + _query_params(r, schemas)
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {
                "required": r.body.model_json_schema().get("required") is not None,
                "content": {"application/json": {"schema": keyed[(r.body, "validation")]}},
            }
        paths.setdefault(openapi_path(r.path), {})[r.method.lower()] = op

    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": __version__,
            "description": (
                "Roles are cumulative: noc < analyst < supervisor < admin. Each operation "
                "names the lowest role it needs in `x-required-role`. Errors have the shape "
                '`{"error": {"field", "message", "code"}}`.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _responses(r: Route, keyed: dict[Any, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    if r.response is not None:
        ok["content"] = {"application/json": {"schema": keyed[(r.response, "serialization")]}}
    else:
        ok["content"] = {"application/json": {"schema": {"type": "object"}}}
    out: dict[str, Any] = {str(r.status): ok}
    for code in r.also:
        out[str(code)] = {"description": _ERROR_TEXT.get(code, ""), "content": ok["content"]}
    codes = set(r.errors)
    if r.role is not Role.PUBLIC:
        codes |= {401, 403}
    if r.body is not None:
        codes |= {400, 413}
    if r.query is not None:
        codes.add(400)
    for code in sorted(codes):
        out[str(code)] = {
            "description": _ERROR_TEXT[code],
            "content": {"application/json": {"schema": keyed[(ErrorOut, "serialization")]}},
        }
    return out


def _path_params(path: str) -> list[dict[str, Any]]:
    return [
        {"name": p.name, "in": "path", "required": True, "schema": p.schema()}
        for p in split_path(path)[1]
    ]


def _query_params(r: Route, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    if r.query is None:
        return []
    schema = schemas.get(r.query.__name__) or r.query.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]
