"""Activity options shared by the workflows: timeouts sized to the work, heartbeats where it can run long, retries
with a cap, never for our own refusals (docs/architecture.md "Timeouts and dead workers").

A worker that dies mid-activity is noticed by its heartbeats stopping (HEARTBEAT) or by the start-to-close timeout,
whichever comes first; its work is then retried, after RETRY's first interval, by any worker of the task queue.
"""

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

# Our exception classes that retrying cannot fix (a wrong version, an orchestrator that refuses the config).
NON_RETRYABLE = ["ValidationFailed", "OrchestratorRejected"]

# Activities marked `heartbeating` (activities/loop.py) beat every second; this long without one, the worker is
# taken for dead.
HEARTBEAT = timedelta(seconds=5)

# Retried at once, then at most every 10 s: a Postgres outage of half a minute costs seconds after it ends.
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=NON_RETRYABLE,
)

# The loop's reads of a window and its calls to the model registry and governance (decide, prepare_canary,
# explore_round, maintain_storage, ...): seconds usually, a minute or two at worst. They
# heartbeat (activities/heartbeats.py), so a dead worker's attempt is retried after HEARTBEAT, not after two minutes.
ACTIVITY: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=2),
    "heartbeat_timeout": HEARTBEAT,
    "retry_policy": RETRY,
}

# A few rows in one transaction (record_rollout): milliseconds; heartbeats notice a dead worker within seconds.
QUICK: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=15),
    "heartbeat_timeout": HEARTBEAT,
    "retry_policy": RETRY,
}

# Postgres refusing the write itself (psycopg's exception class names): a version that does not exist, a share out
# of range. The same request fails the same way on every attempt, so retrying would only hide it.
INTEGRITY_ERRORS = ["ForeignKeyViolation", "CheckViolation", "NotNullViolation"]

# Traffic changes: one transaction, then the orchestrator push (integrations.timeout_s, 5 s by default). What the
# registry refuses fails at once, and the workflow decides (the cycle alerts instead of staying in ROLLING_BACK;
# docs/operations.md).
TRAFFIC: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "heartbeat_timeout": HEARTBEAT,
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=10),
        non_retryable_error_types=[*NON_RETRYABLE, *INTEGRITY_ERRORS],
    ),
}


def waiting_for_data(wait_s: float) -> dict[str, Any]:
    """An activity that first waits up to `wait_s` for its window's events to land (judge_stage, observe), then reads
    the window: the wait, plus a minute for the reads; heartbeats all along."""
    return {
        "start_to_close_timeout": timedelta(seconds=wait_s + 60),
        "heartbeat_timeout": HEARTBEAT,
        "retry_policy": RETRY,
    }


# The cycle's observation (ObserveRequest.data_wait_s, 30 s by default).
OBSERVE: dict[str, Any] = waiting_for_data(30)
