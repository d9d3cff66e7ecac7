"""The GenAI tracing libraries teams already run, as they are: each instruments the real `openai` client against a
local OpenAI-compatible server (tests/helpers/fake_openai.py) and exports over OTLP/HTTP to the real API. Every model
call lands with its model, provider, tokens (or NULL), latency, status and endpoint; agent, workflow and tool spans are
counted as ignored; nothing goes uncounted (docs/integrations.md, "OpenTelemetry GenAI spans")."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from helpers.api_server import running_api
from helpers.conformance_app import CALLS, TIMEOUT_S
from helpers.fake_openai import COMPLETION_TOKENS, EMBEDDING_TOKENS, PROMPT_TOKENS
from helpers.servers import settings_for
from prometheus_client import REGISTRY

from llm_optimizer.pricing import price_book

TESTS = Path(__file__).resolve().parents[1]  # the conformance app runs as `-m helpers.conformance_app` from here
CHAT = ("chat", "gpt-4o-mini", "openai")
EMBEDDINGS = ("embeddings", "text-embedding-3-small", "openai")
USAGE = (PROMPT_TOKENS, COMPLETION_TOKENS)
UNKNOWN = (None, None)
# Per library, what each call of conformance_app.CALLS lands as: (endpoint, model, provider), (tokens in, out),
# status, error type, whether a time to first token is known. Then the agent run's two chat calls.
ERRORS = {
    "otel-genai": ("openai.RateLimitError", "openai.InternalServerError", "openai.APITimeoutError"),
    "openllmetry": ("RateLimitError", "InternalServerError", "APITimeoutError"),
    "openinference": ("openai.RateLimitError", "openai.InternalServerError", "openai.APITimeoutError"),
}
# OpenLLMetry records each streamed chunk as a span event, OpenInference the first token; OTel GenAI neither.
STREAM_TTFT = {"otel-genai": False, "openllmetry": True, "openinference": True}
IGNORED = {
    "otel-genai": {"workflow": 1, "agent": 1, "tool": 1},
    "openllmetry": {"workflow": 1, "agent": 1, "tool": 1},
    "openinference": {"chain": 1, "agent": 1, "tool": 1},
}


def expected(library: str) -> list[tuple]:
    rate, server, timeout = ERRORS[library]
    ttft = STREAM_TTFT[library]
    return [
        (CHAT, USAGE, "ok", None, False),
        (CHAT, UNKNOWN, "ok", None, ttft),  # a stream without include_usage: usage unknown, not 0
        (CHAT, USAGE, "ok", None, ttft),
        (EMBEDDINGS, (EMBEDDING_TOKENS, 0), "ok", None, False),  # an embedding answers no tokens
        (("chat", "rate-limited", "openai"), UNKNOWN, "rate_limited", rate, False),
        (("chat", "broken", "openai"), UNKNOWN, "error", server, False),
        (("chat", "slow", "openai"), UNKNOWN, "timeout", timeout, False),
        (CHAT, USAGE, "ok", None, False),  # the agent run's model calls
        (CHAT, USAGE, "ok", None, False),
    ]


def spans_counted(outcome: str, reason: str) -> float:
    return REGISTRY.get_sample_value("optimizer_otlp_spans_total", {"outcome": outcome, "reason": reason}) or 0.0


@pytest.fixture
def api(stack, database_url):
    with running_api(settings_for(stack, database_url)) as running:
        yield running


@pytest.mark.parametrize("library", ["otel-genai", "openllmetry", "openinference"])
async def test_every_model_call_of_the_library_lands_with_its_fields(library, api, database_url):
    reasons = {reason for counts in IGNORED.values() for reason in counts}
    before = {reason: spans_counted("ignored", reason) for reason in reasons}
    landed_before = spans_counted("landed", "")
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "helpers.conformance_app", library, f"{api.url}/v1/traces", api.keys["viewer"]],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT endpoint, model, provider, tokens_in, tokens_out, status, error_type, latency_ms, ttft_ms, "
            "cost_usd, service, attributes FROM events ORDER BY ts"
        ).fetchall()
        dead = conn.execute("SELECT position, reason FROM dead_letters").fetchall()
    assert dead == []
    book = price_book(api.settings)
    calls = [*CALLS, "agent chat", "agent chat"]
    assert len(rows) == len(calls), [r[:7] for r in rows]
    for call, row, (what, tokens, status, error_type, has_ttft) in zip(calls, rows, expected(library), strict=True):
        endpoint, model, provider, tokens_in, tokens_out, got_status, got_error, latency, ttft, cost, service, attrs = (
            row
        )
        assert (endpoint, model, provider) == what, call
        assert (tokens_in, tokens_out) == tokens, call
        assert (got_status, got_error) == (status, error_type), call
        assert service == f"conformance-{library}" and latency > 0, call
        assert (ttft is not None) == has_ttft, (call, ttft)
        if ttft is not None:
            assert 0 <= ttft <= latency, call
        price = book.price(model)
        if None in tokens or price is None:
            assert cost is None, call  # unknown usage is not free
        else:
            assert cost == pytest.approx(price.cost(*tokens)), call
        if call == "chat":
            assert attrs["response_model"] == "gpt-4o-mini-2024-07-18"
        if call == "timeout":
            assert latency >= TIMEOUT_S * 1000 * 0.9
    # The agent run's other spans are neither events nor dead letters: counted as ignored, by reason.
    counted = {reason: spans_counted("ignored", reason) - before[reason] for reason in reasons}
    assert {reason: n for reason, n in counted.items() if n} == IGNORED[library]
    assert spans_counted("landed", "") - landed_before == len(calls)
