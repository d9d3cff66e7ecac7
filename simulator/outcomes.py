"""Counterfactual replay of real outcomes: whichever model serves a request, the event carries what that model
really produced on that prompt (quality, tokens, cost).

Works for any table with the documented columns (service, task, prompt_id, model, provider, quality, tokens_in,
tokens_out, cost_usd, latency_ms); nothing here knows a service or a model by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from llm_optimizer.errors import ValidationFailed

REQUIRED = ("service", "task", "prompt_id", "model", "provider", "quality", "tokens_in", "tokens_out", "cost_usd")


@dataclass(frozen=True)
class Outcome:
    quality: float
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: float | None


@dataclass(frozen=True)
class ModelSummary:
    model: str
    provider: str
    quality: float
    cost_per_request: float
    prompts: int


class OutcomeTable:
    """Per service: the prompts answered by every model of that service, and each model's outcome on each."""

    def __init__(self, frame: pl.DataFrame):
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise ValidationFailed(f"outcomes table: missing columns {missing} (required: {list(REQUIRED)})")
        if "latency_ms" not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("latency_ms"))
        self.frame = frame
        self._services: dict[str, _ServiceOutcomes] = {}
        for (service,), group in frame.group_by(["service"], maintain_order=True):
            self._services[str(service)] = _ServiceOutcomes(group)

    @classmethod
    def read(cls, path: Path | str) -> OutcomeTable:
        path = Path(path)
        frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
        return cls(frame)

    @property
    def services(self) -> list[str]:
        return list(self._services)

    def models(self, service: str) -> list[ModelSummary]:
        return self._services[service].summaries

    def best_quality_model(self, service: str) -> ModelSummary:
        return max(self.models(service), key=lambda m: (m.quality, -m.cost_per_request))

    def draw_prompt(self, service: str, rng: np.random.Generator) -> int:
        return int(rng.integers(self._services[service].prompt_count))

    def outcome(self, service: str, prompt: int, model: str) -> Outcome:
        return self._services[service].outcome(prompt, model)


class _ServiceOutcomes:
    def __init__(self, frame: pl.DataFrame):
        models = frame["model"].unique(maintain_order=True).to_list()
        # Only prompts answered by every model: any assignment can then be replayed on any prompt.
        complete = (
            frame.group_by("prompt_id").agg(pl.col("model").n_unique().alias("n")).filter(pl.col("n") == len(models))
        )
        frame = frame.join(complete.select("prompt_id"), on="prompt_id").sort("prompt_id")
        self.prompt_count = complete.height
        self._columns: dict[str, dict[str, np.ndarray]] = {}
        self.summaries = []
        for model in models:
            rows = frame.filter(pl.col("model") == model).sort("prompt_id")
            self._columns[model] = {
                name: rows[name].to_numpy() for name in ("quality", "tokens_in", "tokens_out", "cost_usd", "latency_ms")
            }
            self.summaries.append(
                ModelSummary(
                    model=model,
                    provider=str(rows["provider"][0]),
                    quality=float(self._columns[model]["quality"].mean()),
                    cost_per_request=float(self._columns[model]["cost_usd"].mean()),
                    prompts=rows.height,
                )
            )

    def outcome(self, prompt: int, model: str) -> Outcome:
        try:
            columns = self._columns[model]
        except KeyError:
            raise ValidationFailed(f"model {model!r} has no outcomes for this service", field="model") from None
        latency = columns["latency_ms"][prompt]
        return Outcome(
            quality=float(columns["quality"][prompt]),
            tokens_in=int(columns["tokens_in"][prompt]),
            tokens_out=int(columns["tokens_out"][prompt]),
            cost_usd=float(columns["cost_usd"][prompt]),
            latency_ms=None if latency is None or np.isnan(latency) else float(latency),
        )
