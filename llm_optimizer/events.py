"""The per-request LLM event and the CloudEvents 1.0 envelope that carries it on the wire.

One model from the wire to the database to workflow payloads. Validation rejects what would poison the
statistics downstream: negative or non-finite numbers, naive timestamps, unknown enum values, oversized strings.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from llm_optimizer.errors import ValidationFailed

# CloudEvents `type` of the events this project reads, and of Sentinel's anomaly alerts (seed 001).
LLM_REQUEST_EVENT_TYPE = "io.llm-optimizer.request.completed.v1"
SENTINEL_ANOMALY_EVENT_TYPE = "com.llmdevops.sentinel.anomaly.v1"

MAX_LATENCY_MS = 3_600_000.0  # an hour: anything longer is a unit error, not a slow request
MAX_TOKENS = 10_000_000
MAX_COST_USD = 10_000.0
MAX_ATTRIBUTES = 64

Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Ms = Annotated[float, Field(ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False)]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Usd = Annotated[float, Field(ge=0, le=MAX_COST_USD, allow_inf_nan=False)]
Text = Annotated[str, StringConstraints(max_length=100_000)]
Score = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
AttributeValue = Annotated[str, StringConstraints(max_length=1024)] | bool | int | float | None


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

    event_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    timestamp: AwareDatetime
    service: Name
    endpoint: ShortText | None = None
    model: Name
    provider: Name
    config_version: Name | None = None
    variant: Variant | None = None
    latency_ms: Ms
    ttft_ms: Ms | None = Field(default=None, description="time to first token")
    tokens_in: Tokens = 0
    tokens_out: Tokens = 0
    cost_usd: Usd | None = Field(default=None, description="None: computed from the pricing catalog")
    status: Status = Status.ok
    error_type: ShortText | None = None
    quality_score: Score | None = None
    user_feedback: Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)] | None = Field(
        default=None, description="-1 (thumbs down) .. 1 (thumbs up); ratings are scaled into this range"
    )
    request_key: ShortText | None = Field(default=None, description="sticky key for config resolution")
    # Texts for quality evaluation: stored (redacted) only when `evaluation.store_text` allows it.
    request_text: Text | None = None
    response_text: Text | None = None
    reference_text: Text | None = Field(default=None, description="a known good answer, for reference metrics")
    attributes: dict[Annotated[str, StringConstraints(max_length=128)], AttributeValue] = Field(default_factory=dict)

    @field_validator("attributes")
    @classmethod
    def _bounded_attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes, got {len(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LLMEvent:
        if self.ttft_ms is not None and self.ttft_ms > self.latency_ms:
            raise ValueError(f"ttft_ms ({self.ttft_ms}) cannot exceed latency_ms ({self.latency_ms})")
        if self.status is Status.ok and self.error_type is not None:
            raise ValueError(f"error_type ({self.error_type!r}) is set but status is 'ok'")
        return self


class CloudEvent(Frozen):
    """A CloudEvents 1.0 envelope in structured mode (JSON)."""

    model_config = ConfigDict(extra="allow", frozen=True)  # extension attributes are allowed by the spec

    specversion: Literal["1.0"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    time: AwareDatetime | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    subject: str | None = None
    data: Any = None


class AnomalySeverity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class AnomalyAlert(Frozen):
    """Sentinel's `llm.sentinel.anomaly.detected` payload (seed 001), as the control loop reads it."""

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
        raise ValidationFailed(
            f"type = {envelope.type!r}: not an LLM request event (expected {LLM_REQUEST_EVENT_TYPE!r})",
            field="type",
            value=envelope.type,
        )
    data = envelope.data
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ValidationFailed(f"data: not valid JSON ({exc})", field="data") from None
    if not isinstance(data, dict):
        raise ValidationFailed(f"data = {type(data).__name__}: must be a JSON object", field="data")
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


class DeadLetter(Frozen):
    """Input that could not become an event, with where it came from and why it was refused."""

    source: str  # kafka, http, file, otlp
    position: str  # e.g. "llm-events/0/1234" or "events.jsonl:17": makes a redelivery land once
    reason: str
    raw: bytes
