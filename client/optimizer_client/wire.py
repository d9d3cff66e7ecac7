"""The wire schema of the client: the event it reports, the assignment and specs it reads, and the resolution of a
key, as the client's own copy (the client installs without the server, docs/architecture.md "Packaging").

The server's models (`llm_optimizer/events.py`, `configs.py`, `resolution.py`) are the reference:
tests/unit/test_client_wire.py holds this copy to them (the same event fields and limits as JSON Schema, a client
event validated by the server's `LLMEvent`, the same bucket and version for every key). The event carries the
declarative limits (lengths, patterns, ranges); the server's further checks (no NUL character, no boolean for a
number, ...) answer in `IngestResult.errors` with the field and value. What the client reads from the API ignores
fields it does not know, so that a newer server does not break an older client.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

LLM_REQUEST_EVENT_TYPE = "io.llm-optimizer.request.completed.v1"

Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")]
_Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
_ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256)]
_Text = Annotated[str, StringConstraints(max_length=100_000)]
_Ms = Annotated[float, Field(ge=0, le=3_600_000.0, allow_inf_nan=False)]
_Tokens = Annotated[int, Field(ge=0, le=10_000_000)]
_Usd = Annotated[float, Field(ge=0, le=10_000.0, allow_inf_nan=False)]
_Score = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
_Feedback = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]
_AttributeKey = Annotated[str, StringConstraints(max_length=128)]
_AttributeValue = Annotated[str, StringConstraints(max_length=1024)] | bool | int | float | None


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


class LLMEvent(BaseModel):
    """One LLM request, as the application saw it."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    event_id: _Id
    timestamp: AwareDatetime
    service: Name
    endpoint: _ShortText | None = None
    model: Name
    provider: Name
    config_version: Name | None = None
    variant: Variant | None = None
    latency_ms: _Ms
    ttft_ms: _Ms | None = Field(default=None, description="time to first token")
    # None: the source did not say (a stream sent without usage). Never read as 0: unknown usage is not free.
    tokens_in: _Tokens | None = None
    tokens_out: _Tokens | None = None
    cost_usd: _Usd | None = Field(default=None, description="None: computed from the pricing catalog")
    status: Status = Status.ok
    error_type: _ShortText | None = None
    quality_score: _Score | None = None
    user_feedback: _Feedback | None = Field(
        default=None, description="-1 (thumbs down) .. 1 (thumbs up); ratings are scaled into this range"
    )
    request_key: _ShortText | None = Field(default=None, description="sticky key for config resolution")
    request_text: _Text | None = None
    response_text: _Text | None = None
    reference_text: _Text | None = Field(default=None, description="a known good answer, for reference metrics")
    attributes: dict[_AttributeKey, _AttributeValue] = Field(default_factory=dict)


def event_json(event: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """The JSON object of an event: a model (this `LLMEvent`, or any model of the same fields) or a dict as it is."""
    if isinstance(event, BaseModel):
        return event.model_dump(mode="json", exclude_none=True)
    return dict(event)


def to_cloudevent(event: BaseModel | dict[str, Any], source: str = "llm-app") -> dict[str, Any]:
    """The structured-mode CloudEvent (as a JSON-ready dict) that carries `event`."""
    data = event_json(event)
    return {
        "specversion": "1.0",
        "id": data["event_id"],
        "source": source,
        "type": LLM_REQUEST_EVENT_TYPE,
        "time": data["timestamp"],
        "datacontenttype": "application/json",
        "subject": data["service"],
        "data": data,
    }


class _Read(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class GenerationParams(_Read):
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int | None = None
    max_tokens: int = 1024
    stop_sequences: list[str] = Field(default_factory=list)


class ConfigSpec(_Read):
    """What the application needs to make a call: the model, its provider, the prompt and the parameters."""

    model: str
    provider: str
    prompt_template: str | None = None
    params: GenerationParams = GenerationParams()
    extra: dict[str, Any] = Field(default_factory=dict, description="provider-specific options")


class Assignment(_Read):
    """The live assignment of a service: its active version, at most one canary with its traffic share, and the
    arms of an exploration (version -> share)."""

    service: str
    active_version: str
    canary_version: str | None = None
    canary_percent: float = 0.0
    explore: dict[str, float] = Field(default_factory=dict)


class AssignmentView(_Read):
    """`GET /api/v1/config/{service}/assignment`: enough to resolve any key locally until `ttl_s` passes."""

    assignment: Assignment
    specs: dict[str, ConfigSpec]
    ttl_s: float


class ResolvedConfig(_Read):
    """The config that serves a request: its version, which side of a split it is, and its spec."""

    service: str
    version: str
    variant: Variant
    spec: ConfigSpec


def bucket(service: str, key: str) -> float:
    """A stable position of `key` in [0, 100) for `service` (independent across services)."""
    digest = hashlib.sha256(f"{service}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def resolve(assignment: Assignment, key: str) -> tuple[str, Variant]:
    """The version that serves `key` and its variant. The canary serves the buckets below its percentage (growing it
    only adds keys), the exploration's arms the consecutive ranges after it, in version order."""
    position = bucket(assignment.service, key)
    if assignment.canary_version is not None and position < assignment.canary_percent:
        return assignment.canary_version, Variant.canary
    edge = assignment.canary_percent
    for version, share in sorted(assignment.explore.items()):
        edge += share
        if position < edge:
            return version, Variant.canary
    return assignment.active_version, Variant.baseline
