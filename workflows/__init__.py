"""Deterministic orchestration only: workflows call activities, wait on timers and react to signals."""

from workflows.ingestion import IngestionWorkflow

ALL_WORKFLOWS = [IngestionWorkflow]

__all__ = ["ALL_WORKFLOWS", "IngestionWorkflow"]
