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
