"""Bad input: each mistake is a 400 naming the field (413 for an oversized body)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from edgeagent.api.feed_routes import HeldDecision
from edgeagent.api.takedown_routes import TicketTransition
from edgeagent.api.validation import ApiError, ErrorOut, parse_body
from tests.support.api import ApiHarness, decision_body


@pytest.fixture
def api_settings() -> dict[str, Any]:
    return {"max_body_bytes": 4096}


def _without(key: str) -> dict[str, Any]:
    body = decision_body()
    del body[key]
    return body


BAD_BODIES = [
    pytest.param(decision_body(colour="red"), "colour", "unknown field", id="unknown-field"),
    pytest.param(decision_body(target=42), "target", "string", id="target-not-string"),
    pytest.param(decision_body(reason=["x"]), "reason", "string", id="reason-not-string"),
    pytest.param(decision_body(scope="subnet"), "scope", "", id="bad-scope"),
    pytest.param(decision_body(scope="url-hash"), "scope", "", id="hash-scope"),
    pytest.param(decision_body(action="delete"), "action", "", id="bad-action"),
    pytest.param(decision_body(source="twitter"), "source", "", id="bad-source"),
    pytest.param(decision_body(reason="   "), "reason", "", id="blank-reason"),
    pytest.param(_without("reference"), "reference", "required", id="missing-reference"),
    pytest.param(_without("target"), "target", "required", id="missing-target"),
    pytest.param(
        decision_body(notice_received_at="yesterday"), "notice_received_at", "", id="bad-date"
    ),
    pytest.param(
        decision_body(notice_received_at="yesterday"),
        "notice_received_at",
        "datetime",
        id="not-a-date",
    ),
    pytest.param(
        decision_body(notice_received_at="2999-01-01T00:00:00Z"),
        "notice_received_at",
        "future",
        id="notice-in-future",
    ),
    pytest.param(
        decision_body(expires_at="2001-01-01T00:00:00Z"), "expires_at", "future", id="expired"
    ),
    pytest.param([decision_body()], "body", "object", id="array-body"),
    pytest.param("just text", "body", "object", id="string-body"),
    pytest.param(decision_body(target="*.example"), "target", "", id="wildcard-target"),
    pytest.param(decision_body(target="bad name.example"), "target", "", id="space-in-name"),
    pytest.param(decision_body(target="com"), "target", "public suffix", id="tld-block"),
    pytest.param(
        decision_body(target="com", scope="domain"), "target", "public suffix", id="tld-domain"
    ),
    pytest.param(decision_body(target="."), "target", "", id="root"),
    pytest.param(
        decision_body(target="http://com/", scope="url"), "target", "public suffix", id="url-tld"
    ),
    pytest.param(decision_body(target="192.0.2.0/8", scope="cidr"), "target", "", id="wide-cidr"),
    pytest.param(decision_body(target="not-an-ip", scope="ip"), "target", "", id="bad-ip"),
    pytest.param(decision_body(target="http://[::1/", scope="url"), "target", "", id="bad-url"),
]


@pytest.mark.parametrize(("body", "field", "words"), BAD_BODIES)
async def test_bad_body_is_400_naming_the_field(
    api: ApiHarness, body: Any, field: str, words: str
) -> None:
    status, out = await api.call("POST", "/v1/decisions", json=body)
    assert status == 400, out
    err = ErrorOut.model_validate(out).error
    assert err.field == field
    assert words in err.message
    assert err.code == "invalid-input"
    assert api.store.list_decisions() == []


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"target": "x.example",', id="truncated"),
        pytest.param(b"{'target': 'x.example'}", id="single-quotes"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_malformed_json_is_400_on_body(api: ApiHarness, raw: bytes) -> None:
    status, out = await api.call(
        "POST", "/v1/decisions", data=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert out["error"]["field"] == "body"


async def test_oversized_body_is_413_on_body(api: ApiHarness) -> None:
    body = json.dumps(decision_body(reason="x" * 5000))
    status, out = await api.call(
        "POST", "/v1/decisions", data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 413
    assert out["error"] == {
        "field": "body",
        "message": "request body too large",
        "code": "body-too-large",
    }


async def test_error_message_never_echoes_the_target(api: ApiHarness) -> None:
    status, out = await api.call("POST", "/v1/decisions", json=decision_body(target="com"))
    assert status == 400
    assert "com" not in out["error"]["message"].replace("public suffix", "")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "gone"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"colour": "red"}, "colour"),
        ({"scope": "subnet"}, "scope"),
    ],
)
async def test_bad_query_is_400_naming_the_parameter(
    api: ApiHarness, params: dict[str, str], field: str
) -> None:
    status, out = await api.call("GET", "/v1/decisions", params=params)
    assert status == 400
    assert out["error"]["field"] == field


async def test_repeated_query_parameter_is_400(api: ApiHarness) -> None:
    status, out = await api.call("GET", "/v1/decisions?status=active&status=revoked")
    assert status == 400
    assert out["error"]["field"] == "status"


async def test_bad_audit_since_is_400(api: ApiHarness) -> None:
    status, out = await api.call("GET", "/v1/audit", "supervisor", params={"since": "last week"})
    assert status == 400
    assert out["error"]["field"] == "since"


async def test_unknown_path_and_method_are_json(api: ApiHarness) -> None:
    status, out = await api.call("GET", "/v1/nothing")
    assert status == 404
    assert out["error"]["code"] == "not-found"
    status, out = await api.call("DELETE", "/v1/decisions")
    assert status == 405
    assert out["error"]["code"] == "method-not-allowed"


# C0 (with tab, CR, LF, ESC), DEL, C1 (with NEL) and the Unicode line/paragraph separators.
CONTROLS = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
@pytest.mark.parametrize("field", ["reason", "reference", "category", "target"])
async def test_control_characters_in_a_decision_are_400_naming_the_field(
    api: ApiHarness, field: str, char: str
) -> None:
    value = {"reason": "hotline report", "reference": "CASE-1", "category": "csam"}
    value["target"] = "h1.example"
    body = decision_body(**{field: f"{value[field]}{char}Bcc: x@example.com"})
    status, out = await api.call("POST", "/v1/decisions", json=body)
    assert status == 400, out
    assert out["error"]["field"] == field
    assert "control characters" in out["error"]["message"]
    # At either end too, where stripping would otherwise have hidden it.
    status, out = await api.call(
        "POST", "/v1/decisions", json=decision_body(**{field: char + value[field]})
    )
    assert (status, out["error"]["field"]) == (400, field)
    assert api.store.list_decisions() == []


@pytest.mark.parametrize("char", ["\n", "\x85", "\u2028"])
async def test_control_characters_in_revoke_and_approve_reasons_are_400(
    api: ApiHarness, char: str
) -> None:
    _, made = await api.call("POST", "/v1/decisions", json=decision_body(source="public"))
    for action in ("approve", "revoke"):
        status, out = await api.call(
            "POST",
            f"/v1/decisions/{made['id']}/{action}",
            "supervisor2",
            json={"reason": f"ok{char}x"},
        )
        assert (status, out["error"]["field"]) == (400, "reason"), action
    assert api.store.get_decision(made["id"]).status.value == "pending-approval"


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (TicketTransition, {"to": "found-legal", "reason": "done\r\nX: y"}, "reason"),
        (
            TicketTransition,
            {
                "to": "found-legal",
                "reason": "ok",
                "authorisation": {"by": "Example Police", "reference": "LE\n1", "at": "2026-03-02"},
            },
            "authorisation.reference",
        ),
        (HeldDecision, {"reason": "checked\u2029"}, "reason"),
    ],
)
def test_control_characters_in_ticket_and_feed_bodies_are_400(
    model: type[BaseModel], body: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiError) as info:
        parse_body(json.dumps(body).encode(), model)
    assert (info.value.status, info.value.field) == (400, field)
    assert "control characters" in info.value.message


def test_ordinary_unicode_text_is_kept() -> None:
    given = {"by": "Polizei Köln", "reference": "LE-1/ü", "at": "2026-03-02"}
    body = {"to": "found-legal", "reason": "Meldung geprüft — «ok» 🙂", "authorisation": given}
    parsed = parse_body(json.dumps(body).encode(), TicketTransition)
    assert parsed.authorisation is not None
    assert (parsed.reason, parsed.authorisation.reference) == (body["reason"], given["reference"])
