"""`ThresholdWatcher`: the fast path of every cycle on a task queue, kept off the cycles' histories.

One long-running `watch_thresholds` activity at a time checks each idle cycle's live config against its hard limits
(and its Sentinel alerts) every fast-path window, and signals `threshold_breached` only to a cycle with a breach: a
quiet cycle's history grows by nothing between its runs. The worker starts one per task queue (worker.py).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.thresholds import ThresholdActivities
    from llm_optimizer.payloads import WatchInput, WatchReport

RUNS_PER_HISTORY = 24  # a watch runs an hour by default: a day per history


@workflow.defn(name="ThresholdWatcher")
class ThresholdWatcher:
    @workflow.init
    def __init__(self, input: WatchInput) -> None:
        self.input = input
        self.last: WatchReport | None = None

    @workflow.run
    async def run(self, input: WatchInput) -> None:
        for _ in range(RUNS_PER_HISTORY):
            workflow.set_current_details(self._details())
            self.last = await workflow.execute_activity_method(
                ThresholdActivities.watch_thresholds,
                input,
                start_to_close_timeout=timedelta(seconds=input.run_s + 120),
                heartbeat_timeout=timedelta(seconds=max(30.0, 3 * input.list_every_s)),
                # A watch that fails (Temporal or Postgres away) is started again, for as long as it takes.
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
                summary=f"watch every idle cycle on {input.task_queue} for {input.run_s / 60:g} min",
            )
            input = input.model_copy(
                update={"runs_done": input.runs_done + 1, "breaches": input.breaches + len(self.last.breaches)}
            )
            self.input = input
            if workflow.info().is_continue_as_new_suggested():
                break
        workflow.set_current_details(self._details())
        workflow.continue_as_new(input)

    def _details(self) -> str:
        """The watcher's current details in the Temporal UI: what it watches and what it last found."""
        lines = [
            f"**Watching** the running cycles on `{self.input.task_queue}`: each idle cycle's live config against its "
            "hard limits, and its Sentinel alerts, once per fast-path window; a breach signals that cycle.",
            "",
            f"Watches done: {self.input.runs_done}; breaches signalled: {self.input.breaches}.",
        ]
        if self.last is not None:
            watched = ", ".join(self.last.cycles) or "none"
            lines += ["", f"Last watch: {self.last.checks} checks of {watched}."]
            lines += [f"- breach: {b}" for b in self.last.breaches[-5:]]
        return "\n".join(lines)

    @workflow.query(description="What the watcher watches, and what its last watch checked and found.")
    def status(self, *inputs: object) -> WatchReport | None:
        return self.last
