"""Strategy presets: how much improvement and confidence a change needs, and how it rolls out.

`optimization.strategy` in `docs/configuration.md` picks one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strategy(StrEnum):
    conservative = "conservative"
    balanced = "balanced"
    aggressive = "aggressive"


# How a change reaches all traffic (`optimization.canary.rollout`): `canary` shifts it in the preset's stages;
# `blue_green` checks the new version on the preset's first stage, then switches all traffic at once and watches it,
# the old version kept for an instant rollback (workflows/canary_rollout.py).
RolloutKind = Literal["canary", "blue_green"]


class RolloutStage(BaseModel):
    """Send `percent` of traffic to the canary and bake for `bake_s` seconds before judging."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    percent: float = Field(gt=0, le=100)
    bake_s: float = Field(ge=0)


class StrategyPreset(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Strategy
    min_improvement: float = Field(ge=0, le=1, description="relative gain on the objective a change must promise")
    min_confidence: float = Field(ge=0, le=1)
    max_risk: float = Field(ge=0, le=1, description="largest acceptable probability that the change is worse")
    error_rate_increase: float = Field(ge=0, description="relative error-rate rise that rolls a canary back")
    stages: tuple[RolloutStage, ...]

    @model_validator(mode="after")
    def _ends_at_full_traffic(self) -> StrategyPreset:
        percents = [s.percent for s in self.stages]
        if percents != sorted(percents) or percents[-1] != 100:
            raise ValueError(f"stages must grow and end at 100%, got {percents}")
        return self

    def rollout_stages(self, kind: RolloutKind) -> tuple[RolloutStage, ...]:
        """The stages a rollout of this kind runs: a canary's are the preset's; a blue-green rollout checks the new
        version on the first stage, then switches all traffic and watches it as long as the preset's longest bake
        (a degraded verdict in that watch switches back)."""
        if kind == "canary":
            return self.stages
        watch = max(s.bake_s for s in self.stages)
        return (self.stages[0], RolloutStage(percent=100, bake_s=watch))

    def scaled(self, time_scale: float) -> StrategyPreset:
        """The same preset with every bake time multiplied by `time_scale` (demos and tests shorten them)."""
        stages = tuple(s.model_copy(update={"bake_s": s.bake_s * time_scale}) for s in self.stages)
        return self.model_copy(update={"stages": stages})


def _stages(percents: list[float], bake_minutes: list[float]) -> tuple[RolloutStage, ...]:
    # The last stage (100%) is the promotion itself: it does not bake.
    return tuple(RolloutStage(percent=p, bake_s=m * 60) for p, m in zip(percents, [*bake_minutes, 0], strict=True))


PRESETS: dict[Strategy, StrategyPreset] = {
    Strategy.conservative: StrategyPreset(
        name=Strategy.conservative,
        min_improvement=0.15,
        min_confidence=0.9,
        max_risk=0.05,
        error_rate_increase=0.02,
        stages=_stages([1, 5, 25, 50, 100], [10, 15, 30, 60]),
    ),
    Strategy.balanced: StrategyPreset(
        name=Strategy.balanced,
        min_improvement=0.10,
        min_confidence=0.8,
        max_risk=0.1,
        error_rate_increase=0.05,
        stages=_stages([5, 25, 50, 100], [5, 10, 15]),
    ),
    Strategy.aggressive: StrategyPreset(
        name=Strategy.aggressive,
        min_improvement=0.05,
        min_confidence=0.7,
        max_risk=0.2,
        error_rate_increase=0.10,
        stages=_stages([10, 50, 100], [3, 5]),
    ),
}
