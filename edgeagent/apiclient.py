"""A small blocking client for the control API, for the CLI.

The CLI talks to the daemon's API when it holds a token: the daemon enforces a change at
once, and authentication, roles and validation happen in one place. Errors keep the API's
``{"error": {"field", "message", "code"}}`` parts, so the CLI can say what was wrong.

Where the API is: ``--api URL``, else ``$EDGEAGENT_API``, else the ``[api]`` section of
the config (``https`` when it has a certificate; a wildcard listen address is reached on
loopback). ``$EDGEAGENT_API_CA`` names a CA file to verify an ``https`` API with.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from edgeagent.errors import EdgeAgentError

API_ENV = "EDGEAGENT_API"
CA_ENV = "EDGEAGENT_API_CA"
# A daemon listening on every address is reached on loopback.
_WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - not a bind


class ApiCallFailed(EdgeAgentError):
    """The API answered with an error (``status`` >= 400) or could not be reached (0)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        where = f" (field {field})" if field else ""
        head = f"API answered {status} {code}" if status else "API not reachable"
        super().__init__(f"{head}: {message}{where}")


def chosen_api_url(explicit: str | None) -> str | None:
    """``--api URL``, else ``$EDGEAGENT_API``; ``None`` when neither is given."""
    chosen = explicit or os.environ.get(API_ENV)
    return chosen.rstrip("/") if chosen else None


def configured_api_url(host: str, port: int, tls: bool) -> str:
    """The URL of the API the ``[api]`` section describes."""
    host = _WILDCARD_TO_LOOPBACK.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


class ApiClient:
    """Calls ``base_url`` with ``Authorization: Bearer <secret>``; JSON in and out."""

    def __init__(self, base_url: str, secret: str, *, timeout: float = 300.0) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ApiCallFailed(0, "bad-url", "the API URL must start with http:// or https://")
        self.base_url = base_url
        self._secret = secret
        self._timeout = timeout
        cafile = os.environ.get(CA_ENV) or None
        self._ssl = (
            ssl.create_default_context(cafile=cafile) if base_url.startswith("https") else None
        )

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        """The decoded JSON answer; ``ApiCallFailed`` for an error answer or no answer."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) only
        request.add_header("Authorization", f"Bearer {self._secret}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(  # noqa: S310 - the scheme is checked in __init__
                request, timeout=self._timeout, context=self._ssl
            ) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _failure(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiCallFailed(0, "unreachable", f"{self.base_url}: {reason}") from None


def _failure(status: int, raw: bytes) -> ApiCallFailed:
    try:
        error = json.loads(raw)["error"]
        return ApiCallFailed(status, str(error["code"]), str(error["message"]), error["field"])
    except (ValueError, KeyError, TypeError):
        return ApiCallFailed(status, "http-error", "no error details in the answer")
