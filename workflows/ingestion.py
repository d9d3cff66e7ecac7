"""The `Ingestion` workflow: one per topic, forever consuming through the `consume_topic` activity.

Each run of the activity is tried once; the workflow retries it itself, with the backoff a retry policy would
use, so that it sees every failure: its `status` says how many runs failed in a row and why, and whether the lag
keeps rising (a consumer stuck or falling behind is visible, docs/troubleshooting.md). Histories recorded before
this contain no failed run (retries were Temporal's), so they replay the same.

It runs `input.consumers` of these activities at once, members of one consumer group: Temporal places each on any
worker of the task queue, and Kafka spreads the topic's partitions over them. A worker's death fails its runs by
heartbeat timeout and the group gives their partitions to the others; each consumer backs off and retries on its
own while the others go on. The totals are the sum of all the runs'.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, is_cancelled_exception

from workflows.options import failed_with

with workflow.unsafe.imports_passed_through():
    from activities.ingestion import RUN_BACKOFF_S, IngestionActivities
    from llm_optimizer.errors import SettingsError
    from llm_optimizer.payloads import ConsumeReport, ConsumeRequest, IngestCounts, IngestionInput, IngestionStatus
    from workflows.details import minutes

# Beyond Temporal's own suggestion, a bound that keeps each history short and cheap to replay; failed runs count
# too, so that a consumer failing for days still continues as new.
MAX_RUNS_PER_HISTORY = 200
CONSUMERS_PATCH = "ingestion-several-consumers"
FIRST_BACKOFF_S, MAX_BACKOFF_S = RUN_BACKOFF_S  # a consumer kept after a failed run waits as long
LAGS_KEPT = 8
MAX_ERROR_CHARS = 2000  # a query answer, not a log: the head of a long error says what it is


@workflow.defn(name="Ingestion")
class IngestionWorkflow:
    @workflow.init
    def __init__(self, input: IngestionInput) -> None:
        self.input = input
        self.totals = input.totals
        self.health = input.health.model_copy(deep=True)
        self.runs = 0
        self.failed_runs = 0
        self.lags: dict[int, int] = {}  # each consumer's lag after its last run: their sum is the topic's
        # Each consumer's failed runs in a row (its back-off); the health's `consecutive_failures` is the most of
        # them, so one consumer failing while the others succeed still shows, and turns the ingestion stuck.
        # A continued run starts each at what the health carried, as a single consumer always did.
        self.failures: dict[int, int] = dict.fromkeys(range(input.consumers), self.health.consecutive_failures)

    @workflow.run
    async def run(self, input: IngestionInput) -> IngestCounts:
        workflow.set_current_details(self._details())
        if workflow.patched(CONSUMERS_PATCH):
            await self._consumers(input.consumers)
        else:  # histories recorded before several consumers: one, in line
            await self._consume(0, 1)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(input.model_copy(update={"totals": self.totals, "health": self.health}))

    async def _consumers(self, n: int) -> None:
        """Run consumers 0..n-1 until the history is long enough; a non-retryable failure of one cancels the
        others and fails the workflow."""
        tasks = [asyncio.create_task(self._consume(i, n)) for i in range(n)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _consume(self, consumer: int, of: int) -> None:
        """One consumer's runs, one after the other; its failures back off on its own count, so one failing
        consumer does not slow the others."""
        input = self.input
        while self._more_runs():
            try:
                report = await workflow.execute_activity_method(
                    IngestionActivities.consume_topic,
                    ConsumeRequest(topic=input.topic, group_id=input.group_id, run_s=input.run_s, consumer=consumer),
                    start_to_close_timeout=timedelta(seconds=input.run_s + 120),
                    heartbeat_timeout=timedelta(seconds=input.heartbeat_timeout_s),
                    retry_policy=RetryPolicy(maximum_attempts=1),  # retried below, where the failure is seen
                    # TRY_CANCEL: a cancelled workflow stops at once. Safe because a batch in flight either
                    # commits its rows before its offsets or is redelivered and deduplicated.
                    cancellation_type=workflow.ActivityCancellationType.TRY_CANCEL,
                    summary=_summary(input.topic, input.run_s, input.group_id, consumer, of),
                )
            except ActivityError as err:
                if is_cancelled_exception(err):  # the workflow is being cancelled: stop, not retry
                    raise
                self._failed(err, consumer)
                if _non_retryable(err):
                    raise
                backoff = min(FIRST_BACKOFF_S * 2 ** (self.failures[consumer] - 1), MAX_BACKOFF_S)
                workflow.set_current_details(self._details())
                await workflow.sleep(backoff, summary=f"back off {minutes(backoff)} after a failed run")
                continue
            self._succeeded(report, consumer)
            workflow.set_current_details(self._details())

    def _more_runs(self) -> bool:
        runs = self.runs + self.failed_runs
        return runs < MAX_RUNS_PER_HISTORY and not workflow.info().is_continue_as_new_suggested()

    def _failed(self, err: ActivityError, consumer: int) -> None:
        # What the failed run committed before it failed: in its error (activities/ingestion.py), or in its last
        # heartbeat if it timed out; its rows are in Postgres and its offsets committed, so they count.
        cause = err.cause
        details = cause.details if isinstance(cause, ApplicationError) else ()
        if isinstance(cause, TimeoutError):
            details = cause.last_heartbeat_details
        if details and isinstance(details[0], dict):
            self.totals = self.totals.plus(IngestCounts.model_validate(details[0]))
        self.failed_runs += 1
        self.failures[consumer] = self.failures.get(consumer, 0) + 1
        self.health.consecutive_failures = max(self.failures.values())
        self.health.last_error = _describe(err)[:MAX_ERROR_CHARS]
        self.health.last_error_at = workflow.now()

    def _succeeded(self, report: ConsumeReport, consumer: int) -> None:
        self.totals = self.totals.plus(report)
        self.runs += 1
        self.failures[consumer] = 0
        self.health.consecutive_failures = max(self.failures.values())
        self.health.last_success_at = workflow.now()
        if report.lag is not None:
            # A consumer's lag covers only its partitions: the topic's is the sum of every consumer's latest.
            self.lags[consumer] = report.lag
            self.health.lags = [*self.health.lags, sum(self.lags.values())][-LAGS_KEPT:]

    def _details(self) -> str:
        """The ingestion's current details in the Temporal UI: what it reads, has landed, and whether it is stuck."""
        t, health = self.totals, self.health
        lines = [
            f"**{'Stuck' if health.stuck else 'Consuming'}** `{self.input.topic}` (group `{self.input.group_id}`) into "
            f"Postgres with {self.input.consumers} consumer(s), {minutes(self.input.run_s)} per activity run.",
            "",
            f"Landed {t.accepted:,} events in {t.batches:,} batches; {t.duplicates:,} duplicates skipped, "
            f"{t.dead_lettered:,} dead-lettered with their reason, {t.anomalies:,} Sentinel alerts.",
        ]
        if health.lags:
            lines += ["", f"Consumer lag after the last runs: {', '.join(f'{lag:,}' for lag in health.lags[-4:])}."]
        if health.last_error:
            lines += ["", f"Last error ({health.consecutive_failures} runs in a row): {health.last_error[:300]}"]
        return "\n".join(lines)

    @workflow.query(description="Totals landed, consumer lag, whether the consumer is stuck and its last error.")
    def status(self, *inputs: object) -> IngestionStatus:  # inputs ignored: a query always answers
        health = self.health
        return IngestionStatus(
            topic=self.input.topic,
            group_id=self.input.group_id,
            totals=self.totals,
            runs_in_this_history=self.runs,
            last_error=health.last_error,
            stuck=health.stuck,
            consecutive_failures=health.consecutive_failures,
            last_error_at=health.last_error_at,
            last_success_at=health.last_success_at,
            lag=health.lags[-1] if health.lags else None,
            lag_rising=health.lag_rising,
        )


def _summary(topic: str, run_s: int, group_id: str, consumer: int, of: int) -> str:
    if of == 1:  # as before several consumers
        return f"consume {topic} for {minutes(run_s)} (group {group_id})"
    return f"consume {topic} for {minutes(run_s)} (group {group_id}, consumer {consumer + 1} of {of})"


def _non_retryable(err: ActivityError) -> bool:
    """A failure retrying cannot help (a wrong setting): the ingestion fails loudly."""
    cause = err.cause
    return (isinstance(cause, ApplicationError) and cause.non_retryable) or failed_with(err, SettingsError)


def _describe(err: ActivityError) -> str:
    """The failure as the activity raised it: `Type: message`, or which timeout expired."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type}: {cause.message}" if cause.type else cause.message
    if isinstance(cause, TimeoutError):
        return f"activity timed out ({cause.type.name if cause.type else 'timeout'}): {cause.message}"
    return str(cause or err)
