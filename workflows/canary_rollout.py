"""`CanaryRollout`: move traffic to a new config in stages, judge each stage, promote or roll back.

Operators can promote, roll back, pause, resume or stop it at any moment. A rollout is never left half-done:
cancellation (for example the parent cycle closing) rolls the traffic back before the workflow ends.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow

from workflows.options import ACTIVITY
from workflows.traffic import set_traffic

with workflow.unsafe.imports_passed_through():
    from llm_optimizer.control import (
        EmergencyStopRequest,
        JudgeRequest,
        PauseRequest,
        PayloadRefused,
        PromoteRequest,
        ResumeRequest,
        RollbackRequest,
        RolloutInput,
        RolloutOutcome,
        RolloutProgress,
        RolloutRecord,
        RolloutStatus,
        StageVerdict,
        operator_request,
    )
    from llm_optimizer.judge import CanaryVerdict


@workflow.defn(name="CanaryRollout")
class CanaryRollout:
    @workflow.init
    def __init__(self, input: RolloutInput) -> None:
        self.input = input
        self.stage = 0
        self.percent = 0.0
        self.paused = False
        self.promote_request: PromoteRequest | None = None
        self.rollback_reason: str | None = None
        self.verdicts: list[StageVerdict] = []
        self.deadline = None
        self.time_left_when_paused: float | None = None
        self.outcome: RolloutOutcome | None = None
        self.seen_requests: set[str] = set()
        self.refusals: list[str] = []

    @workflow.run
    async def run(self, input: RolloutInput) -> RolloutOutcome:
        await self._record("running")
        try:
            self.outcome = await self._run_stages()
        except asyncio.CancelledError:
            # Cancelled (by an operator, or because the parent closed): put the traffic back, then end.
            self.outcome = await self._roll_back("the rollout was cancelled")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.outcome

    async def _run_stages(self) -> RolloutOutcome:
        stages = self.input.stages
        # The last stage judged before 100% is the promotion gate; it pools every request of the new version since
        # the rollout began (or since its exploration began), so the floor is judged on the most data there is.
        gate = max((i for i, s in enumerate(stages) if s.percent < 100), default=-1)
        evidence_since = self.input.evidence_since or workflow.now()
        index = 0
        while index < len(stages):
            stage = stages[index]
            self.stage, self.percent = index, stage.percent
            await self._report_progress()
            if stage.percent >= 100:
                if self.input.strategy == "blue_green" and stage.bake_s > 0:
                    return await self._switch_and_watch(index, stage.bake_s)
                return await self._promote()
            await self._set_traffic(self.input.from_version, self.input.to_version, stage.percent)
            attempt = 0
            started = workflow.now()  # an extension judges the whole stage so far: more samples each time
            while True:
                await self._bake(stage.bake_s)
                if self.rollback_reason is not None:
                    return await self._roll_back(self.rollback_reason)
                if self.promote_request is not None:
                    to_end, self.promote_request = self.promote_request.to_end, None
                    if to_end:
                        return await self._promote()
                    break  # the operator advanced the stage without waiting for its verdict
                if index == gate and self.input.strategy == "canary":
                    verdict = await self._judge(min(started, evidence_since), index, attempt, stage.percent, gate=True)
                else:
                    verdict = await self._judge(started, index, attempt, stage.percent)
                if verdict.verdict == "degraded":
                    return await self._roll_back("degraded at " + f"{stage.percent:g}%: " + "; ".join(verdict.reasons))
                if verdict.verdict == "healthy":
                    break
                attempt += 1
                if attempt > self.input.max_extensions:
                    return await self._roll_back(
                        f"still inconclusive at {stage.percent:g}% after {self.input.max_extensions} extensions: "
                        + "; ".join(verdict.reasons)
                    )
            index += 1
        return await self._promote()

    async def _switch_and_watch(self, index: int, bake_s: float) -> RolloutOutcome:
        """Blue-green: all traffic to the new version, the old one kept; judged against the traffic before."""
        switched = workflow.now()
        before = (switched - timedelta(seconds=bake_s), switched)
        await self._set_traffic(self.input.from_version, self.input.to_version, 100.0)
        await self._bake(bake_s)
        if self.rollback_reason is not None:
            return await self._roll_back(self.rollback_reason)
        if self.promote_request is not None:
            return await self._promote()
        verdict = await self._judge(switched, index, 0, 100.0, baseline_window=before)
        if verdict.verdict == "degraded":
            return await self._roll_back("degraded after the switch: " + "; ".join(verdict.reasons))
        return await self._promote()

    async def _report_progress(self) -> None:
        parent = workflow.info().parent
        if parent is None:
            return
        try:  # best effort: a parent that has closed must not fail the rollout
            await workflow.get_external_workflow_handle(parent.workflow_id, run_id=parent.run_id).signal(
                "rollout_progress",
                RolloutProgress(
                    rollout_id=self.input.rollout_id,
                    to_version=self.input.to_version,
                    stage=self.stage,
                    percent=self.percent,
                ),
            )
        except Exception as err:
            workflow.logger.warning("could not report progress to %s: %s", parent.workflow_id, err)

    async def _bake(self, seconds: float) -> None:
        """Wait `seconds` of unpaused time; promote, rollback and stop cut it short."""
        remaining = seconds
        while remaining > 0:
            if self.rollback_reason is not None or self.promote_request is not None:
                return
            if self.paused:
                self.time_left_when_paused = remaining
                await workflow.wait_condition(lambda: not self.paused or self.rollback_reason is not None)
                self.time_left_when_paused = None
                continue
            self.deadline = workflow.now() + timedelta(seconds=remaining)
            try:
                await workflow.wait_condition(
                    lambda: self.paused or self.rollback_reason is not None or self.promote_request is not None,
                    timeout=timedelta(seconds=remaining),
                )
            except TimeoutError:
                return
            finally:
                remaining = max(0.0, (self.deadline - workflow.now()).total_seconds())
                self.deadline = None

    async def _judge(
        self, started, stage: int, attempt: int, percent: float, baseline_window=None, gate: bool = False
    ) -> CanaryVerdict:
        verdict = await workflow.execute_activity(
            "judge_stage",
            JudgeRequest(
                rollout_id=self.input.rollout_id,
                service=self.input.service,
                baseline_version=self.input.from_version,
                canary_version=self.input.to_version,
                window_start=started,
                window_end=workflow.now(),
                baseline_window=baseline_window,
                stage=stage,
                attempt=attempt,
                percent=percent,
                thresholds=self.input.thresholds.model_copy(update={"promotion_gate": gate}),
            ),
            result_type=CanaryVerdict,
            **ACTIVITY,
        )
        self.verdicts.append(StageVerdict(stage=stage, attempt=attempt, percent=percent, verdict=verdict))
        return verdict

    async def _promote(self) -> RolloutOutcome:
        self.percent = 100.0
        await self._set_traffic(self.input.to_version, None, 0.0)
        return await self._finish("promoted", f"promoted {self.input.to_version} to all traffic")

    async def _roll_back(self, reason: str) -> RolloutOutcome:
        self.percent = 0.0
        await self._set_traffic(self.input.from_version, None, 0.0)
        return await self._finish("rolled_back", reason)

    async def _finish(self, result: str, reason: str) -> RolloutOutcome:
        final = self.input.to_version if result == "promoted" else self.input.from_version
        await self._record(result, reason=reason, finished=True)
        return RolloutOutcome(
            rollout_id=self.input.rollout_id,
            service=self.input.service,
            result=result,
            reason=reason,
            final_version=final,
            verdicts=self.verdicts,
        )

    async def _set_traffic(self, active: str, canary: str | None, percent: float) -> None:
        await set_traffic(self.input.rollout_id, self.input.service, active, canary, percent)

    async def _record(self, state: str, *, reason: str | None = None, finished: bool = False) -> None:
        await workflow.execute_activity(
            "record_rollout",
            RolloutRecord(
                rollout_id=self.input.rollout_id,
                service=self.input.service,
                from_version=self.input.from_version,
                to_version=self.input.to_version,
                strategy=self.input.strategy,
                state=state,
                reason=reason,
                finished=finished,
            ),
            **ACTIVITY,
        )

    # ---- operator controls. Signals are idempotent (a repeated request_id is ignored) and take their inputs as
    # they come (`*inputs`), so that no input can fail a workflow task: what is not one valid JSON object is refused
    # and shown in `status` (docs/operations.md). ----

    def _accept(self, name: str, inputs: tuple[Any, ...], model: type) -> Any | None:
        try:
            request = operator_request(model, inputs)
        except PayloadRefused as err:
            self.refusals = [*self.refusals, f"{name} refused: {err}"[:500]][-20:]
            return None
        if request.request_id:
            if request.request_id in self.seen_requests:
                return None
            self.seen_requests.add(request.request_id)
        return request

    @workflow.signal
    def promote(self, *inputs: Any) -> None:
        request = self._accept("promote", inputs, PromoteRequest)
        if request is not None and self.outcome is None:
            self.promote_request = request

    @workflow.signal
    def rollback(self, *inputs: Any) -> None:
        request = self._accept("rollback", inputs, RollbackRequest)
        if request is not None and self.rollback_reason is None:
            self.rollback_reason = "rolled back by an operator" + (f": {request.reason}" if request.reason else "")

    @workflow.signal
    def emergency_stop(self, *inputs: Any) -> None:
        request = self._accept("emergency_stop", inputs, EmergencyStopRequest)
        if request is not None:
            self.rollback_reason = "emergency stop" + (f": {request.reason}" if request.reason else "")

    @workflow.signal
    def pause(self, *inputs: Any) -> None:
        if self._accept("pause", inputs, PauseRequest) is not None:
            self.paused = True

    @workflow.signal
    def resume(self, *inputs: Any) -> None:
        if self._accept("resume", inputs, ResumeRequest) is not None:
            self.paused = False

    @workflow.query
    def status(self, *inputs: Any) -> RolloutStatus:
        """Takes no input; whatever a caller sends is ignored, so that it always answers."""
        if self.time_left_when_paused is not None:
            left = self.time_left_when_paused
        elif self.deadline is not None:
            left = max(0.0, (self.deadline - workflow.now()).total_seconds())
        else:
            left = None
        return RolloutStatus(
            rollout_id=self.input.rollout_id,
            stage=self.stage,
            percent=self.percent,
            paused=self.paused,
            time_left_s=left,
            verdicts=self.verdicts,
            finished=self.outcome,
            refusals=self.refusals,
        )
