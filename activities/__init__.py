"""Thin, idempotent adapters between Temporal and the domain: read through the storage repositories, call a
function, write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from activities.evaluation import EvaluationActivities
from activities.ingestion import IngestionActivities
from activities.loop import LoopActivities
from llm_optimizer.pricing import PriceBook, PricingCatalog
from llm_optimizer.settings import Settings
from storage.db import Database


class ActivityRegistry:
    """Every activity of the worker, built once with its settings and shared resources: the price book, and the
    one pool of Postgres connections that every activity uses (`database.pool_size`), closed with the registry."""

    def __init__(self, settings: Settings, catalog: PriceBook | PricingCatalog):
        # `catalog`: the process's price book (`pricing.price_book(settings)`), shared by ingestion and the loop.
        self.db = Database(settings, name="worker")
        self.ingestion = IngestionActivities(settings, catalog, self.db)
        self.loop = LoopActivities(settings, catalog, self.db)
        self.evaluation = EvaluationActivities(settings, self.db)

    def all(self) -> list[Callable[..., Any]]:
        return [self.ingestion.consume_topic, *self.loop.all(), *self.evaluation.all()]

    async def close(self) -> None:
        await self.ingestion.close()
        await asyncio.to_thread(self.db.close)  # waits for the pool's threads
