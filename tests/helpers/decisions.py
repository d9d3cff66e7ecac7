"""A decision input with sensible defaults, for the tests of decisions and of what feeds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llm_optimizer.decision import Constraints, DecisionInput, Objectives, Profile
from llm_optimizer.payloads import DecideRequest
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


def decide_request(service: str = "chat", now: datetime | None = None) -> DecideRequest:
    """The `decide` activity's request for the last hour of `service`, with the default strategy and goals."""
    now = now or datetime.now(UTC)
    return DecideRequest(
        service=service,
        cycle_id="c1",
        now=now,
        window_start=now - timedelta(hours=1),
        strategy=Strategy.balanced,
        objectives=Objectives(),
        constraints=Constraints(),
        memory={},
    )
