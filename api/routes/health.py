"""Open endpoints: liveness, readiness, detailed health, Prometheus metrics.

Readiness (`/ready`) reports Postgres, Temporal and Kafka by name but fails (503) on Postgres alone: config
resolution and event ingestion over HTTP and OTLP, what applications call the API for, need Postgres and nothing
else. With Temporal down only the control endpoints answer 503, and the API itself never talks to Kafka (its check
shows whether events sent there can flow); taking every replica out of the load balancer for either would stop
configs and events too. The body marks which checks are `required`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.backend import Backend
from llm_optimizer.errors import Unhealthy
from llm_optimizer.ids import ingestion_id
from llm_optimizer.payloads import IngestionStatus
from runtime import probes
from runtime.probes import DependencyCheck, ReadinessReport
from storage import status_repo

router = APIRouter(tags=["health"])

READY_REQUIRED = {"postgres"}
# Requests within this long of a round of readiness checks share it: `/ready` is open, so its request rate must
# not set the rate of Postgres queries and Kafka connections.
READY_MAX_AGE_S = 1.0


class Health(BaseModel):
    status: str  # healthy | degraded | unhealthy
    checks: list[DependencyCheck]


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=ReadinessReport,
    responses={503: {"model": ReadinessReport, "description": "Postgres is unreachable"}},
)
async def ready(request: Request) -> JSONResponse:
    """Readiness: `postgres`, `temporal` and `kafka` checked concurrently, each within a few seconds; 503 while
    Postgres is down (the only required check: configs and events need nothing else)."""
    backend: Backend = request.app.state.backend
    state = request.app.state
    if not hasattr(state, "readiness"):
        state.readiness = probes.Readiness(required=READY_REQUIRED, stale_after_s=float("inf"))
    timeout_s = min(probes.PROBE_TIMEOUT_S, backend.timeout_s)

    async def round_() -> list[DependencyCheck]:
        return list(
            await asyncio.gather(*probes.dependency_checks(backend.settings, backend.db, backend.temporal, timeout_s))
        )

    report = await state.readiness.fresh(round_, READY_MAX_AGE_S)
    return JSONResponse(report.model_dump(), status_code=200 if report.ready else 503)


@router.get("/health/detailed", response_model=Health, responses={503: {"model": Health}})
async def health_detailed(request: Request) -> JSONResponse:
    """Every dependency checked by name. Postgres down: unhealthy (503); anything else down: degraded."""
    backend: Backend = request.app.state.backend
    checks = await asyncio.gather(
        *probes.dependency_checks(
            backend.settings, backend.db, backend.temporal, backend.timeout_s, "server.timeout_ms"
        ),
        probes.check(
            "control_loop", _control_loop(backend), backend.timeout_s, "the control loop", "server.timeout_ms"
        ),
        probes.check("ingestion", _ingestion(backend), backend.timeout_s, "the ingestion", "server.timeout_ms"),
    )
    failing = {c.name for c in checks if not c.healthy}
    status = "unhealthy" if "postgres" in failing else "degraded" if failing else "healthy"
    body = Health(status=status, checks=list(checks))
    return JSONResponse(body.model_dump(), status_code=503 if status == "unhealthy" else 200)


@router.get("/metrics")
async def metrics() -> Response:
    """Prometheus text: this API process's counters (events it landed, requests)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


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
