"""Events over HTTP: a JSON batch (`POST /api/v1/metrics`) and OTLP/HTTP traces (`POST /v1/traces`).

Both go through the decoder and the landing of the Kafka path: one transaction per request, duplicates of an event
id written once, every refused input dead-lettered with its code and reason. Dead letters are positioned by the caller's
key id, the request's `Idempotency-Key` (or a fresh id) and the index, so a retried request dead-letters nothing
twice.

A batch is refused whole (422) only when it is not a batch at all (not JSON, not an array); anything wrong with
one event, including what Postgres would refuse and NaN/Infinity (which strict JSON has no words for, so they are
read here as the numbers they name and then refused by the event model), refuses that event alone, by index.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api import otlp
from api.backend import Backend
from api.security import allowed, dead_letter_prefix
from llm_optimizer.auth import Permission
from llm_optimizer.errors import ValidationFailed
from llm_optimizer.events import DeadLetter, DeadLetterCode
from runtime import metrics

router = APIRouter(tags=["events"])
PROTOBUF = "application/x-protobuf"


class Rejected(BaseModel):
    index: int  # the event's place in the batch
    code: DeadLetterCode  # why, as a stable word (docs/api.md)
    reason: str  # why, naming the field and the value


class IngestResult(BaseModel):
    accepted: int  # new events landed
    duplicates: int  # events whose id was already there (a retry): not landed again
    anomalies: int
    rejected: int  # events refused (by the event model, or by Postgres), each dead-lettered
    errors: list[Rejected]  # one per refused event, by its index in the batch, in order


MAX_IDEMPOTENCY_KEY = 128
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII: it becomes part of stored positions


def _parse(body: bytes) -> Any:
    """orjson for the common case; Python's reader, which takes NaN, Infinity and -Infinity, when orjson refuses,
    so that such a value costs its event, not the batch. The body is decoded as strict UTF-8 first: Python's reader
    given bytes lets lone surrogates through (`surrogatepass`), which no JSON column can store."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as strict:
        try:
            return json.loads(body.decode("utf-8"))  # UnicodeDecodeError is a ValueError
        except (ValueError, RecursionError):
            raise ValueError(str(strict)) from None


def _items(body: Any) -> list[Any]:
    """The events of a batch: a JSON array, or an object with `metrics` or `events` (docs/api.md)."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for name in ("metrics", "events"):
            if isinstance(body.get(name), list):
                return body[name]
    raise ValidationFailed("body must be a JSON array of events, or an object with a `metrics` or `events` array")


@router.post(
    "/api/v1/metrics",
    response_model=IngestResult,
    dependencies=[allowed(Permission.report_events)],
    responses={422: {"description": "the body is not JSON or not a batch"}},
)
async def report_events(
    request: Request, idempotency_key: str | None = Header(default=None)
) -> IngestResult | JSONResponse:
    """Land a batch of events (bare events or CloudEvents). Each refused one is named by index, code and reason."""
    if idempotency_key is not None and not (
        len(idempotency_key) <= MAX_IDEMPOTENCY_KEY and _IDEMPOTENCY_KEY.match(idempotency_key)
    ):
        shown = repr(idempotency_key[:40]) + ("..." if len(idempotency_key) > 40 else "")
        return JSONResponse(
            {"detail": f"Idempotency-Key = {shown}: at most {MAX_IDEMPOTENCY_KEY} visible ASCII characters"},
            status_code=422,
        )
    try:
        items = _items(_parse(await request.body()))
    except ValueError as exc:
        return JSONResponse({"detail": f"body is not valid JSON ({exc})"}, status_code=422)
    except ValidationFailed as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)
    backend: Backend = request.app.state.backend
    # Scoped by the caller's key: another client reusing an Idempotency-Key must not have its dead letters
    # mistaken for the first one's redelivery.
    prefix = dead_letter_prefix(request.state.principal.key_id, idempotency_key, await request.body())
    positions = [f"{prefix}{i}" for i in range(len(items))]
    batch = backend.decoders["http"].decode_documents(zip(positions, items, strict=True))
    counts = await backend.land(batch, "http")  # adds what Postgres refused to batch.dead_letters
    errors = sorted(
        (Rejected(index=d.index, code=d.code, reason=d.reason) for d in batch.dead_letters if d.index is not None),
        key=lambda r: r.index,
    )
    if len(errors) != len(batch.dead_letters):  # an item the decoder did not index: never expected, never hidden
        raise AssertionError(f"{len(batch.dead_letters) - len(errors)} dead letters without an index")
    if any(d.code is DeadLetterCode.db_refused for d in batch.dead_letters):
        metrics.LANDING_SPLITS.labels("http").inc()
    return IngestResult(
        accepted=counts.accepted,
        duplicates=counts.duplicates,
        anomalies=counts.anomalies,
        rejected=len(errors),
        errors=errors,
    )


@router.post("/v1/traces", dependencies=[allowed(Permission.report_events)], tags=["opentelemetry"])
async def otlp_traces(request: Request) -> Response:
    """OTLP/HTTP trace export (protobuf or JSON): model-call spans become events; every span is accounted for."""
    protobuf = request.headers.get("content-type", "").split(";")[0].strip() == PROTOBUF
    body = await request.body()
    try:
        document = otlp.parse_protobuf(body) if protobuf else orjson.loads(body)
        spans = list(otlp.spans(document))
    except (ValueError, ValidationFailed) as exc:
        return JSONResponse({"detail": f"not an OTLP trace export: {exc}"}, status_code=400)
    backend: Backend = request.app.state.backend
    decoder = backend.decoders["otlp"]
    sorted_spans = otlp.sort_spans(spans)
    batch = decoder.decode_documents(sorted_spans.documents)
    batch.dead_letters.extend(
        DeadLetter(
            source="otlp", position=span.position, code=DeadLetterCode.invalid_span, reason=reason, raw=_json(span.raw)
        )
        for span, reason in sorted_spans.refused
    )
    counts = await backend.land(batch, "otlp")
    dead = [(d.position, d.reason) for d in batch.dead_letters]
    codes = [d.code for d in batch.dead_letters]
    metrics.record_otlp_spans(counts.accepted, counts.duplicates, codes, sorted_spans.ignored)
    everything_landed = not dead and not sorted_spans.ignored
    message = "" if everything_landed else otlp.answer(counts.accepted, counts.duplicates, dead, sorted_spans.ignored)
    answer = otlp.response_body(len(dead), message, protobuf=protobuf)
    if protobuf:
        return Response(answer, media_type=PROTOBUF)
    return JSONResponse(answer)


def _json(document: Any) -> bytes:
    return json.dumps(document, default=str).encode()
