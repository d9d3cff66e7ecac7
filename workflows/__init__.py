"""Deterministic orchestration only: workflows call activities, wait on timers and react to signals."""

from workflows.ab_experiment import ABExperiment
from workflows.canary_rollout import CanaryRollout
from workflows.ingestion import IngestionWorkflow
from workflows.optimization_cycle import OptimizationCycle

ALL_WORKFLOWS = [IngestionWorkflow, OptimizationCycle, CanaryRollout, ABExperiment]

__all__ = ["ALL_WORKFLOWS", "ABExperiment", "CanaryRollout", "IngestionWorkflow", "OptimizationCycle"]
