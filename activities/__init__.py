"""Thin, idempotent adapters between Temporal and the domain: read through the storage repositories, call a
function, write.

One module per feature, each with a small class holding only what its activities need, all on the worker's one
pool of Postgres connections: `decide` (observe, decide), `thresholds` (check_thresholds, watch_thresholds),
`rollout` (prepare_canary, set_traffic, judge_stage, record_rollout, version_exists), `exploration`
(prepare_arms, explore_round), `audit` (audit, audit_batch), `maintenance` (maintain_storage), `ingestion`
(consume_topic) and `evaluation` (evaluate_quality). Each is idempotent (keyed by decision id, rollout id and stage,
or audit id), so a retry after a crash writes nothing twice, and no transaction is open across a network call:
read, then call (governance, the model registry, the orchestrator, Temporal), then write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from activities.audit import AuditActivities
from activities.decide import DecisionActivities
from activities.evaluation import EvaluationActivities
from activities.exploration import ExplorationActivities
from activities.ingestion import IngestionActivities
from activities.maintenance import MaintenanceActivities
from activities.rollout import RolloutActivities
from activities.thresholds import ThresholdActivities
from llm_optimizer.pricing import PriceBook, PricingCatalog
from llm_optimizer.settings import Settings
from storage.db import Database


class LoopActivitySet:
    """The control loop's activities (OptimizationCycle, CanaryRollout, Exploration, ThresholdWatcher,
    StorageMaintenance), one object per feature, all on one pool: the worker's (`db`), or, by default, one of this
    set's own, closed by `close` (what a test builds)."""

    def __init__(self, settings: Settings, catalog: PriceBook | PricingCatalog, db: Database | None = None):
        self._own_db = db is None
        self.db = db or Database(settings)
        self.decisions = DecisionActivities(settings, catalog, self.db)
        self.thresholds = ThresholdActivities(self.db)
        self.rollout = RolloutActivities(settings, self.db)
        self.exploration = ExplorationActivities(self.db)
        self.audit = AuditActivities(self.db)
        self.maintenance = MaintenanceActivities(settings, self.db)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.decisions.observe,
            self.thresholds.check_thresholds,
            self.thresholds.watch_thresholds,
            self.decisions.decide,
            self.rollout.prepare_canary,
            self.exploration.prepare_arms,
            self.exploration.explore_round,
            self.audit.audit,
            self.audit.audit_batch,
            self.rollout.set_traffic,
            self.rollout.judge_stage,
            self.rollout.record_rollout,
            self.maintenance.maintain_storage,
            self.rollout.version_exists,
        ]

    def close(self) -> None:
        if self._own_db:
            self.db.close()


class ActivityRegistry:
    """Every activity of the worker, built once with its settings and shared resources: the price book, and the
    one pool of Postgres connections that every activity uses (`database.pool_size`), closed with the registry."""

    def __init__(self, settings: Settings, catalog: PriceBook | PricingCatalog):
        # `catalog`: the process's price book (`pricing.price_book(settings)`), shared by ingestion and the loop.
        self.db = Database(settings, name="worker")
        self.ingestion = IngestionActivities(settings, catalog, self.db)
        self.loop = LoopActivitySet(settings, catalog, self.db)
        self.evaluation = EvaluationActivities(settings, self.db)

    def all(self) -> list[Callable[..., Any]]:
        return [self.ingestion.consume_topic, *self.loop.all(), *self.evaluation.all()]

    async def close(self) -> None:
        await self.ingestion.close()
        await asyncio.to_thread(self.db.close)  # waits for the pool's threads
