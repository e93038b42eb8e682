"""Fuzzing the control API's request bodies and query strings through the aiohttp client.

Every body-taking route (decisions, revoke, approve, feed approve/discard, ticket
transition) gets JSON objects with hostile values, raw bytes, deep nesting and huge
numbers; the query routes get hostile parameters. Properties: never a 500; every refusal
is ``{"error": {"field", "message", "code"}}`` with a message (a ``400`` names the field);
no refusal echoes a submitted value (each carries a marker that must not come back).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.full_api import FullApi, full_api
from tests.support.fuzzing import EXAMPLES, fuzz_settings, hostile_names, hostile_urls

MARKER = "m4rk3r"
_STATUSES = {200, 201, 400, 403, 404, 409, 413, 429, 503}


class Driver:
    """The API on its own event loop, so a synchronous hypothesis test can call it."""

    def __init__(self, directory: Path) -> None:
        self._runner = asyncio.Runner()
        self._context = full_api(directory, lookup_rate_per_minute=1_000_000, max_body_bytes=65536)
        self.api: FullApi = self._runner.run(self._context.__aenter__())

    def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        token = self.api.tokens["supervisor2"]
        return self._runner.run(self.api.call(method, path, token=token, **kw))

    def close(self) -> None:
        self._runner.run(self._context.__aexit__(None, None, None))
        self._runner.close()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    d = Driver(tmp_path_factory.mktemp("fuzz-api"))
    yield d
    d.close()


def check_answer(status: int, body: Any) -> None:
    assert status in _STATUSES, (status, body)
    if status >= 400:
        error = body["error"]
        assert set(error) == {"field", "message", "code"}
        assert error["message"]
        assert error["code"]
        if status == 400:
            assert error["field"]
        assert MARKER not in json.dumps(body), body


def _marked(text: str) -> str:
    return f"{text}{MARKER}"


_texts = st.one_of(
    st.text(max_size=30).map(_marked),
    st.sampled_from(["'; DROP TABLE decisions;--", '" OR 1=1 --', "%s%n", "\\x00", "$(id)"]).map(
        _marked
    ),
    st.integers(1001, 3000).map(lambda n: _marked("x" * n)),
)
_targets = st.one_of(
    hostile_urls.map(_marked),
    hostile_names.map(lambda n: f"{MARKER}.{n}"),
    st.sampled_from([f"{MARKER}.example", f"http://{MARKER}.example/p", "192.0.2.1"]),
)
_times = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["2999-01-01T00:00:00Z", "yesterday", "0001-01-01T00:00:00+01:00"]),
    st.integers(),
)
_any_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _texts),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_texts, inner, max_size=3)
    ),
    max_leaves=8,
)
_fields = {
    "target": _targets,
    "scope": st.sampled_from(["domain", "host", "url", "url-prefix", "ip", "cidr", "url-hash", ""]),
    "action": st.sampled_from(["block", "allow", "BLOCK", "x"]),
    "reason": _texts,
    "reference": _texts,
    "source": st.sampled_from(["public", "hotline", "law-enforcement", "internal", "police"]),
    "notice_received_at": _times,
    "expires_at": _times,
    "category": _texts,
    "to": st.sampled_from(["under-review", "referred", "found-legal", "x"]),
    "authorisation": _texts,
    "generation": st.one_of(st.integers(), st.just(10**30)),
}
_objects = st.fixed_dictionaries(
    {}, optional={k: st.one_of(v, _any_json) for k, v in _fields.items()}
)
_bodies = st.one_of(
    _objects.map(lambda o: json.dumps(o).encode()),
    st.binary(max_size=80),
    st.integers(1, 20_000).map(lambda n: ("[" * n + "]" * n).encode()),
    st.integers(1, 20_000).map(lambda n: ('{"reason":' * n).encode()),
    st.sampled_from([b"1e999999", b'{"reason": 1e999999}', b"NaN", b'{"a":1,"a":2}', b"\xff\xfe"]),
    st.integers(60_000, 70_000).map(lambda n: json.dumps({"reason": "x" * n}).encode()),
)
_POSTS = [
    "/v1/decisions",
    "/v1/decisions/1/revoke",
    "/v1/decisions/1/approve",
    "/v1/feeds/police/approve",
    "/v1/feeds/police/discard",
    "/v1/tickets/1/transition",
]


@fuzz_settings(default=250, long=20_000)
@given(st.sampled_from(_POSTS), _bodies)
@example("/v1/decisions", b"[" * 20_000 + b"]" * 20_000)
@example(
    "/v1/decisions",
    b'{"target": "t.example", "scope": "host", "action": "block", "reason": "r", '
    b'"reference": "C", "source": "hotline", "expires_at": "9999-12-31T23:59:59-01:00"}',
)
def test_bodies(driver: Driver, path: str, body: bytes) -> None:
    EXAMPLES.count("api.bodies")
    check_answer(*driver.call("POST", path, data=body))


_params = st.dictionaries(
    st.sampled_from(["target", "status", "source", "scope", "reference", "limit", "offset"])
    | st.sampled_from(["since", "state", "open", "from", "to", "unknown"]),
    st.one_of(_texts, _targets, st.integers().map(str), _times.map(str)),
    max_size=4,
)
_GETS = ["/v1/lookup", "/v1/decisions", "/v1/audit", "/v1/tickets", "/v1/reports/takedown"]


@fuzz_settings(default=150, long=10_000)
@given(st.sampled_from(_GETS), _params)
@example("/v1/audit", {"since": "0001-01-01T00:00:00+01:00"})
@example("/v1/reports/takedown", {"to": "9999-12-31T23:59:59-01:00"})
def test_query_strings(driver: Driver, path: str, params: dict[str, str]) -> None:
    EXAMPLES.count("api.query")
    check_answer(*driver.call("GET", path, params=params))
