"""The one mapping of GenAI tracing dialects to LLM event fields: OTel GenAI semantic conventions (current and the
deprecated names still sent), OpenLLMetry (traceloop) and OpenInference (Arize).

Pure functions over a span's attributes, its name, its events' names and times: no I/O. `api/otlp.py` reads the
wire; this module says what a span is (a model call, or a span to ignore and why) and what its fields are.
The table in docs/integrations.md ("OpenTelemetry GenAI spans") is this module in prose; keep them together.

What a span does not say stays unknown (None): no token count is invented, so no cost is either.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A model call's operation, as the event's `endpoint`, by what each dialect names it.
MODEL_OPERATIONS = {
    # gen_ai.operation.name (OTel GenAI semantic conventions; OpenLLMetry >= 0.48 sends them too)
    "chat": "chat",
    "text_completion": "text_completion",
    "generate_content": "generate_content",
    "embeddings": "embeddings",
    # llm.request.type (OpenLLMetry before it sent gen_ai.operation.name)
    "completion": "text_completion",
    "embedding": "embeddings",
}
# Spans of the GenAI agent conventions (and each library's equivalents) that are not model calls, by the reason
# they are ignored (a label of `optimizer_otlp_spans_total`).
NOT_MODEL_OPERATIONS = {
    "invoke_agent": "agent",
    "create_agent": "agent",
    "invoke_workflow": "workflow",
    "execute_tool": "tool",
    "retrieval": "retriever",
    "rerank": "reranker",
}
OPENINFERENCE_MODEL_KINDS = {"LLM": None, "EMBEDDING": "embeddings"}  # None: decided by the attributes (below)
# traceloop.span.kind, set by the OpenLLMetry SDK's @workflow/@task/@agent/@tool decorators.
TRACELOOP_KINDS = {"workflow": "workflow", "task": "task", "agent": "agent", "tool": "tool"}

REQUEST_MODEL: tuple[str, ...] = ("gen_ai.request.model",)
RESPONSE_MODEL = ("gen_ai.response.model", "llm.model_name", "embedding.model_name")
# OpenInference puts the request's parameters (the model among them) in one JSON text.
INVOCATION_PARAMETERS = ("llm.invocation_parameters", "embedding.invocation_parameters")
PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.system", "llm.provider")
INPUT_TOKENS: tuple[str, ...] = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens")
INPUT_TOKENS += ("llm.token_count.prompt",)
OUTPUT_TOKENS: tuple[str, ...] = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
)
OUTPUT_TOKENS += ("llm.token_count.completion",)
# Span events that mark the first token (OpenInference) or the first streamed chunk (OpenLLMetry).
FIRST_TOKEN_EVENTS = ("First Token Stream Event", "gen_ai.content.completion.chunk")
TIME_TO_FIRST_CHUNK_S = "gen_ai.response.time_to_first_chunk"
# Any of these makes a span a GenAI one (a model call unless its operation or kind says otherwise).
MARKERS: tuple[str, ...] = (
    "gen_ai.operation.name",
    "llm.request.type",
    "openinference.span.kind",
    "traceloop.span.kind",
)
MARKERS += REQUEST_MODEL + RESPONSE_MODEL + PROVIDER

_CLASS_REPR = re.compile(r"^<class '(.+)'>$")  # error.type as some instrumentations write it: str(type(error))


@dataclass(frozen=True)
class ModelSpan:
    """A span that is a model call, with its operation as the event's endpoint (None when the span does not say)."""

    endpoint: str | None


@dataclass(frozen=True)
class Ignored:
    """A span that is not a model call: counted as ignored, with a short reason (a metric label)."""

    reason: str
    detail: str


@dataclass(frozen=True)
class ModelCall:
    """What a model-call span says, in event terms; None where the span does not say."""

    endpoint: str | None
    model: Any
    response_model: Any
    provider: Any
    tokens_in: Any
    tokens_out: Any
    ttft_ms: float | None
    error_type: str | None


def classify(attributes: Mapping[str, Any]) -> ModelSpan | Ignored | None:
    """Whether a span is a model call, a GenAI span that is not one (and why), or not a GenAI span at all (None).
    A library's own kind wins over the operation name, which wins over the bare presence of GenAI attributes."""
    kind = attributes.get("openinference.span.kind")
    if kind is not None:
        kind = str(kind).upper()
        if kind not in OPENINFERENCE_MODEL_KINDS:
            return Ignored(kind.lower(), f"openinference.span.kind = {kind!r}: not a model call")
        endpoint = OPENINFERENCE_MODEL_KINDS[kind] or ("text_completion" if "llm.prompts" in attributes else "chat")
        return ModelSpan(endpoint)
    traceloop_kind = attributes.get("traceloop.span.kind")
    if traceloop_kind in TRACELOOP_KINDS:
        return Ignored(TRACELOOP_KINDS[traceloop_kind], f"traceloop.span.kind = {traceloop_kind!r}: not a model call")
    for name in ("gen_ai.operation.name", "llm.request.type"):
        operation = attributes.get(name)
        if operation is None:
            continue
        if operation in MODEL_OPERATIONS:
            return ModelSpan(MODEL_OPERATIONS[operation])
        if operation in NOT_MODEL_OPERATIONS:
            return Ignored(NOT_MODEL_OPERATIONS[operation], f"{name} = {operation!r}: not a model call")
        if not any(attributes.get(m) is not None for m in REQUEST_MODEL + RESPONSE_MODEL):
            return Ignored("other_operation", f"{name} = {operation!r}: not a model call, and no model named")
        return ModelSpan(None)  # an operation this mapping does not know, on a span that names its model
    if any(marker in attributes for marker in MARKERS):
        return ModelSpan(None)
    return None


def model_call(
    attributes: Mapping[str, Any],
    endpoint: str | None,
    start_ns: int,
    events: Sequence[tuple[Any, int | None]],
    error_type: str | None,
) -> ModelCall:
    """The fields of a model-call span. `events` are its span events' (name, time in ns or None); `error_type` is
    what the span's status and events said failed (None for a success)."""
    parameters = _invocation_parameters(attributes)
    response_model = _first(attributes, RESPONSE_MODEL)
    model = _first(attributes, REQUEST_MODEL)
    if model is None:
        model = parameters.get("model", response_model)
    provider = _first(attributes, PROVIDER)
    tokens_in, tokens_out = _first(attributes, INPUT_TOKENS), _first(attributes, OUTPUT_TOKENS)
    if endpoint == "embeddings" and tokens_in is not None and tokens_out is None:
        tokens_out = 0  # an embedding answers no tokens: known, not missing
    return ModelCall(
        endpoint=endpoint,
        model=model,
        response_model=response_model if response_model != model else None,
        provider=provider.lower() if isinstance(provider, str) else provider,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        ttft_ms=_ttft_ms(attributes, start_ns, events),
        error_type=_error_type(error_type),
    )


def error_type(attributes: Mapping[str, Any], exception_types: Sequence[Any]) -> str:
    """What failed, for a span whose status is an error: `error.type`, else the first exception event's type."""
    if attributes.get("error.type") is not None:
        return str(attributes["error.type"])
    for kind in exception_types:
        if kind is not None:
            return str(kind)
    return "error"


def status_of(error: str | None) -> str:
    """The event status an error type stands for."""
    if error is None:
        return "ok"
    lowered = error.lower()
    if "timeout" in lowered or "timedout" in lowered:
        return "timeout"
    if "rate" in lowered or "429" in lowered:
        return "rate_limited"
    return "error"


def _error_type(error: str | None) -> str | None:
    if error is None:
        return None
    match = _CLASS_REPR.match(error)
    return match.group(1) if match else error


def _first(attributes: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        if attributes.get(name) is not None:
            return attributes[name]
    return None


def _invocation_parameters(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """OpenInference's parameters, when they are a JSON object; anything else says nothing (the model then comes
    from the response)."""
    text = _first(attributes, INVOCATION_PARAMETERS)
    if not isinstance(text, str):
        return {}
    try:
        parameters = json.loads(text)
    except ValueError:
        return {}
    return parameters if isinstance(parameters, dict) else {}


def _ttft_ms(attributes: Mapping[str, Any], start_ns: int, events: Sequence[tuple[Any, int | None]]) -> float | None:
    seconds = attributes.get(TIME_TO_FIRST_CHUNK_S)
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        return seconds * 1000
    times = [at for name, at in events if name in FIRST_TOKEN_EVENTS and at is not None]
    if not times:
        return None
    return max(min(times) - start_ns, 0) / 1e6
