"""Deterministic orchestration only: workflows call activities, wait on timers and react to signals.

The names they share with the other layers (workflow ids and signals: `llm_optimizer/ids.py`; search attributes:
`runtime/search_attributes.py`) live below them, so nothing below imports this package.
"""

from __future__ import annotations

from workflows.canary_rollout import CanaryRollout
from workflows.exploration import Exploration
from workflows.ingestion import IngestionWorkflow
from workflows.optimization_cycle import OptimizationCycle
from workflows.quality_evaluation import QualityEvaluation
from workflows.storage_maintenance import StorageMaintenance
from workflows.threshold_watcher import ThresholdWatcher

# What the worker registers.
ALL_WORKFLOWS: list[type] = [
    IngestionWorkflow,
    OptimizationCycle,
    CanaryRollout,
    Exploration,
    StorageMaintenance,
    QualityEvaluation,
    ThresholdWatcher,
]

__all__ = [
    "ALL_WORKFLOWS",
    "CanaryRollout",
    "Exploration",
    "IngestionWorkflow",
    "OptimizationCycle",
    "QualityEvaluation",
    "StorageMaintenance",
    "ThresholdWatcher",
]
