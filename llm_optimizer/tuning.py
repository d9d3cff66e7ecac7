"""Adaptive tuning of generation parameters from the task type and what the outputs look like."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from llm_optimizer.configs import GenerationParams

TaskType = Literal["classification", "extraction", "code", "chat", "summarization", "creative"]

# Temperature ranges that work for each kind of task: deterministic tasks low, open-ended ones higher.
TEMPERATURE = {
    "classification": 0.0,
    "extraction": 0.0,
    "code": 0.2,
    "summarization": 0.3,
    "chat": 0.7,
    "creative": 0.9,
}
TRUNCATION_LIMIT = 0.02  # more than 2% of answers cut at max_tokens: raise it
HEADROOM = 1.3


class OutputStats(BaseModel):
    requests: int
    truncated: int  # answers that stopped at max_tokens
    tokens_out_p99: float


class Tuning(BaseModel):
    params: GenerationParams
    reasons: list[str]


def tune(task: TaskType, current: GenerationParams, stats: OutputStats) -> Tuning:
    """Suggested parameters with the reason for each change (unchanged parameters give no reason)."""
    changes: dict = {}
    reasons: list[str] = []
    temperature = TEMPERATURE[task]
    if abs(current.temperature - temperature) > 1e-9:
        changes["temperature"] = temperature
        reasons.append(f"temperature {current.temperature:g} -> {temperature:g} for {task} tasks")
    if temperature >= 0.7 and current.top_p > 0.95:
        changes["top_p"] = 0.95
        reasons.append("top_p 0.95 trims the unlikely tail at a high temperature")
    truncation = stats.truncated / stats.requests if stats.requests else 0.0
    if truncation > TRUNCATION_LIMIT:
        new = max(int(current.max_tokens * 1.5), int(stats.tokens_out_p99 * HEADROOM))
        changes["max_tokens"] = new
        reasons.append(f"{truncation:.1%} of answers were cut at max_tokens {current.max_tokens}: raise to {new}")
    elif stats.requests and stats.tokens_out_p99 * HEADROOM * 2 < current.max_tokens:
        new = max(16, int(stats.tokens_out_p99 * HEADROOM))
        changes["max_tokens"] = new
        reasons.append(
            f"99% of answers use at most {stats.tokens_out_p99:.0f} tokens: max_tokens {current.max_tokens} -> {new} "
            "bounds runaway answers"
        )
    return Tuning(params=current.model_copy(update=changes), reasons=reasons)
