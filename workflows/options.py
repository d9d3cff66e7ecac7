"""Activity options shared by the workflows: timeouts sized to the work, heartbeats where it can run long, retries
with a cap, never for our own refusals (docs/architecture.md "Timeouts and dead workers").

A worker that dies mid-activity is noticed by its heartbeats stopping (HEARTBEAT) or by the start-to-close timeout,
whichever comes first; its work is then retried, after RETRY's first interval, by any worker of the task queue.

Options are `ActivityOptions` (a TypedDict) splatted into `workflow.execute_activity_method(...)`: a type checker
refuses a misspelt or mistyped option, at the definition and at the call.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypedDict

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

# Passed through, as every workflow module imports it: the sandbox must not load its own copy of the classes, or an
# `except PayloadRefused` in a workflow would not catch the one llm_optimizer.payloads raises.
with workflow.unsafe.imports_passed_through():
    from llm_optimizer.errors import OrchestratorRejected, ValidationFailed


class ActivityOptions(TypedDict):
    """What every activity call of the workflows sets (the keyword arguments of `execute_activity_method`)."""

    start_to_close_timeout: timedelta
    heartbeat_timeout: timedelta
    retry_policy: RetryPolicy


def error_types(*errors: type[BaseException]) -> list[str]:
    """The failure types Temporal records for these exception classes (an activity's error becomes an
    ApplicationError whose `type` is its class name): what `non_retryable_error_types` takes."""
    return [error.__name__ for error in errors]


def failed_with(err: BaseException | None, *errors: type[BaseException]) -> bool:
    """Whether `err` (an ActivityError, ChildWorkflowError, ...) was caused by one of our exception classes, raised
    by an activity: the one way workflows match an error by its type."""
    names = error_types(*errors)
    while err is not None:
        if isinstance(err, ApplicationError) and err.type in names:
            return True
        err = err.__cause__
    return False


def with_subclasses(*errors: type[BaseException]) -> list[type[BaseException]]:
    """`errors` and every subclass of them (llm_optimizer/errors.py defines them all, so none is missed): Temporal
    matches `non_retryable_error_types` by the exact class name, not by subclass, so a retry policy names each."""
    found: list[type[BaseException]] = []
    for error in errors:
        for cls in [error, *with_subclasses(*error.__subclasses__())]:
            if cls not in found:
                found.append(cls)
    return found


# Our exception classes that retrying cannot fix (a wrong input, an orchestrator that refuses the config), each with
# its subclasses (UnsafeYaml, VersionConflict, ...: a wrong input too).
NON_RETRYABLE = error_types(*with_subclasses(ValidationFailed, OrchestratorRejected))

# Activities marked `heartbeating` (activities/heartbeats.py) beat every second; this long without one, the worker is
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
ACTIVITY = ActivityOptions(start_to_close_timeout=timedelta(minutes=2), heartbeat_timeout=HEARTBEAT, retry_policy=RETRY)

# A few rows in one transaction (record_rollout): milliseconds; heartbeats notice a dead worker within seconds.
QUICK = ActivityOptions(start_to_close_timeout=timedelta(seconds=15), heartbeat_timeout=HEARTBEAT, retry_policy=RETRY)

# Postgres refusing the write itself (psycopg's exception class names, `psycopg.errors`): a version that does not
# exist, a share out of range. The same request fails the same way on every attempt, so retrying would only hide it.
# Named, not imported: the workflows' sandbox does not load the database driver.
INTEGRITY_ERRORS = ["ForeignKeyViolation", "CheckViolation", "NotNullViolation"]

# Traffic changes: one transaction, then the orchestrator push (integrations.timeout_s, 5 s by default). What the
# registry refuses fails at once, and the workflow decides (the cycle alerts instead of staying in ROLLING_BACK;
# docs/operations.md).
TRAFFIC = ActivityOptions(
    start_to_close_timeout=timedelta(seconds=30),
    heartbeat_timeout=HEARTBEAT,
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=10),
        non_retryable_error_types=[*NON_RETRYABLE, *INTEGRITY_ERRORS],
    ),
)


def within(options: ActivityOptions, seconds: float) -> ActivityOptions:
    """`options` with a start-to-close timeout of `seconds`: for work whose length the request says."""
    return ActivityOptions(
        start_to_close_timeout=timedelta(seconds=seconds),
        heartbeat_timeout=options["heartbeat_timeout"],
        retry_policy=options["retry_policy"],
    )


def waiting_for_data(wait_s: float) -> ActivityOptions:
    """An activity that first waits up to `wait_s` for its window's events to land (judge_stage, observe), then reads
    the window: the wait, plus a minute for the reads; heartbeats all along."""
    return within(ACTIVITY, wait_s + 60)


# The cycle's observation (ObserveRequest.data_wait_s, 30 s by default).
OBSERVE = waiting_for_data(30)
