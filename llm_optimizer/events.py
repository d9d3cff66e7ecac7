"""The per-request LLM event and the CloudEvents 1.0 envelope that carries it on the wire.

One model from the wire to the database to workflow payloads. Validation rejects what would poison the
statistics downstream: negative or non-finite numbers, naive timestamps, unknown enum values, oversized strings;
and everything Postgres would refuse to store, so that no accepted event can stop a batch from landing: a NUL
character in any string or attribute (key or value), a non-finite number anywhere, an instant that is not between
0001-01-01 and 9999-12-31 once converted to UTC (what both Python and Postgres hold).

Two rules make ambiguous input an error rather than a guess (both decoding paths apply them alike):
- a number field (latency, tokens, cost, score, feedback) refuses a boolean: `true` is not 1;
- `timestamp` (and a CloudEvent's `time`) must be RFC 3339 text with a UTC offset: a bare number (or a text that
  is only a number) is refused, because nothing says whether it counts seconds or milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, core_schema

from llm_optimizer.errors import Undecodable, ValidationFailed

# CloudEvents `type` of the events this project reads, and of Sentinel's anomaly alerts (`docs/integrations.md`).
LLM_REQUEST_EVENT_TYPE = "io.llm-optimizer.request.completed.v1"
SENTINEL_ANOMALY_EVENT_TYPE = "com.llmdevops.sentinel.anomaly.v1"

MAX_LATENCY_MS = 3_600_000.0  # an hour: anything longer is a unit error, not a slow request
MAX_TOKENS = 10_000_000
MAX_COST_USD = 10_000.0
MAX_ATTRIBUTES = 64
MAX_POSITION = 512  # characters of a dead letter's position: (source, position) is a unique btree key

NUL_REASON = "contains a NUL character (\\u0000), which Postgres cannot store"
_NUMBER_TEXT = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(NUL_REASON)
    return value


def _not_bool(value: Any) -> Any:
    """Before a number is read: pydantic would take `true` as 1, which no client means."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


def _no_bare_number(value: Any) -> Any:
    """Before an instant is read: pydantic would take 12345 as seconds (1970) and 1.7e12 as milliseconds."""
    if isinstance(value, bool | int | float) or (isinstance(value, str) and _NUMBER_TEXT.match(value)):
        raise ValueError("a bare number is ambiguous (seconds? milliseconds?): send RFC 3339 text with a UTC offset")
    return value


def _in_utc_range(value: datetime) -> datetime:
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("outside 0001-01-01 .. 9999-12-31 once converted to UTC") from None
    return value


NoNul = AfterValidator(_no_nul)
NotBool = BeforeValidator(_not_bool)
Instant = Annotated[AwareDatetime, BeforeValidator(_no_bare_number), AfterValidator(_in_utc_range)]

# No NUL check: the pattern already leaves no room for one (and every Python check costs on the hot path).
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")]
# Each rule without its Python check (`_Bare*`), shared with the one-pass validator below.
_BareId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
_BareShortText = Annotated[str, StringConstraints(min_length=1, max_length=256)]
_BareMs = Annotated[float, Field(ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False)]
_BareTokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
_BareUsd = Annotated[float, Field(ge=0, le=MAX_COST_USD, allow_inf_nan=False)]
_BareText = Annotated[str, StringConstraints(max_length=100_000)]
_BareScore = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
_BareFeedback = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]
_AttributeKey = Annotated[str, StringConstraints(max_length=128)]
_AttributeText = Annotated[str, StringConstraints(max_length=1024)]

ShortText = Annotated[_BareShortText, NoNul]
Ms = Annotated[_BareMs, NotBool]
Tokens = Annotated[_BareTokens, NotBool]
Usd = Annotated[_BareUsd, NotBool]
Text = Annotated[_BareText, NoNul]
Score = Annotated[_BareScore, NotBool]
AttributeValue = _AttributeText | bool | int | float | None


def storable_problem(value: Any, path: str) -> str | None:
    """`path = value: why` for the first thing in a JSON-like value that Postgres cannot store (a NUL in a string
    or a key, a non-finite number), else None. Walks nested lists and objects."""
    if isinstance(value, str):
        return f"{path} = {_shown(value)}: {NUL_REASON}" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} = {value!r}: not a finite number"
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return f"{path} key {_shown(key)}: {NUL_REASON}"
            if problem := storable_problem(item, f"{path}[{key!r}]"):
                return problem
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if problem := storable_problem(item, f"{path}[{i}]"):
                return problem
    elif isinstance(value, BaseModel):
        return storable_problem(value.model_dump(), path)
    return None


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


class Status(StrEnum):
    ok = "ok"
    error = "error"
    timeout = "timeout"
    rate_limited = "rate_limited"
    cancelled = "cancelled"


class Variant(StrEnum):
    """Which side of a split served the request."""

    baseline = "baseline"
    canary = "canary"
    experiment = "experiment"


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class LLMEvent(Frozen):
    """One LLM request, as the application saw it."""

    event_id: Annotated[_BareId, NoNul]
    timestamp: Instant
    service: Name
    endpoint: ShortText | None = None
    model: Name
    provider: Name
    config_version: Name | None = None
    variant: Variant | None = None
    latency_ms: Ms
    ttft_ms: Ms | None = Field(default=None, description="time to first token")
    # None: the source did not say (a stream sent without usage). Never read as 0: unknown usage is not free.
    tokens_in: Tokens | None = None
    tokens_out: Tokens | None = None
    cost_usd: Usd | None = Field(default=None, description="None: computed from the pricing catalog")
    status: Status = Status.ok
    error_type: ShortText | None = None
    quality_score: Score | None = None
    user_feedback: Annotated[_BareFeedback, NotBool] | None = Field(
        default=None, description="-1 (thumbs down) .. 1 (thumbs up); ratings are scaled into this range"
    )
    request_key: ShortText | None = Field(default=None, description="sticky key for config resolution")
    # Texts for quality evaluation: stored (redacted) only when `evaluation.store_text` allows it.
    request_text: Text | None = None
    response_text: Text | None = None
    reference_text: Text | None = Field(default=None, description="a known good answer, for reference metrics")
    attributes: dict[_AttributeKey, AttributeValue] = Field(default_factory=dict)

    @field_validator("attributes")
    @classmethod
    def _bounded_attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes, got {len(value)}")
        # Stored as JSONB, which holds neither a NUL nor NaN/Infinity (the JSON reader of the one-pass parse lets
        # NaN through). The reason names the attribute.
        if problem := storable_problem(value, "attributes"):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LLMEvent:
        return _check_consistent(self)


def _check_consistent(event: Any) -> Any:
    """The rules between fields of an event (of `LLMEvent` or of the one-pass validator's model)."""
    if event.ttft_ms is not None and event.ttft_ms > event.latency_ms:
        raise ValueError(f"ttft_ms ({event.ttft_ms}) cannot exceed latency_ms ({event.latency_ms})")
    if event.status is Status.ok and event.error_type is not None:
        raise ValueError(f"error_type ({event.error_type!r}) is set but status is 'ok'")
    return event


class CloudEvent(Frozen):
    """A CloudEvents 1.0 envelope in structured mode (JSON)."""

    model_config = ConfigDict(extra="allow", frozen=True)  # extension attributes are allowed by the spec

    specversion: Literal["1.0"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    time: Instant | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    subject: str | None = None
    data: Any = None


# ---- The one-pass validator: the same decisions from JSON bytes, without a Python call per field ----
#
# `LLMEvent`'s NUL, boolean, bare-number and range checks are Python functions that pydantic calls for every field
# of every message (they doubled the per-message decoding time). The one-pass validator applies the same rules in
# pydantic's Rust core alone, some of them more strictly; whatever it refuses goes to the general path (`LLMEvent`),
# which then accepts it or names the reason. It only accepts what the general path accepts, as the same `LLMEvent`
# (`tests/unit/test_decoder.py` and `tests/unit/test_columnar.py` hold the two to that on generated input):
# - NUL: JSON text can only hold one as the escape `\u0000` (a raw control character is invalid JSON), so a
#   message whose bytes have no such escape has no NUL anywhere (`one_pass_event`);
# - booleans in number fields: the numbers are strict, which takes JSON numbers only (`true` is refused, and so is
#   a number in a string, which `LLMEvent` would read);
# - bare-number instants and the range: an instant must be text beginning with a year from 0002 to 9998 and a
#   dash, which no bare number does and which no UTC offset can carry out of 0001..9999 (years 0001 and 9999 are
#   left to `LLMEvent`);
# - attributes: at most `MAX_ATTRIBUTES` entries (pairs, a repeated key counted each time), and a float attribute
#   must be finite.

# Years 0002 to 9998 followed by a dash (the rest of the text is read by pydantic's datetime parser).
_ONE_PASS_INSTANT_TEXT = r"^(000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-"


class _TextFirst:
    """Read as text with this pattern first (whitespace kept), then as the annotated type: all in pydantic-core."""

    def __init__(self, pattern: str):
        self.pattern = pattern

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        text = core_schema.str_schema(pattern=self.pattern, strip_whitespace=False, strict=True)
        return core_schema.chain_schema([text, handler(source)])


_OnePassInstant = Annotated[AwareDatetime, _TextFirst(_ONE_PASS_INSTANT_TEXT)]
# orjson (the general path's reader) reads an integer beyond 64 bits as a float: so does this (the union's float).
_OnePassInt = Annotated[int, Field(ge=-(2**63), le=2**64 - 1)]


class _OnePassEvent(Frozen):
    """`LLMEvent`'s fields with the one-pass rules (`tests/unit/test_events.py` holds the two to the same fields)."""

    event_id: _BareId
    timestamp: _OnePassInstant
    service: Name
    endpoint: _BareShortText | None = None
    model: Name
    provider: Name
    config_version: Name | None = None
    variant: Variant | None = None
    latency_ms: Annotated[_BareMs, Strict()]
    ttft_ms: Annotated[_BareMs, Strict()] | None = None
    tokens_in: Annotated[_BareTokens, Strict()] | None = None
    tokens_out: Annotated[_BareTokens, Strict()] | None = None
    cost_usd: Annotated[_BareUsd, Strict()] | None = None
    status: Status = Status.ok
    error_type: _BareShortText | None = None
    quality_score: Annotated[_BareScore, Strict()] | None = None
    user_feedback: Annotated[_BareFeedback, Strict()] | None = None
    request_key: _BareShortText | None = None
    request_text: _BareText | None = None
    response_text: _BareText | None = None
    reference_text: _BareText | None = None
    attributes: Annotated[
        dict[_AttributeKey, _AttributeText | bool | _OnePassInt | Annotated[float, Field(allow_inf_nan=False)] | None],
        Field(max_length=MAX_ATTRIBUTES),
    ] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> _OnePassEvent:
        return _check_consistent(self)


class _OnePassCloudEvent(CloudEvent):
    """A structured CloudEvent whose data is a complete LLM event."""

    type: Literal["io.llm-optimizer.request.completed.v1"]
    time: _OnePassInstant | None = None
    data: _OnePassEvent


_ONE_PASS_EVENT = _OnePassEvent.__pydantic_validator__  # called directly: `model_validate_json` costs 0.3 µs more
_ONE_PASS_CLOUDEVENT = _OnePassCloudEvent.__pydantic_validator__


def one_pass_event(value: bytes) -> LLMEvent | None:
    """The event of a bare event's or a structured LLM CloudEvent's JSON bytes, validated straight from the bytes
    without a Python call per field; None for anything this validator is not sure of (any invalid input, a NUL
    escape, an event id or time only on the envelope, ...): the general path then decides it. What it accepts, the
    general path accepts as the same event."""
    if b"\\u0000" in value:
        return None
    try:
        if b'"specversion"' in value:
            event = _ONE_PASS_CLOUDEVENT.validate_json(value).data
        else:
            event = _ONE_PASS_EVENT.validate_json(value)
    except ValidationError:
        return None
    # The same fields, holding what `LLMEvent` makes of them: the instance becomes the `LLMEvent` it stands for.
    # (pydantic-core uses a model's own validator wherever the model appears in a schema, so other rules cannot
    # make an `LLMEvent`; both classes derive from `Frozen` and add no slots, so their instances are laid out alike.)
    object.__setattr__(event, "__class__", LLMEvent)
    return event


class AnomalySeverity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class AnomalyAlert(Frozen):
    """Sentinel's `llm.sentinel.anomaly.detected` payload (`docs/integrations.md`), as the control loop reads it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    anomaly_type: ShortText
    severity: AnomalySeverity
    affected_services: list[Name] = Field(min_length=1)
    metrics: dict[str, Any] = Field(default_factory=dict)
    root_cause_hypothesis: list[str] = Field(default_factory=list)
    recommended_actions: list[str] = Field(default_factory=list)


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """`field = value: reason` for each problem, so a dead letter says exactly what was wrong."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(event)"
        value = err.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        parts.append(f"{prefix}{loc} = {shown}: {err['msg']}")
    return "; ".join(parts)


def parse_event(raw: dict[str, Any] | str | bytes) -> LLMEvent:
    """Validate one bare LLM event (a dict or JSON text), raising `ValidationFailed` naming field and value.

    >>> parse_event({"event_id": "e1", "timestamp": "2026-01-01T00:00:00Z", "service": "chat",
    ...              "model": "gpt-4o-mini", "provider": "openai", "latency_ms": 420}).latency_ms
    420.0
    """
    try:
        if isinstance(raw, str | bytes):
            return LLMEvent.model_validate_json(raw)
        return LLMEvent.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise ValidationFailed(
            describe_validation_error(exc),
            field=".".join(str(p) for p in first["loc"]) or None,
            value=first.get("input") if not isinstance(first.get("input"), dict) else None,
        ) from None


def event_from_cloudevent(envelope: CloudEvent) -> LLMEvent:
    """The LLM event inside a CloudEvent; the envelope's id and time fill the event's when it has none."""
    if envelope.type != LLM_REQUEST_EVENT_TYPE:
        raise Undecodable(
            DeadLetterCode.invalid_envelope,
            f"type = {envelope.type!r}: not an LLM request event (expected {LLM_REQUEST_EVENT_TYPE!r})",
            field="type",
            value=envelope.type,
        )
    data = envelope.data
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise Undecodable(DeadLetterCode.not_json, f"data: not valid JSON ({exc})", field="data") from None
    if not isinstance(data, dict):
        raise Undecodable(
            DeadLetterCode.not_an_object, f"data = {type(data).__name__}: must be a JSON object", field="data"
        )
    data = {"event_id": envelope.id, **data}
    if envelope.time is not None and "timestamp" not in data:
        data["timestamp"] = envelope.time.isoformat()
    return parse_event(data)


def to_cloudevent(event: LLMEvent, source: str = "llm-app") -> dict[str, Any]:
    """The structured-mode CloudEvent (as a JSON-ready dict) that carries `event`."""
    return {
        "specversion": "1.0",
        "id": event.event_id,
        "source": source,
        "type": LLM_REQUEST_EVENT_TYPE,
        "time": event.timestamp.isoformat(),
        "datacontenttype": "application/json",
        "subject": event.service,
        "data": event.model_dump(mode="json", exclude_none=True),
    }


class DeadLetterCode(StrEnum):
    """Why an input was dead-lettered, as a stable word: what metrics, the API and queries group by (a few values,
    whatever the input), beside the reason's text, which names the field and the value for a person."""

    no_body = "no_body"  # a Kafka tombstone
    too_large = "too_large"  # larger than kafka.max_message_bytes
    not_utf8 = "not_utf8"  # the body or a ce_ header
    not_json = "not_json"  # the body, or a CloudEvent's data given as text
    not_an_object = "not_an_object"  # JSON, but not an object (the body, or a CloudEvent's data)
    invalid_envelope = "invalid_envelope"  # the CloudEvent around the event (its attributes, its type)
    invalid_event = "invalid_event"  # the event model refused a field
    invalid_anomaly = "invalid_anomaly"  # a Sentinel alert the anomaly model refused
    invalid_span = "invalid_span"  # an OTLP span whose own fields are malformed (api/otlp.py)
    db_refused = "db_refused"  # Postgres refused what the model accepted (storage/events_repo.py)
    unknown = "unknown"  # only rows dead-lettered before codes existed whose text says nothing more (migration 0011)


def dead_letter_code(error: ValidationFailed) -> DeadLetterCode:
    """The code of a refusal met while decoding an event: the step's when it says one, else the event model's."""
    return error.code if isinstance(error, Undecodable) else DeadLetterCode.invalid_event


class DeadLetter(Frozen):
    """Input that could not become an event, with where it came from and why it was refused (a code and a text)."""

    source: str  # kafka, http, file, otlp
    position: str  # e.g. "llm-events/0/1234" or "events.jsonl:17": makes a redelivery land once
    index: int | None = None  # its place in the request that carried it (an HTTP batch's); not stored
    code: DeadLetterCode
    reason: str
    raw: bytes

    @field_validator("source", "position", "reason", mode="before")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        """A dead letter must always land, or the message it stands for would stop its batch: texts are made
        storable (NUL and unpaired surrogates escaped), and a position too long for the unique index keeps its
        head and a digest of the whole, so that it still tells positions apart."""
        if not isinstance(value, str):
            return value
        if "\x00" in value:
            value = value.replace("\x00", "\\x00")
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        if info.field_name == "position" and len(value) > MAX_POSITION:
            digest = hashlib.sha256(value.encode()).hexdigest()[:16]
            value = f"{value[: MAX_POSITION - 17]}#{digest}"
        return value
