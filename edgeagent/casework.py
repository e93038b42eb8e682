"""The NTD team's daily work from the command line: decisions, approvals, feeds, tokens.

Two ways to do the same work, with the same answers (the API's JSON shapes), so that the
CLI prints one thing whichever way it went:

- :class:`RemoteCasework`: through the daemon's control API, as the token's holder. The
  daemon enforces a change at once.
- :class:`LocalCasework`: on the store, as a checked identity (:mod:`edgeagent.identity`),
  with the role each operation needs in the API's route table. For the service user on
  the agent's host (``--actor``); the daemon applies a change within seconds, when its
  poll of the store sees the policy version move.

Refusals come as the API's errors (:class:`edgeagent.apiclient.ApiCallFailed`) or as the
domain's own (:class:`edgeagent.errors.EdgeAgentError`), either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from edgeagent.api import handlers
from edgeagent.api.feed_routes import HeldDecision, feed_routes, generation_json
from edgeagent.api.routes import ROUTES, Route
from edgeagent.api.validation import (
    ApiError,
    DecisionApprove,
    DecisionBulkCreate,
    DecisionListQuery,
    DecisionRevoke,
    TokenRevoke,
    parse_body,
    parse_query,
)
from edgeagent.apiclient import ApiCallFailed, ApiClient
from edgeagent.decisions import NoticeTarget
from edgeagent.identity import Credentials, Identity, check
from edgeagent.model import Scope
from edgeagent.service import Agent
from edgeagent.tokens import list_tokens, revoke_token

T = TypeVar("T")
Json = dict[str, Any]


class Casework(Protocol):
    def notice(self, body: Mapping[str, Any]) -> Json:
        """``POST /v1/decisions/bulk``."""
        ...

    def decisions(self, query: Mapping[str, str]) -> Json:
        """``GET /v1/decisions``."""
        ...

    def decision(self, decision_id: int) -> Json: ...

    def revoke(self, decision_id: int, reason: str) -> Json: ...

    def approve(self, decision_id: int, reason: str) -> Json: ...

    def tokens(self) -> Json: ...

    def revoke_token(self, token_id: int, reason: str) -> Json: ...

    def held_generation(self, feed: str, action: str, body: Mapping[str, Any]) -> Json:
        """``POST /v1/feeds/{feed}/{action}`` with ``action`` approve or discard."""
        ...


class RemoteCasework:
    """Casework through the control API."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    def notice(self, body: Mapping[str, Any]) -> Json:
        return dict(self.client.call("POST", "/v1/decisions/bulk", body))

    def decisions(self, query: Mapping[str, str]) -> Json:
        return dict(self.client.call("GET", "/v1/decisions", query=query))

    def decision(self, decision_id: int) -> Json:
        return dict(self.client.call("GET", f"/v1/decisions/{decision_id}"))

    def revoke(self, decision_id: int, reason: str) -> Json:
        path = f"/v1/decisions/{decision_id}/revoke"
        return dict(self.client.call("POST", path, {"reason": reason}))

    def approve(self, decision_id: int, reason: str) -> Json:
        path = f"/v1/decisions/{decision_id}/approve"
        return dict(self.client.call("POST", path, {"reason": reason}))

    def tokens(self) -> Json:
        return dict(self.client.call("GET", "/v1/tokens"))

    def revoke_token(self, token_id: int, reason: str) -> Json:
        return dict(self.client.call("POST", f"/v1/tokens/{token_id}/revoke", {"reason": reason}))

    def held_generation(self, feed: str, action: str, body: Mapping[str, Any]) -> Json:
        return dict(self.client.call("POST", f"/v1/feeds/{feed}/{action}", body))


class LocalCasework:
    """Casework on the store of ``agent``, as the identity ``offered`` stands for."""

    def __init__(self, agent: Agent, offered: Credentials) -> None:
        self.agent = agent
        self.offered = offered
        routes: tuple[Route, ...] = (*ROUTES, *feed_routes(agent.feeds))
        self._roles = {r.operation_id: r.role for r in routes}

    def _as(self, operation_id: str) -> Identity:
        """The caller, if they hold the role the API demands for ``operation_id``."""
        return check(
            self.agent.store,
            self.offered,
            self.agent.settings.agent.state_dir,
            self._roles[operation_id],
        )

    def notice(self, body: Mapping[str, Any]) -> Json:
        who = self._as("createNotice")
        parsed = _api_errors(lambda: parse_body(_raw(body), DecisionBulkCreate))
        targets = [NoticeTarget(t.target, Scope(t.scope)) for t in parsed.targets]
        notice = handlers.decision_request(parsed, "", Scope.URL)
        results = self.agent.decisions.create_notice(notice, targets, who.name)
        return handlers.notice_json(parsed.reference, results)

    def decisions(self, query: Mapping[str, str]) -> Json:
        self._as("listDecisions")
        q = _api_errors(lambda: parse_query(list(query.items()), DecisionListQuery))
        return _api_errors(lambda: handlers.decision_page(self.agent.store, q))

    def decision(self, decision_id: int) -> Json:
        self._as("getDecision")
        return handlers.decision_json(self.agent.store.get_decision(decision_id))

    def revoke(self, decision_id: int, reason: str) -> Json:
        who = self._as("revokeDecision")
        body = _api_errors(lambda: parse_body(_raw({"reason": reason}), DecisionRevoke))
        return handlers.decision_json(
            self.agent.decisions.revoke(decision_id, who.name, body.reason)
        )

    def approve(self, decision_id: int, reason: str) -> Json:
        who = self._as("approveDecision")
        body = _api_errors(lambda: parse_body(_raw({"reason": reason}), DecisionApprove))
        return handlers.decision_json(
            self.agent.decisions.approve(decision_id, who.name, body.reason)
        )

    def tokens(self) -> Json:
        who = self._as("listTokens")
        return {"items": [handlers.token_json(t) for t in list_tokens(self.agent.store, who.name)]}

    def revoke_token(self, token_id: int, reason: str) -> Json:
        who = self._as("revokeToken")
        body = _api_errors(lambda: parse_body(_raw({"reason": reason}), TokenRevoke))
        return handlers.token_json(revoke_token(self.agent.store, token_id, who.name, body.reason))

    def held_generation(self, feed: str, action: str, body: Mapping[str, Any]) -> Json:
        operation = "approveHeldGeneration" if action == "approve" else "discardHeldGeneration"
        who = self._as(operation)
        parsed = _api_errors(lambda: parse_body(_raw(body), HeldDecision))
        act = self.agent.feeds.approve if action == "approve" else self.agent.feeds.discard
        return generation_json(act(feed, who.name, parsed.reason, parsed.generation))


def _raw(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _api_errors(fn: Callable[[], T]) -> T:
    """Validation problems as the API would answer them."""
    try:
        return fn()
    except ApiError as exc:
        raise ApiCallFailed(exc.status, exc.code, exc.message, exc.field) from None
