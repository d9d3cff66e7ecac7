"""Every workflow id (and id prefix) of the project, in one place: the starters, the API, the worker, the activities
and the workflows themselves build and parse ids only through these functions (docs/operations.md lists them),
and name the signals the workflows share with the activities and the API.

Names only, in the domain (no Temporal, no I/O), so that every layer may import them and none imports `workflows/`
to find a workflow.
"""

from __future__ import annotations

CYCLE_PREFIX = "optimization-cycle/"
# The cycle's internal signals (one dynamic handler, so that the Temporal UI does not offer them to operators): the
# threshold watcher's breaches and a child rollout's progress.
THRESHOLD_BREACHED = "threshold_breached"
ROLLOUT_PROGRESS = "rollout_progress"


def cycle_id(service: str) -> str:
    """The service's long-running OptimizationCycle."""
    return f"{CYCLE_PREFIX}{service}"


def service_of_cycle(workflow_id: str) -> str:
    """The service a cycle's workflow id names (the inverse of `cycle_id`)."""
    return workflow_id.removeprefix(CYCLE_PREFIX)


def running_cycles_query(task_queue: str) -> str:
    """The visibility query listing the running cycles on a task queue."""
    return f'WorkflowType = "OptimizationCycle" AND ExecutionStatus = "Running" AND TaskQueue = "{task_queue}"'


def canary_id(service: str, version: str) -> str:
    """The CanaryRollout of `version` (a child of the cycle)."""
    return f"canary/{service}/{version}"


def exploration_id(service: str, decision_id: str) -> str:
    """The Exploration a decision started (a child of the cycle)."""
    return f"exploration/{service}/{decision_id[:8]}"


def rollback_change_id(service: str, cycle_record_id: str) -> str:
    """The key of the traffic change of a cycle's rollback (not a workflow: the `set_traffic` write's id)."""
    return f"rollback/{service}/{cycle_record_id}"


def schedule_id(service: str) -> str:
    """The Temporal Schedule of a service's one-shot cycles (batch mode, `starter.cycle schedule create`)."""
    return f"optimization-schedule/{service}"


def batch_cycle_id(service: str) -> str:
    """The workflow id the Schedule gives each one-shot cycle."""
    return f"optimization-batch/{service}"


def watcher_id(task_queue: str) -> str:
    """The task queue's ThresholdWatcher (the cycles' fast path)."""
    return f"threshold-watcher/{task_queue}"


def ingestion_id(topic: str) -> str:
    """The Ingestion workflow of a Kafka topic."""
    return f"ingestion/{topic}"


# The long-running periodic workflows (starter/periodic.py): one of each per deployment.
QUALITY_EVALUATION_ID = "quality-evaluation"
STORAGE_MAINTENANCE_ID = "storage-maintenance"
