"""OpenTelemetry tracing of the Temporal client and worker (off unless `tracing.enabled`).

A tracer provider of our own (not the process-global one, which an application embedding the client may own),
exporting in batches over OTLP/HTTP, and temporalio's `TracingInterceptor` on the client: workflow starts, signals,
updates, queries, workflow runs and activities become spans, propagated through Temporal headers.
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.contrib.opentelemetry import TracingInterceptor

from llm_optimizer.settings import TracingSettings

_providers: dict[tuple[str, str], TracerProvider] = {}


def tracer_provider(settings: TracingSettings) -> TracerProvider:
    """One provider per endpoint and service name in a process (shut down at exit by the SDK)."""
    key = (settings.otlp_endpoint, settings.service_name)
    if key not in _providers:
        provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
        _providers[key] = provider
    return _providers[key]


def interceptors(settings: TracingSettings) -> list[TracingInterceptor]:
    if not settings.enabled:
        return []
    return [TracingInterceptor(tracer_provider(settings).get_tracer("llm-auto-optimizer"))]


def shutdown_tracing() -> None:
    """Export what is buffered (a process that ends without its atexit handlers would drop it)."""
    for provider in _providers.values():
        provider.shutdown()
