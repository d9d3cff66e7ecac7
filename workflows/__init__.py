"""Deterministic orchestration only: workflows call activities, wait on timers and react to signals.

The workflow classes load when first asked for (`from workflows import OptimizationCycle`, `ALL_WORKFLOWS`), not
with the package: the light modules beside them (`workflows.ids`, `workflows.search_attributes`) are read by every
layer, the activities included, which the workflow modules themselves import to call them by reference.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workflows.canary_rollout import CanaryRollout
    from workflows.exploration import Exploration
    from workflows.ingestion import IngestionWorkflow
    from workflows.optimization_cycle import OptimizationCycle
    from workflows.quality_evaluation import QualityEvaluation
    from workflows.storage_maintenance import StorageMaintenance
    from workflows.threshold_watcher import ThresholdWatcher

    ALL_WORKFLOWS: list[type]

# Each workflow class -> its module; ALL_WORKFLOWS (what the worker registers) is all of them, in this order.
_MODULES = {
    "IngestionWorkflow": "workflows.ingestion",
    "OptimizationCycle": "workflows.optimization_cycle",
    "CanaryRollout": "workflows.canary_rollout",
    "Exploration": "workflows.exploration",
    "StorageMaintenance": "workflows.storage_maintenance",
    "QualityEvaluation": "workflows.quality_evaluation",
    "ThresholdWatcher": "workflows.threshold_watcher",
}


def __getattr__(name: str) -> Any:
    if name == "ALL_WORKFLOWS":
        return [__getattr__(workflow) for workflow in _MODULES]
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name]), name)
    raise AttributeError(f"module 'workflows' has no attribute {name!r}")


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
