"""Deterministic orchestration only: workflows call activities, wait on timers and react to signals."""

from workflows.canary_rollout import CanaryRollout
from workflows.exploration import Exploration
from workflows.ingestion import IngestionWorkflow
from workflows.optimization_cycle import OptimizationCycle
from workflows.quality_evaluation import QualityEvaluation
from workflows.storage_maintenance import StorageMaintenance
from workflows.threshold_watcher import ThresholdWatcher

ALL_WORKFLOWS = [
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
