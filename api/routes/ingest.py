"""Events over HTTP: a JSON batch (`POST /api/v1/metrics`) and OTLP/HTTP traces (`POST /v1/traces`).

Both go through the decoder and the landing of the Kafka path: one transaction per request, duplicates of an event
id written once, every refused input dead-lettered with its reason. Dead letters are positioned by the caller's
key id, the request's `Idempotency-Key` (or a fresh id) and the index, so a retried request dead-letters nothing
twice.
"""

from __future__ import annotations

import json
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
from llm_optimizer.events import DeadLetter

router = APIRouter(tags=["events"])
PROTOBUF = "application/x-protobuf"


class Rejected(BaseModel):
    index: int
    reason: str


class IngestResult(BaseModel):
    accepted: int  # new events landed
    duplicates: int  # events whose id was already there (a retry): not landed again
    anomalies: int
    rejected: int
    errors: list[Rejected]


def _items(body: Any) -> list[Any]:
    """The events of a batch: a JSON array, or an object with `metrics` (the seeds' shape) or `events`."""
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
async def report_events(request: Request, idempotency_key: str | None = Header(default=None)) -> IngestResult:
    """Land a batch of events (bare events or CloudEvents). Each refused one is named by index and reason."""
    try:
        items = _items(orjson.loads(await request.body()))
    except ValueError as exc:
        return JSONResponse({"detail": f"body is not valid JSON ({exc})"}, status_code=422)
    except ValidationFailed as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)
    backend: Backend = request.app.state.backend
    # Scoped by the caller's key: another client reusing an Idempotency-Key must not have its dead letters
    # mistaken for the first one's redelivery.
    prefix = dead_letter_prefix(request.state.principal.key_id, idempotency_key, await request.body())
    batch = backend.decoders["http"].decode_documents((f"{prefix}{i}", item) for i, item in enumerate(items))
    counts = await backend.land(batch, "http")
    errors = [Rejected(index=int(d.position.rsplit("/", 1)[1]), reason=d.reason) for d in batch.dead_letters]
    return IngestResult(
        accepted=counts.accepted,
        duplicates=counts.duplicates,
        anomalies=counts.anomalies,
        rejected=len(errors),
        errors=errors,
    )


@router.post("/v1/traces", dependencies=[allowed(Permission.report_events)], tags=["opentelemetry"])
async def otlp_traces(request: Request) -> Response:
    """OTLP/HTTP trace export (protobuf or JSON): GenAI spans become events; others are ignored."""
    protobuf = request.headers.get("content-type", "").split(";")[0].strip() == PROTOBUF
    body = await request.body()
    try:
        document = otlp.parse_protobuf(body) if protobuf else orjson.loads(body)
        spans = list(otlp.spans(document))
    except (ValueError, ValidationFailed) as exc:
        return JSONResponse({"detail": f"not an OTLP trace export: {exc}"}, status_code=400)
    backend: Backend = request.app.state.backend
    decoder = backend.decoders["otlp"]
    documents, refused = [], []
    for span in spans:
        try:
            if otlp.is_genai(span):
                documents.append((span.position, otlp.event_document(span)))
        except ValidationFailed as exc:
            refused.append(DeadLetter(source="otlp", position=span.position, reason=str(exc), raw=_json(span.raw)))
    batch = decoder.decode_documents(documents)
    batch.dead_letters.extend(refused)
    await backend.land(batch, "otlp")
    message = "; ".join(f"{d.position}: {d.reason}" for d in batch.dead_letters[:10])
    answer = otlp.response_body(len(batch.dead_letters), message, protobuf=protobuf)
    if protobuf:
        return Response(answer, media_type=PROTOBUF)
    return JSONResponse(answer)


def _json(document: Any) -> bytes:
    return json.dumps(document, default=str).encode()
