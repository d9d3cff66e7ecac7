"""The `Ingestion` workflow: one per topic, forever consuming through the `consume_topic` activity."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from llm_optimizer.ingest import ConsumeRequest, IngestCounts, IngestionInput, IngestionStatus

# Beyond Temporal's own suggestion, a bound that keeps each history short and cheap to replay.
MAX_RUNS_PER_HISTORY = 200


@workflow.defn(name="Ingestion")
class IngestionWorkflow:
    @workflow.init
    def __init__(self, input: IngestionInput) -> None:
        self.input = input
        self.totals = input.totals
        self.runs = 0
        self.last_error: str | None = None

    @workflow.run
    async def run(self, input: IngestionInput) -> IngestCounts:
        while self.runs < MAX_RUNS_PER_HISTORY and not workflow.info().is_continue_as_new_suggested():
            try:
                report = await workflow.execute_activity(
                    "consume_topic",
                    ConsumeRequest(topic=input.topic, group_id=input.group_id, run_s=input.run_s),
                    result_type=IngestCounts,
                    start_to_close_timeout=timedelta(seconds=input.run_s + 120),
                    heartbeat_timeout=timedelta(seconds=input.heartbeat_timeout_s),
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=1),
                        maximum_interval=timedelta(seconds=30),
                        non_retryable_error_types=["SettingsError"],
                    ),
                    # TRY_CANCEL: a cancelled workflow stops at once. Safe because a batch in flight either
                    # commits its rows before its offsets or is redelivered and deduplicated.
                    cancellation_type=workflow.ActivityCancellationType.TRY_CANCEL,
                )
            except ActivityError as err:
                # Only non-retryable errors get here (retries are unlimited): a wrong setting. Fail loudly.
                self.last_error = str(err.cause or err)
                raise
            self.totals = self.totals.plus(report)
            self.runs += 1
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(input.model_copy(update={"totals": self.totals}))

    @workflow.query
    def status(self) -> IngestionStatus:
        return IngestionStatus(
            topic=self.input.topic,
            group_id=self.input.group_id,
            totals=self.totals,
            runs_in_this_history=self.runs,
            last_error=self.last_error,
        )
