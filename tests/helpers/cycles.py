"""A cycle input for fast control-loop tests: scaled time, one candidate, small canary samples."""

from __future__ import annotations

from helpers.traffic import ModelBehaviour
from llm_optimizer.payloads import CycleInput
from llm_optimizer.settings import CanaryThresholds

EXPENSIVE = ModelBehaviour(error_rate=0.01, latency_ms=900, quality=0.90, cost_usd=0.010)


def cycle_input(service: str, **overrides) -> CycleInput:
    defaults = {
        "candidate_models": ["gpt-4o-mini"],
        "time_scale": 0.01,  # 15 min interval -> 9 s; stages bake 3 s, 6 s, 9 s
        "interval_s": 600,
        "fast_path_s": 300,
        "analysis_window_s": 3000,
        "canary": CanaryThresholds(min_samples=60),
    }
    return CycleInput(service=service, **{**defaults, **overrides})
