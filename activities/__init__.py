"""Thin, idempotent adapters between Temporal and the domain: open a connection, call a function, write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.evaluation import EvaluationActivities
from activities.ingestion import IngestionActivities
from activities.loop import LoopActivities
from llm_optimizer.pricing import Prices
from llm_optimizer.settings import Settings


class ActivityRegistry:
    """Every activity of the worker, built once with its settings and shared resources."""

    def __init__(self, settings: Settings, catalog: Prices):
        # `catalog`: the process's price book (`pricing.price_book(settings)`), shared by ingestion and the loop.
        self.ingestion = IngestionActivities(settings, catalog)
        self.loop = LoopActivities(settings, catalog)
        self.evaluation = EvaluationActivities(settings)

    def all(self) -> list[Callable[..., Any]]:
        return [self.ingestion.consume_topic, *self.loop.all(), *self.evaluation.all()]

    async def close(self) -> None:
        await self.ingestion.close()
