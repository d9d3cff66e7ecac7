"""OTLP/HTTP trace ingestion: spans that follow the OpenTelemetry GenAI semantic conventions become LLM events.

Both OTLP encodings are read into the same dict shape (the OTLP JSON mapping: camelCase, hex ids), then mapped.
A span is a GenAI span when it carries a `gen_ai.*` request attribute; other spans are counted and ignored.
A GenAI span that does not make a valid event becomes a dead letter (position `otlp/<trace>/<span>`).

Our own attributes, for what the conventions do not cover: `llm_optimizer.config_version`, `.variant`,
`.request_key`, `.quality_score`, `.user_feedback`, `.cost_usd`, `.service` (else the resource's `service.name`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from llm_optimizer.errors import ValidationFailed

GENAI_MARKERS = ("gen_ai.request.model", "gen_ai.system", "gen_ai.provider.name", "gen_ai.operation.name")
STATUS_CODE_ERROR = 2
OURS = "llm_optimizer."


@dataclass(frozen=True)
class RawSpan:
    position: str  # otlp/<trace id>/<span id>: a dead letter of a re-sent span lands once
    service: str  # the resource's service.name
    raw: dict[str, Any]

    @property
    def attributes(self) -> dict[str, Any]:
        return _attributes(self.raw.get("attributes", []))


def parse_protobuf(body: bytes) -> dict[str, Any]:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise ValidationFailed(f"body is not an OTLP ExportTraceServiceRequest ({exc})") from None
    document = MessageToDict(request)
    # The JSON mapping of protobuf writes bytes as base64; OTLP JSON writes ids as hex.
    for span in _raw_spans(document):
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in span:
                span[key] = base64.b64decode(span[key]).hex()
    return document


def response_body(rejected: int, message: str, *, protobuf: bool) -> bytes | dict[str, Any]:
    """An ExportTraceServiceResponse, with `partialSuccess` when some spans were rejected."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return response.SerializeToString() if protobuf else MessageToDict(response)


def _raw_spans(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            yield from scope_spans.get("spans", [])


def spans(document: dict[str, Any]) -> Iterator[RawSpan]:
    """Every span of an export request, with its resource's service name."""
    if not isinstance(document, dict) or not isinstance(document.get("resourceSpans", []), list):
        raise ValidationFailed("body is not an OTLP trace export (expected an object with `resourceSpans`)")
    for resource_spans in document.get("resourceSpans", []):
        resource = _attributes(resource_spans.get("resource", {}).get("attributes", []))
        service = str(resource.get("service.name", "unknown_service"))
        for scope_spans in resource_spans.get("scopeSpans", []):
            for raw in scope_spans.get("spans", []):
                yield RawSpan(f"otlp/{raw.get('traceId', '')}/{raw.get('spanId', '')}", service, raw)


def is_genai(span: RawSpan) -> bool:
    return any(marker in span.attributes for marker in GENAI_MARKERS)


def event_document(span: RawSpan) -> dict[str, Any]:
    """The bare event document of a GenAI span; `parse_event` then validates it like any other event."""
    a = span.attributes
    trace_id, span_id = str(span.raw.get("traceId", "")), str(span.raw.get("spanId", ""))
    start_ns, end_ns = _nanos(span.raw, "startTimeUnixNano"), _nanos(span.raw, "endTimeUnixNano")
    if end_ns < start_ns:
        raise ValidationFailed(
            f"endTimeUnixNano = {end_ns}: before startTimeUnixNano ({start_ns})", field="endTimeUnixNano"
        )
    status, error_type = "ok", None
    if _status_code(span.raw.get("status", {})) == STATUS_CODE_ERROR:
        error_type = str(a.get("error.type", "error"))
        lowered = error_type.lower()
        status = "timeout" if "timeout" in lowered else "rate_limited" if "rate" in lowered else "error"
    document = {
        "event_id": f"otel-{trace_id}-{span_id}",
        "timestamp": datetime.fromtimestamp(end_ns / 1e9, UTC).isoformat(),
        "service": a.get(OURS + "service", span.service),
        "endpoint": a.get("gen_ai.operation.name"),
        "model": a.get("gen_ai.request.model", a.get("gen_ai.response.model")),
        "provider": a.get("gen_ai.provider.name", a.get("gen_ai.system")),
        "latency_ms": (end_ns - start_ns) / 1e6,
        "tokens_in": a.get("gen_ai.usage.input_tokens", a.get("gen_ai.usage.prompt_tokens", 0)),
        "tokens_out": a.get("gen_ai.usage.output_tokens", a.get("gen_ai.usage.completion_tokens", 0)),
        "status": status,
        "error_type": error_type,
        "attributes": {"trace_id": trace_id, "span_id": span_id},
    }
    if "gen_ai.response.model" in a and a["gen_ai.response.model"] != document["model"]:
        document["attributes"]["response_model"] = a["gen_ai.response.model"]
    for name in ("config_version", "variant", "request_key", "quality_score", "user_feedback", "cost_usd", "ttft_ms"):
        if OURS + name in a:
            document[name] = a[OURS + name]
    return {k: v for k, v in document.items() if v is not None}


def _nanos(raw: dict[str, Any], name: str) -> int:
    value = raw.get(name)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValidationFailed(f"{name} = {value!r}: not a time in nanoseconds", field=name, value=value) from None


def _attributes(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _value(item.get("value", {})) for item in items if "key" in item}


def _value(value: dict[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    try:
        if "intValue" in value:
            return int(value["intValue"])  # int64 is a string in OTLP JSON
        if "doubleValue" in value:
            return float(value["doubleValue"])
    except (TypeError, ValueError):
        raise ValidationFailed(f"attribute value {value!r}: not a number") from None
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_value(v) for v in value["arrayValue"].get("values", [])]
    return None


def _status_code(status: dict[str, Any]) -> int:
    code = status.get("code", 0)
    if isinstance(code, str):  # the JSON mapping may name the enum
        return {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}.get(code, 0)
    return int(code)
