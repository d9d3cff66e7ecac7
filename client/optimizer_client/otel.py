"""An OpenTelemetry helper: record an LLM call as a span with the GenAI semantic conventions, which the API's OTLP
receiver (`POST /v1/traces`) turns into an event. Needs `opentelemetry-api`, the `otel` extra of the distribution
(`pip install './client[otel]'`; any exporter to the API will do).

    with record_llm_call(tracer, model=config.spec.model, provider=config.spec.provider,
                         config_version=config.version, request_key=user_id) as call:
        reply = llm.chat(...)
        call.usage(input_tokens=reply.usage.prompt_tokens, output_tokens=reply.usage.completion_tokens)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

try:
    from opentelemetry.trace import Span, Status, StatusCode, Tracer
except ImportError as exc:  # an extra of the distribution: the HTTP client works without it
    raise ImportError(
        "optimizer_client.otel needs opentelemetry-api, the otel extra: pip install './client[otel]' from a clone"
    ) from exc


class LLMCall:
    def __init__(self, span: Span):
        self.span = span

    def usage(self, *, input_tokens: int, output_tokens: int) -> None:
        self.span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        self.span.set_attribute("gen_ai.usage.output_tokens", output_tokens)

    def quality(self, score: float) -> None:
        self.span.set_attribute("llm_optimizer.quality_score", score)

    def feedback(self, value: float) -> None:
        """-1 (thumbs down) .. 1 (thumbs up)."""
        self.span.set_attribute("llm_optimizer.user_feedback", value)

    def error(self, error_type: str) -> None:
        """Mark the call failed; an `error_type` containing "timeout" or "rate" becomes that status."""
        self.span.set_attribute("error.type", error_type)
        self.span.set_status(Status(StatusCode.ERROR, error_type))


@contextmanager
def record_llm_call(
    tracer: Tracer,
    *,
    model: str,
    provider: str,
    operation: str = "chat",
    config_version: str | None = None,
    request_key: str | None = None,
) -> Iterator[LLMCall]:
    """A span around one LLM call; an exception inside marks it failed with the exception's type."""
    with tracer.start_as_current_span(f"{operation} {model}", record_exception=True) as span:
        span.set_attribute("gen_ai.operation.name", operation)
        span.set_attribute("gen_ai.provider.name", provider)
        span.set_attribute("gen_ai.request.model", model)
        if config_version:
            span.set_attribute("llm_optimizer.config_version", config_version)
        if request_key:
            span.set_attribute("llm_optimizer.request_key", request_key)
        call = LLMCall(span)
        try:
            yield call
        except Exception as exc:
            call.error(type(exc).__name__)
            raise
