"""Request and response shapes, and turning bad input into ``400`` errors naming the field.

Bodies are parsed strictly (no type coercion, unknown fields refused) with pydantic, which
also gives the JSON Schemas the OpenAPI document publishes: one definition serves both.
Query strings are parsed leniently on types (everything arrives as text) but still refuse
unknown and repeated parameters.

Free text (reasons, references, categories, targets) never holds control characters or
line breaks: such input is refused with ``400`` naming the field.

Every error the API returns has the shape ``{"error": {"field", "message", "code"}}``;
``field`` is ``null`` when the problem is not one input field. Messages never echo the
submitted value: it may be a list entry.

Dates and times (:data:`ZonedDatetime`) may come with a zone, without one, or as a plain
date; without a zone they are read in the API's configured time zone, which the app sets
for each request in :data:`REQUEST_ZONE`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from edgeagent.configtypes import JURISDICTION_PATTERN
from edgeagent.dates import parse_when
from edgeagent.model import Action, DecisionStatus, NoticeSource, Scope

M = TypeVar("M", bound=BaseModel)

_CLOCK_SKEW = timedelta(minutes=5)
_MAX_FIELD_NAME = 64


class ApiError(Exception):
    """An error answered as JSON: HTTP ``status``, machine ``code``, ``field`` or None."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        return {"error": {"field": self.field, "message": self.message, "code": self.code}}


def bad_input(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid-input", message, field)


# --- request bodies (strict)

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators. Free text goes
# into audit records, mail subjects and headers and CSV reports: a line break there splits
# a header or a record, so such text is refused, never cleaned up behind the sender's back.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _printable(value: object) -> object:
    if isinstance(value, str) and _CONTROL.search(value):
        raise ValueError("must not contain control characters or line breaks")
    return value


# A before-validator wraps the constrained type, so it sees the text as sent: a control
# character is refused even where ``strip_whitespace`` would remove it from the ends.
# (Listed after the constraints: listed first, pydantic checks ``min_length`` unstripped.)
_Printable = BeforeValidator(_printable)

Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), _Printable
]
OptionalText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000), _Printable]
Reference = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), _Printable
]
Category = Annotated[str, StringConstraints(max_length=64), _Printable]
Target = Annotated[str, StringConstraints(min_length=1, max_length=2048), _Printable]


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 lies before year 1 in UTC
        raise ValueError("out of range once converted to UTC") from None


# Scopes a person may decide on. ``url-hash`` entries come from hashed feeds only:
# nobody should type a digest into a decision.
DecisionScope = Literal["domain", "host", "url", "url-prefix", "ip", "cidr"]

REQUEST_ZONE: ContextVar[tzinfo] = ContextVar("edgeagent_request_zone", default=UTC)
"""The time zone for dates and times given without one (set per request by the app)."""


def _in_request_zone(value: object) -> object:
    if isinstance(value, str):
        try:
            return parse_when(value, REQUEST_ZONE.get())
        except ValueError:
            return value  # pydantic names the problem
    return value


# Converted to UTC as it is validated: the store keeps UTC, and a time at the edge of the
# calendar whose offset takes it past year 1 or 9999 is refused here, not failing later.
ZonedDatetime = Annotated[AwareDatetime, BeforeValidator(_in_request_zone), AfterValidator(_in_utc)]
"""ISO 8601 date-time with or without zone, or a date (its midnight), as UTC; see module
doc."""

BULK_MAX_TARGETS = 10_000
"""Targets one ``POST /v1/decisions/bulk`` may carry."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DecisionNotice(_Body):
    """What every decision of a notice shares (the case), whatever its target."""

    action: Action
    reason: Text = Field(description="why (shown in the audit log)")
    reference: Reference = Field(description="case reference (hotline or police reference)")
    source: NoticeSource = Field(description="who reported the material")
    notice_received_at: ZonedDatetime | None = Field(
        default=None, description="when the notice reached the ISP; default: now"
    )
    expires_at: ZonedDatetime | None = Field(default=None, description="optional end")
    category: Category = ""
    hold: bool | None = Field(
        default=None,
        description="law-enforcement hold: takedown notices reach the ISP's hosting team "
        "only, never the customer; default: on for the sources the config holds for "
        "(law-enforcement)",
    )
    jurisdiction: Annotated[str, StringConstraints(pattern=JURISDICTION_PATTERN)] = Field(
        default="", description="ISO 3166 code of the jurisdiction governing the case"
    )

    @field_validator("notice_received_at")
    @classmethod
    def _not_in_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value > datetime.now(UTC) + _CLOCK_SKEW:
            raise ValueError("must not be in the future")
        return value

    @field_validator("expires_at")
    @classmethod
    def _in_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value


class DecisionCreate(DecisionNotice):
    """``POST /v1/decisions``."""

    target: Target = Field(description="URL, host name, domain, address or prefix")
    scope: DecisionScope


class NoticeTargetIn(_Body):
    target: Target = Field(description="URL, host name, domain, address or prefix")
    scope: DecisionScope


class DecisionBulkCreate(DecisionNotice):
    """``POST /v1/decisions/bulk``: one notice (one case reference), many targets."""

    targets: list[NoticeTargetIn] = Field(min_length=1, max_length=BULK_MAX_TARGETS)


class TokenRevoke(_Body):
    """``POST /v1/tokens/{id}/revoke``."""

    reason: Text


class DecisionRevoke(_Body):
    """``POST /v1/decisions/{id}/revoke``."""

    reason: Text


class DecisionApprove(_Body):
    """``POST /v1/decisions/{id}/approve``."""

    reason: OptionalText = ""


# --- query strings (lenient on types, strict on names)


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DecisionListQuery(_Query):
    status: DecisionStatus | None = None
    source: NoticeSource | None = None
    scope: DecisionScope | None = None
    reference: Reference | None = Field(default=None, description="case reference")
    target: Target | None = Field(
        default=None,
        description="decisions on this URL, name, address or prefix (canonicalised), on its "
        "host and on URLs on that host",
    )
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=1_000_000_000)


class AuditQuery(_Query):
    since: ZonedDatetime | None = Field(
        default=None, description="ISO 8601, e.g. 2026-01-01T00:00:00Z or 2026-01-01"
    )
    limit: int = Field(default=1000, ge=1, le=1000)


class LookupQuery(_Query):
    target: Target


# --- responses (published in the OpenAPI document; tests validate real answers)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Out):
    field: str | None
    message: str
    code: str


class ErrorOut(_Out):
    error: ErrorDetail


class DecisionEventOut(_Out):
    at: datetime
    actor: str
    status: DecisionStatus
    reason: str


class DecisionOut(_Out):
    id: int
    target: str = Field(description="canonical target")
    target_ref: str = Field(description="short hash naming the target in logs")
    scope: Scope
    action: Action
    status: DecisionStatus
    reason: str
    reference: str
    source: NoticeSource
    notice_received_at: datetime
    created_at: datetime
    expires_at: datetime | None
    category: str
    actor: str
    approved_by: str | None
    history: list[DecisionEventOut]
    hold: bool = Field(description="law-enforcement hold: notices to the hosting team only")
    jurisdiction: str


class DecisionListOut(_Out):
    items: list[DecisionOut]
    limit: int
    offset: int
    next_offset: int | None


class StatusOut(_Out):
    leader: bool = Field(description="whether this agent leads the agents sharing its store")
    ha: dict[str, Any] = Field(
        description="role (leader or standby), epoch, the leader's name and every agent's role"
    )
    policy_version: int
    policy_loaded: bool
    entries: dict[str, Any] = Field(
        description="counts of the last policy built (version; during a rebuild, the one "
        "before policy_version): total, by_scope, by_source, allows, refused"
    )
    decisions: dict[str, int] = Field(description="decision counts by status")
    feeds: dict[str, Any]
    publishers: dict[str, Any]
    reload: dict[str, Any] = Field(
        default_factory=dict,
        description="last config reload: at (Unix time), applied and needs_restart (keys)",
    )
    database: dict[str, Any] = Field(
        default_factory=dict,
        description="the store's database as last checked: backend, reachable, error, "
        "primary (host:port written to), synchronous (a commit waits for a standby), "
        "synchronous_commit, standbys (name, state, synchronous, replay lag)",
    )


class FleetMemberOut(_Out):
    name: str
    enforcer: str = Field(description="rpz (resolvers) or proxy")
    kind: str = Field(description="bind, unbound, other, or proxy")
    region: str = Field(description='"" when the fleet has no regions')
    confirmed: int | None = Field(description="serial (resolvers) last seen served")
    lag: int | None = Field(description="versions behind the published one; null: unknown")
    canary_ok: bool | None = Field(description="last canary blocked; null: not checked yet")
    reachable: bool | None = Field(description="answered the last check; null: unknown")
    checked_at: float | None = Field(description="Unix time of the last check")


class FleetOut(_Out):
    members: list[FleetMemberOut]
    enforcers: dict[str, Any] = Field(
        description="per enforcer: pending_version (null when enforced), retries and "
        "next_retry_seconds (null when none is due)"
    )


class PendingDecisionOut(_Out):
    id: int
    scope: Scope
    action: Action
    source: NoticeSource
    reference: str
    actor: str
    created_at: datetime
    target_ref: str = Field(description="short hash naming the target")
    target: str | None = Field(default=None, description="only for analyst and above")


class PlanOut(_Out):
    pending_decisions: int = Field(description="every pending decision (the list may be shorter)")
    pending: list[PendingDecisionOut] = Field(description="the oldest pending decisions")
    plan: dict[str, Any] = Field(
        description="held feed generations with what each would change (counts; the "
        "entries for a supervisor) and the guardrails' refusals"
    )


class NoticeResultOut(_Out):
    index: int = Field(description="position in the request's targets")
    outcome: Literal["accepted", "pending", "refused"]
    target_ref: str = Field(description="short hash of the canonical target")
    reason: str = Field(description="why refused (empty otherwise)")
    decision: int | None = Field(description="the decision's id, unless refused")
    target: str | None = Field(description="canonical target, unless refused")


class NoticeOut(_Out):
    reference: str
    targets: int
    accepted: int
    pending: int
    refused: int
    results: list[NoticeResultOut]


class TokenOut(_Out):
    id: int
    name: str = Field(description="the holder: the actor in the audit log")
    role: str
    created_at: datetime
    revoked: bool


class TokenListOut(_Out):
    items: list[TokenOut]


class LookupMatchOut(_Out):
    layer: str
    effect: str
    scope: Scope
    target: str
    action: Action
    source: str
    reference: str
    category: str


class LookupOut(_Out):
    target_kind: str
    canonical: str
    policy_version: int
    dns: str
    proxy: str
    matches: list[LookupMatchOut]


class AuditRecordOut(_Out):
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    prev_hash: str
    row_hash: str


class AuditListOut(_Out):
    items: list[AuditRecordOut]


class AuditVerifyOut(_Out):
    ok: bool
    rows: int
    first_bad_row: int | None
    reason: str


class HealthOut(_Out):
    status: str


class ReadyOut(_Out):
    ready: bool
    reasons: list[str]
    leader: bool = Field(description="false on a standby (ready: it serves the API)")
    role: str = Field(description="leader or standby")


# --- parsing


def parse_body(raw: bytes, model: type[M]) -> M:
    """Parse a JSON request body into ``model`` or raise ``ApiError(400)`` naming the field.

    A key given twice in one object is refused: the parser would keep the last silently,
    while another reader of the same body (a proxy, a log) may well take the first.
    """
    if not raw.strip():
        raise bad_input("body", "a JSON object is required")
    repeated = _repeated_key(raw)
    if repeated is not None:
        raise bad_input(_field_name(repeated), "field given more than once")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _first_problem(exc) from None


def _repeated_key(raw: bytes) -> str | None:
    """The first key that appears twice in one JSON object of ``raw``, if any.

    ``None`` also when ``raw`` is not JSON: the model's own parse then says so.
    """
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not repeated:
                repeated.append(key)
            seen.add(key)
        return dict(items)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the stack
        return None
    return repeated[0] if repeated else None


def parse_query(pairs: Sequence[tuple[str, str]], model: type[M]) -> M:
    """Parse query parameters (all ``(name, value)`` pairs, repeats included) into ``model``."""
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in query:
            raise bad_input(_field_name(key), "parameter given more than once")
        query[key] = value
    try:
        return model.model_validate(query)
    except ValidationError as exc:
        raise _first_problem(exc) from None


def _first_problem(exc: ValidationError) -> ApiError:
    err = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    loc = err.get("loc", ())
    field = ".".join(str(p) for p in loc) if loc else "body"
    kind = err.get("type", "")
    message = str(err.get("msg", "invalid value"))
    if kind == "json_invalid":
        message = "malformed JSON"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = "a JSON object is required"
    elif kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing":
        message = "required"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return bad_input(_field_name(field), message)


def _field_name(name: str) -> str:
    # The name comes from the client: keep it short. It is echoed only to that client.
    return name if len(name) <= _MAX_FIELD_NAME else name[:_MAX_FIELD_NAME] + "…"
