"""OTLP/HTTP trace ingestion: model-call spans, in any GenAI dialect teams already emit, become LLM events.

Both OTLP encodings are read into the same dict shape (the OTLP JSON mapping: camelCase, hex ids), then sorted, every
span into one outcome (`optimizer_otlp_spans_total{outcome,reason}` counts them, the export answer says them):
- a model call (chat, completion, embeddings: `llm_optimizer.genai_dialects` reads the OTel GenAI conventions,
  OpenLLMetry and OpenInference) becomes an event, landed or found a duplicate;
- a model call that does not make a valid event becomes a dead letter (position `otlp/<trace>/<span>`, or
  `otlp/invalid/<hash of the span>` when its ids are not hex), counted in `partialSuccess.rejectedSpans`;
- any other span (agent, workflow, tool, retriever, chain spans; spans that are not GenAI at all) is ignored, with
  the reason.
A request whose shape is not an OTLP export (a list where an object belongs, a span that is not an object) is
refused whole with the path of the first problem; a span whose own fields are malformed (attributes, ids, times,
status, events, a NUL character in a value it carries) is refused alone, with the field named: a dead letter of
code `invalid_span` (one the event model then refuses is `invalid_event`, as on every path).

Our own attributes, for what the conventions do not cover: `llm_optimizer.config_version`, `.variant`,
`.request_key`, `.quality_score`, `.user_feedback`, `.cost_usd`, `.ttft_ms`, `.service` (else the resource's
`service.name`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from llm_optimizer import genai_dialects
from llm_optimizer.errors import ValidationFailed

STATUS_CODE_ERROR = 2
OURS = "llm_optimizer."
_HEX = re.compile(r"[0-9a-fA-F]+")
_UINT64 = 2**64


@dataclass(frozen=True)
class RawSpan:
    position: str  # otlp/<trace id>/<span id>: a dead letter of a re-sent span lands once
    service: Any  # the resource's service.name (checked when the span becomes an event)
    raw: dict[str, Any]

    @cached_property  # read to sort the span, then to map it
    def attributes(self) -> dict[str, Any]:
        return _attributes(self.raw.get("attributes", []), "attributes")


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


@dataclass
class Sorted:
    """Every span of an export in one outcome: an event document to decode, a dead letter, or ignored (by reason)."""

    documents: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (position, event document)
    refused: list[tuple[RawSpan, str]] = field(default_factory=list)  # (span, reason): DeadLetterCode.invalid_span
    ignored: Counter[str] = field(default_factory=Counter)


def sort_spans(found: list[RawSpan]) -> Sorted:
    """Model calls become event documents (or refusals naming the field); other spans are ignored with a reason."""
    result = Sorted()
    for span in found:
        try:
            kind = genai_dialects.classify(span.attributes)
            if kind is None:
                result.ignored["not_genai"] += 1
            elif isinstance(kind, genai_dialects.Ignored):
                result.ignored[kind.reason] += 1
            else:
                result.documents.append((span.position, event_document(span, kind.endpoint)))
        except ValidationFailed as exc:
            result.refused.append((span, str(exc)))
    return result


def answer(landed: int, duplicates: int, dead_letters: list[tuple[str, str]], ignored: Counter[str]) -> str:
    """What became of an export's spans, for `partialSuccess.errorMessage`: the counts, then the first refusals."""
    parts = [f"landed {landed}", f"duplicate {duplicates}", f"dead-lettered {len(dead_letters)}"]
    kinds = ", ".join(f"{reason} {n}" for reason, n in sorted(ignored.items()))
    parts.append(f"ignored {sum(ignored.values())}" + (f" ({kinds})" if kinds else ""))
    refusals = "; ".join(f"{position}: {reason}" for position, reason in dead_letters[:10])
    more = f" (and {len(dead_letters) - 10} more)" if len(dead_letters) > 10 else ""
    return ", ".join(parts) + (f". Rejected: {refusals}{more}" if refusals else "")


def response_body(rejected: int, message: str, *, protobuf: bool) -> bytes | dict[str, Any]:
    """An ExportTraceServiceResponse. `partialSuccess` when some spans were rejected (dead-lettered), or, with
    `rejectedSpans` 0 (a warning, in OTLP's terms), when some were ignored; unset when every span landed."""
    response = ExportTraceServiceResponse()
    if message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return response.SerializeToString() if protobuf else MessageToDict(response)


def _raw_spans(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            yield from scope_spans.get("spans", [])


def _objects(parent: dict[str, Any], name: str, where: str) -> list[dict[str, Any]]:
    items = parent.get(name, [])
    if not isinstance(items, list):
        raise ValidationFailed(f"{where} = {_show(items)}: expected a list", field=where, value=items)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValidationFailed(
                f"{where}[{index}] = {_show(item)}: expected an object", field=f"{where}[{index}]", value=item
            )
    return items


def spans(document: Any) -> list[RawSpan]:
    """Every span of an export request, with its resource's service name. The whole shape is checked first (every
    resource too, spans or not), so that a malformed request is refused whole before anything of it is used."""
    if not isinstance(document, dict):
        raise ValidationFailed(f"expected an object with `resourceSpans`, got {_show(document)}")
    found = []
    for i, resource_spans in enumerate(_objects(document, "resourceSpans", "resourceSpans")):
        where = f"resourceSpans[{i}]"
        resource = resource_spans.get("resource", {})
        if not isinstance(resource, dict):
            raise ValidationFailed(f"{where}.resource = {_show(resource)}: expected an object")
        attributes = _attributes(resource.get("attributes", []), f"{where}.resource.attributes")
        service = attributes.get("service.name", "unknown_service")
        for j, scope_spans in enumerate(_objects(resource_spans, "scopeSpans", f"{where}.scopeSpans")):
            for raw in _objects(scope_spans, "spans", f"{where}.scopeSpans[{j}].spans"):
                found.append(RawSpan(_position(raw), service, raw))
    return found


def _position(raw: dict[str, Any]) -> str:
    """`otlp/<trace>/<span>` for well-formed ids; otherwise a hash of the span, so that the position is safe to
    store (no NUL, bounded) and a re-sent span still dead-letters once."""
    if _is_id(raw.get("traceId"), 32) and _is_id(raw.get("spanId"), 16):
        return f"otlp/{raw['traceId']}/{raw['spanId']}"
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=repr).encode()).hexdigest()[:32]
    return f"otlp/invalid/{digest}"


def event_document(span: RawSpan, endpoint: str | None) -> dict[str, Any]:
    """The bare event document of a model-call span; `parse_event` then validates it like any other event. Fields
    the span does not carry (tokens of a stream sent without usage) are left out, so they stay unknown."""
    a = span.attributes
    trace_id, span_id = _id(span.raw, "traceId", 32), _id(span.raw, "spanId", 16)
    start_ns, end_ns = _nanos(span.raw, "startTimeUnixNano"), _nanos(span.raw, "endTimeUnixNano")
    if end_ns < start_ns:
        raise ValidationFailed(
            f"endTimeUnixNano = {end_ns}: before startTimeUnixNano ({start_ns})", field="endTimeUnixNano"
        )
    events = _span_events(span.raw)
    error = None
    if _status_code(span.raw.get("status", {})) == STATUS_CODE_ERROR:
        exceptions = [attributes.get("exception.type") for name, _, attributes in events if name == "exception"]
        error = genai_dialects.error_type(a, exceptions)
    call = genai_dialects.model_call(a, endpoint, start_ns, [(name, at) for name, at, _ in events], error)
    document = {
        "event_id": f"otel-{trace_id}-{span_id}",
        "timestamp": datetime.fromtimestamp(end_ns / 1e9, UTC).isoformat(),
        "service": a.get(OURS + "service", span.service),
        "endpoint": call.endpoint,
        "model": call.model,
        "provider": call.provider,
        "latency_ms": (end_ns - start_ns) / 1e6,
        "ttft_ms": call.ttft_ms,
        "tokens_in": call.tokens_in,
        "tokens_out": call.tokens_out,
        "status": genai_dialects.status_of(call.error_type),
        "error_type": call.error_type,
        "attributes": {"trace_id": trace_id, "span_id": span_id},
    }
    if call.response_model is not None:
        document["attributes"]["response_model"] = call.response_model
    for name in ("config_version", "variant", "request_key", "quality_score", "user_feedback", "cost_usd", "ttft_ms"):
        if OURS + name in a:
            document[name] = a[OURS + name]
    document = {k: v for k, v in document.items() if v is not None}
    _refuse_nul(document, "")
    return document


def _span_events(raw: dict[str, Any]) -> list[tuple[Any, int | None, dict[str, Any]]]:
    """(name, time in ns, attributes) of each of a span's events; the time None when the event has none (0 is
    protobuf's default, which its JSON mapping leaves out)."""
    found = []
    for index, event in enumerate(_objects(raw, "events", "events")):
        where = f"events[{index}]"
        found.append(
            (
                event.get("name"),
                _nanos(event, "timeUnixNano", where) if event.get("timeUnixNano") not in (None, 0, "0") else None,
                _attributes(event.get("attributes", []), f"{where}.attributes"),
            )
        )
    return found


def _is_id(value: Any, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and _HEX.fullmatch(value) is not None


def _id(raw: dict[str, Any], name: str, length: int) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not _is_id(value, length):
        raise ValidationFailed(f"{name} = {_show(value)}: expected {length} hex digits", field=name, value=_show(value))
    return value


def _refuse_nul(value: Any, where: str) -> None:
    """Postgres stores no NUL character in text: a span carrying one is refused here, naming the field."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationFailed(f"{where} = {_show(value)}: contains a NUL character", field=where, value=None)
    elif isinstance(value, dict):  # the keys are this module's own names
        for key, item in value.items():
            _refuse_nul(item, f"{where}.{key}".lstrip("."))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_nul(item, f"{where}[{index}]")


def _nanos(raw: dict[str, Any], name: str, where: str = "") -> int:
    """A fixed64 time: an integer (or its decimal string, the OTLP JSON mapping) within 0 .. 2**64 - 1."""
    value = raw.get(name)
    name = f"{where}.{name}" if where else name
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    else:
        number = -1
    if not 0 <= number < _UINT64:
        raise ValidationFailed(
            f"{name} = {_show(value)}: not a time in nanoseconds (an integer from 0 to 2**64 - 1)",
            field=name,
            value=_show(value),
        )
    return number


def _attributes(items: Any, where: str) -> dict[str, Any]:
    if not isinstance(items, list):
        raise ValidationFailed(f"{where} = {_show(items)}: expected a list of {{key, value}} objects", field=where)
    attributes = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValidationFailed(f"{where}[{index}] = {_show(item)}: expected a {{key, value}} object", field=where)
        if "key" not in item:
            continue
        key = item["key"]
        if not isinstance(key, str):
            raise ValidationFailed(f"{where}[{index}].key = {_show(key)}: expected a string", field=where)
        attributes[key] = _value(item.get("value", {}), f"{where}[{index}] ({key}).value")
    return attributes


def _value(value: Any, where: str) -> Any:
    """An AnyValue of the OTLP JSON mapping; kinds this product does not read (bytes, key-value lists) are None."""
    if not isinstance(value, dict):
        raise ValidationFailed(f"{where} = {_show(value)}: expected an AnyValue object", field=where)
    if "stringValue" in value:
        return _typed(value["stringValue"], str, f"{where}.stringValue")
    if "intValue" in value:  # int64 is a string in OTLP JSON, a number from some encoders
        number = value["intValue"]
        if isinstance(number, int) and not isinstance(number, bool):
            return number
        if isinstance(number, str) and re.fullmatch(r"-?[0-9]{1,19}", number):
            return int(number)
        raise ValidationFailed(f"{where}.intValue = {_show(number)}: not an int64", field=where)
    if "doubleValue" in value:
        number = value["doubleValue"]
        if isinstance(number, int | float) and not isinstance(number, bool):
            return float(number)
        if number in ("NaN", "Infinity", "-Infinity"):  # the protobuf JSON mapping's names; the event refuses them
            return float(number)
        raise ValidationFailed(f"{where}.doubleValue = {_show(number)}: not a number", field=where)
    if "boolValue" in value:
        return _typed(value["boolValue"], bool, f"{where}.boolValue")
    if "arrayValue" in value:
        array = value["arrayValue"]
        if not isinstance(array, dict) or not isinstance(array.get("values", []), list):
            raise ValidationFailed(f"{where}.arrayValue = {_show(array)}: expected {{values: [...]}}", field=where)
        return [_value(v, f"{where}.arrayValue.values[{i}]") for i, v in enumerate(array.get("values", []))]
    return None


def _typed(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind):
        raise ValidationFailed(f"{where} = {_show(value)}: expected a {kind.__name__}", field=where)
    return value


_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


def _status_code(status: Any) -> int:
    if not isinstance(status, dict):
        raise ValidationFailed(f"status = {_show(status)}: expected an object", field="status")
    code = status.get("code", 0)
    if isinstance(code, str) and code in _STATUS_CODES:  # the JSON mapping may name the enum
        return _STATUS_CODES[code]
    if isinstance(code, int) and not isinstance(code, bool) and code in _STATUS_CODES.values():
        return code
    raise ValidationFailed(
        f"status.code = {_show(code)}: expected 0, 1, 2 or one of {', '.join(_STATUS_CODES)}", field="status.code"
    )


def _show(value: Any) -> str:
    """A value as a message shows it: repr (NUL and control characters escaped), at most 80 characters."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."
