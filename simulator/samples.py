"""Realistic synthetic LLM events, for trying the pipeline, tests and benchmarks (the fleet simulator is richer)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

from llm_optimizer.events import LLMEvent

# (model, provider, median latency ms, quality mean)
_MODELS = [
    ("gpt-4o", "openai", 1400.0, 0.90),
    ("gpt-4o-mini", "openai", 700.0, 0.84),
    ("claude-3-5-haiku-20241022", "anthropic", 800.0, 0.85),
    ("gemini-2.0-flash-001", "google", 500.0, 0.83),
]


def sample_events(
    count: int,
    *,
    services: tuple[str, ...] = ("chat", "search", "summarize"),
    start: datetime | None = None,
    seed: int = 0,
) -> Iterator[LLMEvent]:
    """`count` events spread over services and models, one per 10 ms from `start` (default: now - count*10ms)."""
    rng = np.random.default_rng(seed)
    start = start or datetime.now(UTC) - timedelta(milliseconds=10 * count)
    for i in range(count):
        model, provider, median_ms, quality = _MODELS[int(rng.integers(len(_MODELS)))]
        tokens_in = int(rng.lognormal(6.5, 0.6))
        tokens_out = int(rng.lognormal(5.0, 0.7))
        latency = float(median_ms * rng.lognormal(0, 0.35) + tokens_out * 2)
        roll = rng.random()
        status = "ok" if roll > 0.02 else ("timeout" if roll < 0.005 else "error")
        yield LLMEvent(
            event_id=str(uuid.UUID(int=int(rng.integers(2**63)) << 64 | i)),
            timestamp=start + timedelta(milliseconds=10 * i),
            service=services[i % len(services)],
            endpoint="/v1/chat/completions",
            model=model,
            provider=provider,
            config_version="v1",
            variant="baseline",
            latency_ms=round(latency, 1),
            ttft_ms=round(latency * 0.2, 1),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            status=status,
            error_type=None if status == "ok" else ("provider_timeout" if status == "timeout" else "server_error"),
            quality_score=float(np.clip(rng.normal(quality, 0.08), 0, 1)) if status == "ok" else None,
            request_key=f"user-{int(rng.integers(10_000))}",
        )
