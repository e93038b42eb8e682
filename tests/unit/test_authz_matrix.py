"""The authorisation matrix, generated from the route tables the daemon serves.

Every route (``ROUTES`` + ``feed_routes`` + ``takedown_routes``, read from the tables) x
every caller: each token role, no token, a wrong token, a revoked admin token. Expected:

- public routes (health probes) answer anyone;
- no, wrong or revoked token: ``401`` with ``WWW-Authenticate: Bearer``;
- a role below the route's: ``403`` code ``forbidden``;
- the route's role or higher: past the check, answered ``2xx`` or a ``4xx`` about the
  request itself (validation ``400``, ``404``, ``409``, four-eyes ``403``), never ``5xx``.

The clock jumps an hour at every reading, so no rate limit or token cache of the app
shapes the answers: the matrix sees the role checks alone.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from edgeagent.api.routes import Route
from edgeagent.roles import Role
from tests.support.full_api import FullApi, concrete_path, full_api
from tests.support.fuzzing import FIGURES

ROLE_TOKENS = {Role.NOC: "noc", Role.ANALYST: "analyst", Role.SUPERVISOR: "supervisor"}
ROLE_TOKENS[Role.ADMIN] = "admin"
BAD_CREDENTIALS = ("no token", "wrong token", "revoked token")


def _secret(api: FullApi, caller: str) -> str | None:
    if caller == "no token":
        return None
    if caller == "wrong token":
        return "ea_" + "0" * 43
    if caller == "revoked token":
        return api.tokens["revoked"]
    return api.tokens[caller]


def _violation(route: Route, caller: str, status: int, body: object, headers: str) -> str | None:
    """Why this answer breaks the matrix, or None."""
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    if status >= 500 and not (route.role is Role.PUBLIC and status == 503):
        return f"server error {status}"
    if route.role is Role.PUBLIC:
        return None if status in (200, 503) else f"public route answered {status}"
    if caller in BAD_CREDENTIALS:
        if status != 401 or not headers.startswith("Bearer"):
            return f"expected 401 with a Bearer challenge, got {status}"
        return None
    role = Role[caller.upper()]
    if role < route.role:
        return None if (status, code) == (403, "forbidden") else f"expected 403, got {status}"
    if status in (401, 429) or (status == 403 and code == "forbidden"):
        return f"authorised caller refused with {status} {code}"
    return None


async def test_every_route_every_caller(tmp_path: Path) -> None:
    ticks = itertools.count(0, 3600)
    async with full_api(tmp_path, clock=lambda: float(next(ticks))) as api:
        callers = [*ROLE_TOKENS.values(), *BAD_CREDENTIALS]
        assert len(api.routes) >= 23  # every table is there
        violations: list[str] = []
        requests = 0
        for route, caller in itertools.product(api.routes, callers):
            path = concrete_path(route.path)
            body = b"{}" if route.method == "POST" else None
            headers = {"Content-Type": "application/json"}
            secret = _secret(api, caller)
            if secret is not None:
                headers["Authorization"] = f"Bearer {secret}"
            resp = await api.client.request(route.method, path, data=body, headers=headers)
            answer = await resp.json() if resp.content_type == "application/json" else None
            requests += 1
            why = _violation(
                route, caller, resp.status, answer, resp.headers.get("WWW-Authenticate", "")
            )
            if why is not None:
                violations.append(f"{route.method} {route.path} as {caller}: {why}")
    FIGURES.set(
        "authz-matrix",
        {"routes": len(api.routes), "requests": requests, "violations": len(violations)},
    )
    assert requests == len(api.routes) * len(callers)
    assert violations == []
