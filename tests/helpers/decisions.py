"""A decision input with sensible defaults, for the tests of decisions and of what feeds them."""

from __future__ import annotations

from datetime import UTC, datetime

from llm_optimizer.decision import DecisionInput, Profile
from llm_optimizer.strategies import PRESETS, Strategy

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
CURRENT = Profile(
    model="big",
    provider="p",
    config_version="v2",
    requests=5000,
    error_rate=0.01,
    latency_p95_ms=2000,
    quality_mean=0.90,
    quality_sd=0.3,
    quality_n=4000,
    cost_per_request=0.010,
    cost_sd=0.004,
)


def inp(**overrides) -> DecisionInput:
    base = dict(
        service="chat",
        now=NOW,
        current_version="v2",
        parent_version="v1",
        current=CURRENT,
        reference_quality=0.90,
        candidates=[],
        preset=PRESETS[Strategy.balanced],
    )
    return DecisionInput(**{**base, **overrides})
