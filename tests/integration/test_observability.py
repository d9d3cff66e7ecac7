"""Tracing of workflows and activities to an OTLP endpoint, and structured logs."""

from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import UTC, datetime

from helpers.scripted_http import Answer, scripted_server
from helpers.servers import settings_for

from api import otlp
from llm_optimizer.payloads import MaintenanceReport, MaintenanceRequest
from runtime.logs import JsonFormatter, RedactingFilter
from runtime.temporal import connect_client
from runtime.tracing import tracer_provider
from worker import serving


async def test_workflows_and_activities_are_traced_when_enabled(stack, database_url):
    with scripted_server([Answer(200, b"")]) as collector:
        settings = settings_for(
            stack, database_url, tracing={"enabled": True, "otlp_endpoint": f"{collector.url}/v1/traces"}
        )
        client = await connect_client(settings)
        async with serving(client, settings):
            await client.execute_workflow(
                "StorageMaintenance",
                MaintenanceRequest(now=datetime.now(UTC)),
                id=f"traced-{uuid.uuid4().hex[:6]}",
                task_queue=settings.temporal.task_queue,
                result_type=MaintenanceReport,
            )
        tracer_provider(settings.tracing).force_flush()
    names = set()
    for method, path, body in collector.requests:
        assert (method, path) == ("POST", "/v1/traces")
        for span in otlp.spans(otlp.parse_protobuf(body)):
            names.add(span.raw["name"])
            assert span.service == "llm-auto-optimizer"
    assert {
        "StartWorkflow:StorageMaintenance",
        "RunWorkflow:StorageMaintenance",
        "StartActivity:maintain_storage",
        "RunActivity:maintain_storage",
    } <= names


async def test_tracing_is_off_by_default(stack, database_url):
    client = await connect_client(settings_for(stack, database_url))
    assert client.config()["interceptors"] == []


def test_json_logs_carry_the_context_and_no_secrets():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "canary judged with key %s",
            "lao_1a2b3c4d_secretsecret",
            extra={"temporal_workflow": {"workflow_id": "optimization-cycle/chat"}, "service": "chat"},
        )
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["level"] == "warning" and line["logger"] == "test.json"
    assert line["message"] == "canary judged with key [REDACTED]"
    assert line["temporal_workflow"] == {"workflow_id": "optimization-cycle/chat"} and line["service"] == "chat"
