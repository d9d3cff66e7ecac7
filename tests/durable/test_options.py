"""workflows/options.py: errors are matched by their type as Temporal records it, never by their text."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from llm_optimizer.errors import OrchestratorRejected, SettingsError
from workflows.options import NON_RETRYABLE, RETRY, TRAFFIC, failed_with


def activity_error(cause: BaseException) -> ActivityError:
    """An ActivityError as a workflow sees it: the activity's failure is its cause."""
    err = ActivityError(
        "Activity task failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="set_traffic",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    err.__cause__ = cause
    return err


def test_an_activity_failure_is_matched_by_its_exception_class():
    refused = activity_error(ApplicationError("the gateway said 422", type="OrchestratorRejected"))
    assert failed_with(refused, OrchestratorRejected)
    assert failed_with(refused, SettingsError, OrchestratorRejected)
    assert not failed_with(refused, SettingsError)
    # The text says nothing: a message naming the class is not its type.
    named = activity_error(ApplicationError("OrchestratorRejected: no", type="HTTPStatusError"))
    assert not failed_with(named, OrchestratorRejected)
    assert not failed_with(None, OrchestratorRejected)


def test_retry_policies_name_our_exception_classes_as_recorded_histories_do():
    # Renaming one of these classes changes what running workflows' retry policies refuse to retry. Temporal matches
    # the exact name, so a subclass of ValidationFailed (a wrong input too) is named as well.
    assert NON_RETRYABLE == [
        "ValidationFailed",
        "UnsafeYaml",
        "Undecodable",
        "VersionConflict",
        "ExportTooLarge",
        "OrchestratorRejected",
    ]
    assert RETRY.non_retryable_error_types == NON_RETRYABLE
    traffic = TRAFFIC["retry_policy"].non_retryable_error_types
    assert traffic is not None and set(NON_RETRYABLE) <= set(traffic) and "ForeignKeyViolation" in traffic
