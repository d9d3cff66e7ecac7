"""`ABExperiment`: a fixed traffic split between two versions until one wins significantly, then the winner
serves all traffic. A sample-ratio mismatch, the maximum duration or an operator's `stop` end it on the control."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow

from workflows.options import ACTIVITY
from workflows.traffic import set_traffic

with workflow.unsafe.imports_passed_through():
    from llm_optimizer.experiments import ABResult
    from llm_optimizer.payloads import (
        EvaluateRequest,
        ExperimentInput,
        ExperimentOutcome,
        PayloadRefused,
        StopRequest,
        operator_request,
    )
    from workflows.details import minutes
    from workflows.search_attributes import CONFIG_VERSION, ROLLOUT_STATE, SERVICE


@workflow.defn(name="ABExperiment")
class ABExperiment:
    @workflow.init
    def __init__(self, input: ExperimentInput) -> None:
        self.input = input
        self.last: ABResult | None = None
        self.stop_reason: str | None = None
        self.refused: list[str] = []

    @workflow.run
    async def run(self, input: ExperimentInput) -> ExperimentOutcome:
        # Added after experiments ran: patched() keeps their histories replaying. Found by Service="chat".
        tagged = workflow.patched("experiment-search-attributes")
        if tagged:
            workflow.upsert_search_attributes(
                [
                    SERVICE.value_set(input.service),
                    CONFIG_VERSION.value_set(input.treatment_version),
                    ROLLOUT_STATE.value_set("running"),
                ]
            )
        workflow.set_current_details(self._details())
        await self._split(input.control_version, input.treatment_version, input.policy.treatment_share * 100)
        # Counted from when the split is live: requests served before it are all control's and would read as a
        # sample ratio mismatch.
        started = workflow.now()
        while True:
            with contextlib.suppress(TimeoutError):  # the check interval passed without a stop
                await workflow.wait_condition(
                    lambda: self.stop_reason is not None,
                    timeout=timedelta(seconds=input.check_every_s),
                    timeout_summary=f"collect {minutes(input.check_every_s)} of both arms' traffic",
                )
            if self.stop_reason is not None:
                result = ABResult(
                    status="no_difference",
                    control_rate=self.last.control_rate if self.last else 0.0,
                    treatment_rate=self.last.treatment_rate if self.last else 0.0,
                    reason=f"stopped by an operator: {self.stop_reason}",
                )
                break
            result = await workflow.execute_activity(
                "evaluate_experiment",
                EvaluateRequest(
                    experiment_id=input.experiment_id,
                    service=input.service,
                    control_version=input.control_version,
                    treatment_version=input.treatment_version,
                    since=started,
                    until=workflow.now(),
                    policy=input.policy,
                    success_quality=input.success_quality,
                ),
                result_type=ABResult,
                summary=f"evaluate {input.treatment_version} against {input.control_version}",
                **ACTIVITY,
            )
            self.last = result
            workflow.set_current_details(self._details())
            if result.status != "running":
                break
        winner = input.treatment_version if result.status == "treatment_wins" else input.control_version
        await self._split(winner, None, 0)
        if tagged:
            workflow.upsert_search_attributes([ROLLOUT_STATE.value_set(result.status)])
        workflow.set_current_details(self._details(f"**Finished**: {winner} serves all traffic. {result.reason}"))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ExperimentOutcome(experiment_id=input.experiment_id, result=result, live_version=winner)

    def _details(self, headline: str | None = None) -> str:
        """The experiment's current details in the Temporal UI: the split, the success rates so far, why."""
        i = self.input
        lines = [
            headline
            or f"**Running**: {i.treatment_version} on {i.policy.treatment_share * 100:g}% of {i.service}'s traffic "
            f"against {i.control_version}, checked every {minutes(i.check_every_s)}.",
        ]
        if self.last is not None:
            lines += [
                "",
                f"Success rate: {i.control_version} {self.last.control_rate:.3f}, {i.treatment_version} "
                f"{self.last.treatment_rate:.3f} ({self.last.status}): {self.last.reason}",
            ]
        if self.stop_reason:
            lines += ["", f"Stopped: {self.stop_reason}"]
        return "\n".join(lines)

    async def _split(self, active: str, treatment: str | None, percent: float) -> None:
        await set_traffic(self.input.experiment_id, self.input.service, active, treatment, percent)

    # Handlers take their inputs as they come (`*inputs`), so that no input can fail a workflow task: what is not one
    # valid JSON object is refused and listed by the `refusals` query (docs/operations.md). Queries ignore inputs.

    @workflow.signal(
        description='End the experiment now; the control version keeps all traffic. {"reason"}. A refusal is listed '
        "by the `refusals` query."
    )
    def stop(self, *inputs: Any) -> None:
        try:
            request = operator_request(StopRequest, inputs)
        except PayloadRefused as err:
            self.refused = [*self.refused, f"stop refused: {err}"[:500]][-20:]
            return
        if self.stop_reason is None:
            self.stop_reason = request.reason or "stop requested"

    @workflow.query(description="The last evaluation: each arm's success rate, the status and why.")
    def status(self, *inputs: Any) -> ABResult | None:
        return self.last

    @workflow.query(description="Stop signals that were refused, and why (the last 20).")
    def refusals(self, *inputs: Any) -> list[str]:
        return self.refused
