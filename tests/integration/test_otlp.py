"""OTLP/HTTP trace ingestion: spans sent by the real OpenTelemetry SDK and its OTLP exporter land as events."""

from __future__ import annotations

import asyncio
import time

import httpx
import psycopg
import pytest
from helpers.api_server import running_api
from helpers.servers import settings_for
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode
from prometheus_client import REGISTRY

from llm_optimizer import genai_dialects
from optimizer_client.otel import record_llm_call


@pytest.fixture
def api(stack, database_url):
    with running_api(settings_for(stack, database_url)) as running:
        yield running


def _tracer_provider(api, service: str) -> TracerProvider:
    exporter = OTLPSpanExporter(endpoint=f"{api.url}/v1/traces", headers=api.auth("viewer"), timeout=10)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _send_spans(api) -> None:
    provider = _tracer_provider(api, "support-bot")
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("chat gpt-4o-mini") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.provider.name", "openai")
        span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
        span.set_attribute("gen_ai.response.model", "gpt-4o-mini-2024-07-18")
        span.set_attribute("gen_ai.usage.input_tokens", 812)
        span.set_attribute("gen_ai.usage.output_tokens", 96)
        span.set_attribute("llm_optimizer.config_version", "v3")
        span.set_attribute("llm_optimizer.request_key", "user-42")
        time.sleep(0.05)
    with tracer.start_as_current_span("chat claude") as span:
        span.set_attribute("gen_ai.system", "anthropic")  # the older attribute name
        span.set_attribute("gen_ai.request.model", "claude-3-5-haiku-20241022")
        span.set_attribute("error.type", "timeout")
        span.set_status(Status(StatusCode.ERROR, "timed out"))
    with tracer.start_as_current_span("GET /orders"):  # not a GenAI span: ignored
        pass
    # The client's helper sets the same attributes from one call.
    with record_llm_call(tracer, model="gpt-4o", provider="openai", config_version="v1", request_key="user-7") as call:
        call.usage(input_tokens=100, output_tokens=20)
        call.quality(0.9)
    provider.shutdown()


async def test_spans_from_the_sdk_exporter_land_as_events(api, database_url):
    await asyncio.to_thread(_send_spans, api)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT service, model, provider, endpoint, tokens_in, tokens_out, latency_ms, status, error_type, "
            "config_version, request_key, cost_usd, quality_score, source, attributes FROM events ORDER BY ts"
        ).fetchall()
    assert len(rows) == 3
    chat, timeout, helper = rows
    assert chat[:6] == ("support-bot", "gpt-4o-mini", "openai", "chat", 812, 96)
    assert chat[6] >= 50 and chat[7] == "ok" and chat[9:11] == ("v3", "user-42")
    assert chat[11] > 0  # costed from the pricing catalog
    assert chat[13] == "otlp" and chat[14]["response_model"] == "gpt-4o-mini-2024-07-18"
    assert len(chat[14]["trace_id"]) == 32 and len(chat[14]["span_id"]) == 16
    assert timeout[1:3] == ("claude-3-5-haiku-20241022", "anthropic") and timeout[7:9] == ("timeout", "timeout")
    assert helper[1] == "gpt-4o" and helper[4:6] == (100, 20) and helper[12] == pytest.approx(0.9)


async def test_otlp_json_with_a_bad_span_reports_partial_success(api, database_url):
    def span(span_id: str, start: int, end: int, model: str) -> dict:
        return {
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": span_id,
            "name": "chat",
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end),
            "attributes": [
                {"key": "gen_ai.request.model", "value": {"stringValue": model}},
                {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "10"}},
            ],
        }

    now = time.time_ns()
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "chat"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            span("eee19b7ec3c1b174", now - 300_000_000, now, "gpt-4o"),
                            span("eee19b7ec3c1b175", now, now - 1, "gpt-4o"),  # ends before it starts
                            span("eee19b7ec3c1b176", now - 1_000, now, "not a model name!"),
                        ]
                    }
                ],
            }
        ]
    }
    async with httpx.AsyncClient(base_url=api.url, headers=api.auth("viewer")) as http:
        answer = await http.post("/v1/traces", json=body)
        assert answer.status_code == 200
        partial = answer.json()["partialSuccess"]
        assert partial["rejectedSpans"] == "2"  # int64: a string in OTLP JSON
        assert "endTimeUnixNano" in partial["errorMessage"] and "model" in partial["errorMessage"]
        # An exporter retries a failed export: the same spans again land nothing twice.
        assert (await http.post("/v1/traces", json=body)).json()["partialSuccess"]["rejectedSpans"] == "2"
        garbage = await http.post("/v1/traces", content=b"\x00\x01", headers={"Content-Type": "application/x-protobuf"})
        assert garbage.status_code == 400
        assert (await http.post("/v1/traces", json=body, headers={"Authorization": ""})).status_code == 401
    with psycopg.connect(database_url) as conn:
        events = conn.execute("SELECT event_id, latency_ms FROM events").fetchall()
        dead = conn.execute("SELECT source, position FROM dead_letters ORDER BY position").fetchall()
    assert events == [("otel-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174", pytest.approx(300.0))]
    assert dead == [
        ("otlp", "otlp/5b8efff798038103d269b633813fc60c/eee19b7ec3c1b175"),
        ("otlp", "otlp/5b8efff798038103d269b633813fc60c/eee19b7ec3c1b176"),
    ]


def _otlp_span(span_id: str, attributes: dict, *, events: list | None = None, error: bool = False) -> dict:
    now = time.time_ns()
    values = []
    for key, value in attributes.items():
        kind = "intValue" if isinstance(value, int) else "stringValue"
        values.append({"key": key, "value": {kind: str(value) if kind == "intValue" else value}})
    span = {
        "traceId": "6b8efff798038103d269b633813fc60c",
        "spanId": span_id,
        "name": "span",
        "startTimeUnixNano": str(now - 200_000_000),
        "endTimeUnixNano": str(now),
        "attributes": values,
        "events": events or [],
    }
    if error:
        span["status"] = {"code": 2}
    return span


def _export(spans: list[dict]) -> dict:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "dialects"}}]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}


async def test_older_dialects_land_and_agent_spans_are_ignored_and_counted(api, database_url):
    start = time.time_ns() - 200_000_000
    spans = [
        # OpenLLMetry 0.47: llm.request.type for the operation, gen_ai.system capitalized, the prompt/completion names.
        _otlp_span(
            "aaa19b7ec3c1b101",
            {
                "llm.request.type": "chat",
                "gen_ai.system": "OpenAI",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.usage.prompt_tokens": 30,
                "gen_ai.usage.completion_tokens": 7,
                "llm.usage.total_tokens": 37,
            },
        ),
        # OpenInference, a failed call: the error only in the exception event; the model only in the parameters.
        _otlp_span(
            "aaa19b7ec3c1b102",
            {
                "openinference.span.kind": "LLM",
                "llm.system": "openai",
                "llm.provider": "azure",
                "llm.invocation_parameters": '{"model": "gpt-4o", "temperature": 0}',
            },
            events=[
                {
                    "name": "exception",
                    "timeUnixNano": str(start),
                    "attributes": [{"key": "exception.type", "value": {"stringValue": "openai.APITimeoutError"}}],
                }
            ],
            error=True,
        ),
        # A stream without usage, whose first token the span's event marks (OpenInference).
        _otlp_span(
            "aaa19b7ec3c1b103",
            {"openinference.span.kind": "LLM", "llm.system": "openai", "llm.model_name": "gpt-4o-mini"},
            events=[{"name": "First Token Stream Event", "timeUnixNano": str(start + 40_000_000)}],
        ),
        # The GenAI agent conventions: an agent with a provider, a tool, a workflow; none of them a model call.
        _otlp_span("aaa19b7ec3c1b104", {"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai"}),
        _otlp_span("aaa19b7ec3c1b105", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "weather"}),
        _otlp_span("aaa19b7ec3c1b106", {"gen_ai.operation.name": "invoke_workflow"}),
        _otlp_span("aaa19b7ec3c1b107", {"openinference.span.kind": "RETRIEVER"}),
        _otlp_span("aaa19b7ec3c1b108", {"http.method": "GET"}),  # not GenAI at all
        _otlp_span("aaa19b7ec3c1b109", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}),  # no model
    ]
    spans[2]["startTimeUnixNano"] = str(start)
    before = {
        (outcome, reason): REGISTRY.get_sample_value(
            "optimizer_otlp_spans_total", {"outcome": outcome, "reason": reason}
        )
        or 0.0
        for outcome, reason in [
            ("landed", ""),
            ("dead_lettered", "invalid_event"),
            ("ignored", "agent"),
            ("ignored", "tool"),
            ("ignored", "workflow"),
            ("ignored", "retriever"),
            ("ignored", "not_genai"),
        ]
    }
    async with httpx.AsyncClient(base_url=api.url, headers=api.auth("viewer")) as http:
        answer = (await http.post("/v1/traces", json=_export(spans))).json()
    partial = answer["partialSuccess"]
    assert partial["rejectedSpans"] == "1"  # the chat span that names no model
    message = partial["errorMessage"]
    assert message.startswith("landed 3, duplicate 0, dead-lettered 1, ignored 5")
    assert "agent 1" in message and "not_genai 1" in message and "aaa19b7ec3c1b109: model" in message
    after = {
        key: REGISTRY.get_sample_value("optimizer_otlp_spans_total", {"outcome": key[0], "reason": key[1]})
        for key in before
    }
    assert {key: after[key] - before[key] for key in before} == {
        ("landed", ""): 3,
        ("dead_lettered", "invalid_event"): 1,
        ("ignored", "agent"): 1,
        ("ignored", "tool"): 1,
        ("ignored", "workflow"): 1,
        ("ignored", "retriever"): 1,
        ("ignored", "not_genai"): 1,
    }
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT endpoint, model, provider, tokens_in, tokens_out, cost_usd, status, error_type, ttft_ms "
            "FROM events ORDER BY event_id"
        ).fetchall()
    old, failed, stream = rows
    assert old[:5] == ("chat", "gpt-4o-mini", "openai", 30, 7) and old[5] > 0 and old[6] == "ok"
    assert failed[:3] == ("chat", "gpt-4o", "openai")  # llm.system before llm.provider (docs/integrations.md)
    assert failed[3:8] == (None, None, None, "timeout", "openai.APITimeoutError")
    assert stream[3:6] == (None, None, None) and stream[8] == pytest.approx(40.0)


async def test_a_fully_landed_export_has_no_partial_success(api):
    span = _otlp_span("bbb19b7ec3c1b101", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"})
    span["attributes"].append({"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}})

    def duplicates() -> float:
        return REGISTRY.get_sample_value("optimizer_otlp_spans_total", {"outcome": "duplicate", "reason": ""}) or 0.0

    async with httpx.AsyncClient(base_url=api.url, headers=api.auth("viewer")) as http:
        assert (await http.post("/v1/traces", json=_export([span]))).json() == {}
        before = duplicates()
        # A retried export is accepted whole too: its span is already there, counted as a duplicate.
        assert (await http.post("/v1/traces", json=_export([span]))).json() == {}
    assert duplicates() - before == 1


def test_the_dialect_table_of_the_docs_names_every_attribute_the_mapping_reads(repo_root):
    text = (repo_root / "docs" / "integrations.md").read_text()
    table = text[text.index("## OpenTelemetry GenAI spans") : text.index("## Gateways")]
    names = [
        *genai_dialects.REQUEST_MODEL,
        *genai_dialects.RESPONSE_MODEL,
        *genai_dialects.INVOCATION_PARAMETERS,
        *genai_dialects.PROVIDER,
        *genai_dialects.INPUT_TOKENS,
        *genai_dialects.OUTPUT_TOKENS,
        *genai_dialects.FIRST_TOKEN_EVENTS,
        genai_dialects.TIME_TO_FIRST_CHUNK_S,
        *genai_dialects.MARKERS,
        *genai_dialects.MODEL_OPERATIONS,
        *genai_dialects.NOT_MODEL_OPERATIONS,
        *genai_dialects.OPENINFERENCE_MODEL_KINDS,
        *genai_dialects.TRACELOOP_KINDS,
    ]
    assert [name for name in names if f"`{name}`" not in table] == []
