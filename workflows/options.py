"""Activity options shared by the workflows: always a timeout; retries with a cap, never for our own refusals."""

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

# Our exception classes that retrying cannot fix (a wrong version, an orchestrator that refuses the config).
NON_RETRYABLE = ["ValidationFailed", "OrchestratorRejected"]

ACTIVITY: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=2),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), non_retryable_error_types=NON_RETRYABLE),
}

# Postgres refusing the write itself (psycopg's exception class names): a version that does not exist, a share out
# of range. The same request fails the same way on every attempt, so retrying would only hide it.
INTEGRITY_ERRORS = ["ForeignKeyViolation", "CheckViolation", "NotNullViolation"]

# Traffic changes: what the registry refuses fails at once, and the workflow decides (the cycle alerts instead of
# staying in ROLLING_BACK; docs/operations.md).
TRAFFIC: dict[str, Any] = {
    **ACTIVITY,
    "retry_policy": RetryPolicy(
        maximum_interval=timedelta(seconds=30), non_retryable_error_types=[*NON_RETRYABLE, *INTEGRITY_ERRORS]
    ),
}
