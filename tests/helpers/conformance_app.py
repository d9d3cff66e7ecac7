"""An application instrumented by one GenAI tracing library, run as its own process by
tests/integration/test_otlp_conformance.py.

`python -m helpers.conformance_app LIBRARY OTLP_URL API_KEY` (from `tests/`) instruments the real `openai` client
with LIBRARY (each one patches the `openai` module globally, hence a process each), points the real OTLP/HTTP
exporter at OTLP_URL, and makes the calls of `CALLS` against a fake OpenAI-compatible server
(tests/helpers/fake_openai.py), one after another, then an agent run: a workflow span around an agent span around
two chat calls and a tool span, made with the library's own agent conventions (OpenInference's and OTel GenAI's
tracers; OpenLLMetry's SDK decorators' attributes).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress

import openai
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from helpers.fake_openai import fake_openai

LIBRARIES = {
    "otel-genai": "opentelemetry.instrumentation.openai_v2",  # opentelemetry-instrumentation-openai-v2
    "openllmetry": "opentelemetry.instrumentation.openai",  # opentelemetry-instrumentation-openai (traceloop)
    "openinference": "openinference.instrumentation.openai",  # openinference-instrumentation-openai (Arize)
}
HI = [{"role": "user", "content": "What is the capital of France?"}]
TIMEOUT_S = 0.3  # the fake server's "slow" model answers after 2 s


def _chat(client: openai.OpenAI, **options) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=HI, **options)


def _stream(client: openai.OpenAI, **options) -> None:
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True, **options):
        pass


def _failing(model: str) -> Callable[[openai.OpenAI], None]:
    def call(client: openai.OpenAI) -> None:
        with suppress(openai.APIStatusError, openai.APITimeoutError):
            client.chat.completions.create(model=model, messages=HI, timeout=TIMEOUT_S)

    return call


# In order; tests/integration/test_otlp_conformance.py expects one event per call, in this order, then two from
# the agent run.
CALLS: dict[str, Callable[[openai.OpenAI], None]] = {
    "chat": lambda client: _chat(client, temperature=0.2),
    "stream without usage": _stream,
    "stream with usage": lambda client: _stream(client, stream_options={"include_usage": True}),
    "embeddings": lambda client: client.embeddings.create(model="text-embedding-3-small", input="Paris"),
    "rate limited (429)": _failing("rate-limited"),
    "server error (500)": _failing("broken"),
    "timeout": _failing("slow"),
}


def agent_run(library: str, provider: TracerProvider, client: openai.OpenAI) -> None:
    """What an agent framework emits around model calls: spans that are not model calls themselves."""
    if library == "openinference":
        from openinference.instrumentation import OITracer, TraceConfig

        tracer = OITracer(provider.get_tracer("travel-agent"), config=TraceConfig())

        @tracer.tool
        def weather(city: str) -> str:
            return f"sunny in {city}"

        @tracer.agent
        def agent(question: str) -> str:
            _chat(client)
            weather("Paris")
            _chat(client)
            return "done"

        @tracer.chain
        def workflow(question: str) -> str:
            return agent(question)

        workflow("Plan a trip")
    elif library == "otel-genai":
        from opentelemetry.util.genai.handler import TelemetryHandler

        handler = TelemetryHandler(tracer_provider=provider)
        with handler.workflow("plan-trip"), handler.invoke_remote_agent("openai", agent_name="travel-agent"):
            _chat(client)
            with handler.tool("weather"):
                pass
            _chat(client)
    else:  # OpenLLMetry: the traceloop SDK's @workflow, @agent and @tool decorators set these attributes
        tracer = provider.get_tracer("travel-agent")

        def kind(name: str, span_kind: str) -> AbstractContextManager:
            attributes = {"traceloop.span.kind": span_kind, "traceloop.entity.name": name}
            return tracer.start_as_current_span(f"{name}.{span_kind}", attributes=attributes)

        with kind("plan_trip", "workflow"), kind("travel_agent", "agent"):
            _chat(client)
            with kind("weather", "tool"):
                pass
            _chat(client)


@contextmanager
def instrumented(library: str, provider: TracerProvider) -> Iterator[None]:
    instrumentor = importlib.import_module(LIBRARIES[library]).OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def main(library: str, otlp_url: str, api_key: str) -> None:
    exporter = OTLPSpanExporter(endpoint=otlp_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    provider = TracerProvider(resource=Resource.create({"service.name": f"conformance-{library}"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # one export per span, in the order they end
    trace.set_tracer_provider(provider)
    with fake_openai() as base_url, instrumented(library, provider):
        client = openai.OpenAI(base_url=base_url, api_key="not-a-real-key", max_retries=0)
        for call in CALLS.values():
            call(client)
        agent_run(library, provider, client)
    provider.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])
