"""The objectives configs are compared on: cost per request, quality and p95 latency.

One implementation of each comparison, shared by the decision (`llm_optimizer/decision/`), the exploration
(`llm_optimizer/exploration.py`) and the demo report (`starter/report.py`):
- `weighted_gain`: the operator's weighted relative improvement of one config over another;
- `pareto_frontier`: the configs no other is as cheap, as good and as fast as, and better on one of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Objectives(BaseModel):
    """Weights of the weighted score (defaults: cost 0.6, quality 0.3, latency 0.1); they need not sum to one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cost: float = Field(default=0.6, ge=0)
    quality: float = Field(default=0.3, ge=0)
    latency: float = Field(default=0.1, ge=0)


class Outcome(NamedTuple):
    """What a config achieves on each objective; None where it is not known."""

    cost: float | None = None  # USD per request
    quality: float | None = None  # mean score, 0 to 1
    latency: float | None = None  # p95, ms


def weighted_gain(current: Outcome, candidate: Outcome, objectives: Objectives) -> float:
    """Weighted relative improvement of `candidate` over `current` (positive is better), over the weights' total.

    An objective unknown on either side counts as unchanged (the canary, or the exploration, measures it).
    """
    total = objectives.cost + objectives.quality + objectives.latency
    if total == 0:
        return 0.0
    gain = 0.0
    if current.cost and candidate.cost is not None:
        gain += objectives.cost * (current.cost - candidate.cost) / current.cost
    if current.quality and candidate.quality is not None:
        gain += objectives.quality * (candidate.quality - current.quality) / current.quality
    if current.latency and candidate.latency:
        gain += objectives.latency * (current.latency - candidate.latency) / current.latency
    return gain / total


def pareto_frontier(items: Sequence[T], outcome: Callable[[T], Outcome]) -> list[T]:
    """The items no other item dominates on (lower cost, higher quality, lower p95 latency), in their order.

    Unknown values count as the worst, so an item with nothing measured is on the frontier only through its price.
    """

    def key(item: T) -> tuple[float, float, float]:
        o = outcome(item)
        return (
            o.cost if o.cost is not None else math.inf,
            -(o.quality if o.quality is not None else -math.inf),
            o.latency if o.latency is not None else math.inf,
        )

    keys = [key(item) for item in items]
    frontier = []
    for i, item in enumerate(items):
        dominated = any(
            all(o <= s for o, s in zip(keys[j], keys[i], strict=True)) and keys[j] != keys[i]
            for j in range(len(items))
            if j != i
        )
        if not dominated:
            frontier.append(item)
    return frontier
