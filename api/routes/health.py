"""Open endpoints: liveness, readiness, detailed health, Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import UTC, datetime

from aiokafka import AIOKafkaClient
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.backend import Backend
from llm_optimizer.payloads import IngestionStatus
from storage import status_repo
from workflows.ids import ingestion_id

router = APIRouter(tags=["health"])


class Unhealthy(Exception):
    """A probe reached its dependency and found it wanting."""


class Check(BaseModel):
    name: str
    healthy: bool
    detail: str
    elapsed_ms: float


class Health(BaseModel):
    status: str  # healthy | degraded | unhealthy
    checks: list[Check]


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Postgres is unreachable"}})
async def ready(request: Request) -> JSONResponse:
    """Readiness: Postgres answers (configs and events need nothing else)."""
    check = await _run("postgres", _postgres(request.app.state.backend), request.app.state.backend.timeout_s)
    return JSONResponse({"ready": check.healthy, "detail": check.detail}, status_code=200 if check.healthy else 503)


@router.get("/health/detailed", response_model=Health, responses={503: {"model": Health}})
async def health_detailed(request: Request) -> JSONResponse:
    """Every dependency checked by name. Postgres down: unhealthy (503); anything else down: degraded."""
    backend: Backend = request.app.state.backend
    checks = await asyncio.gather(
        _run("postgres", _postgres(backend), backend.timeout_s),
        _run("temporal", _temporal(backend), backend.timeout_s),
        _run("kafka", _kafka(backend), backend.timeout_s),
        _run("control_loop", _control_loop(backend), backend.timeout_s),
        _run("ingestion", _ingestion(backend), backend.timeout_s),
    )
    failing = {c.name for c in checks if not c.healthy}
    status = "unhealthy" if "postgres" in failing else "degraded" if failing else "healthy"
    body = Health(status=status, checks=list(checks))
    return JSONResponse(body.model_dump(), status_code=503 if status == "unhealthy" else 200)


@router.get("/metrics")
async def metrics() -> Response:
    """Prometheus text: this API process's counters (events it landed, requests)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _run(name: str, probe: Awaitable[str], timeout_s: float) -> Check:
    started = time.perf_counter()
    try:
        detail, healthy = await asyncio.wait_for(probe, timeout_s), True
    except TimeoutError:
        detail, healthy = f"no answer within {timeout_s:g} s (server.timeout_ms)", False
    except Unhealthy as exc:
        detail, healthy = str(exc), False
    except Exception as exc:
        detail, healthy = f"{type(exc).__name__}: {exc}", False
    return Check(name=name, healthy=healthy, detail=detail, elapsed_ms=round((time.perf_counter() - started) * 1e3, 2))


async def _postgres(backend: Backend) -> str:
    version = await backend.run(status_repo.server_version)
    return f"PostgreSQL {version}"


async def _temporal(backend: Backend) -> str:
    client = await backend.temporal()
    await client.service_client.check_health()
    return f"{backend.settings.temporal_address} namespace {client.namespace}"


async def _kafka(backend: Backend) -> str:
    client = AIOKafkaClient(bootstrap_servers=backend.settings.kafka_brokers)
    try:
        await client.bootstrap()
        return f"{len(client.cluster.brokers())} broker(s) at {','.join(backend.settings.kafka_brokers)}"
    finally:
        await client.close()


async def _control_loop(backend: Backend) -> str:
    latest = await backend.run(status_repo.latest_decision_at)
    if latest is None:
        return "no cycle has decided yet"
    age_s = (datetime.now(UTC) - latest).total_seconds()
    stale_s = backend.settings.server.control_loop_stale_s
    detail = f"last decision {age_s:.0f} s ago"
    if age_s > stale_s:
        raise Unhealthy(f"stale: {detail} (server.control_loop_stale_s = {stale_s})")
    return detail


async def _ingestion(backend: Backend) -> str:
    """The Ingestion workflow of each configured topic: unhealthy when it failed, does not answer, or calls its
    consumer stuck (its last runs failed, or its lag keeps rising), with the last error. A topic without a workflow
    is fine: events may come over HTTP only."""
    kafka = backend.settings.kafka
    client = await backend.temporal()
    answers = await asyncio.gather(
        *(_topic_ingestion(client, topic, backend.timeout_s * 0.8) for topic in (kafka.topic, kafka.anomaly_topic))
    )
    problems = [text for text, healthy in answers if not healthy]
    if problems:
        raise Unhealthy("; ".join(problems))
    return "; ".join(text for text, _ in answers)


async def _topic_ingestion(client, topic: str, timeout_s: float) -> tuple[str, bool]:
    handle = client.get_workflow_handle(ingestion_id(topic))
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return f"{topic}: no Ingestion workflow", True
        raise
    if description.status != WorkflowExecutionStatus.RUNNING:
        state = description.status.name.lower() if description.status else "unknown"
        return f"{topic}: the Ingestion workflow is {state}", description.status != WorkflowExecutionStatus.FAILED
    try:
        status = await asyncio.wait_for(handle.query("status", result_type=IngestionStatus), timeout_s)
    except TimeoutError:
        return f"{topic}: the Ingestion workflow does not answer its status query (is a worker running?)", False
    lag = "unknown" if status.lag is None else f"{status.lag}"
    if not status.stuck:
        return f"{topic}: consuming, {status.totals.accepted} events landed, lag {lag}", True
    why = []
    if status.consecutive_failures:
        when = status.last_error_at.isoformat() if status.last_error_at else "?"
        why.append(f"its last {status.consecutive_failures} runs failed (last at {when}: {status.last_error})")
    if status.lag_rising:
        why.append(f"its lag rose after each of its last runs (now {lag})")
    return f"{topic}: stuck: " + " and ".join(why), False
