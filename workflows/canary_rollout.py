"""`CanaryRollout`: move traffic to a new config in stages, judge each stage, promote or roll back.

Operators can promote, roll back, pause, resume or stop it at any moment. A rollout is never left half-done:
cancellation (for example the parent cycle closing) rolls the traffic back before the workflow ends.

A stage is judged only on a window that has landed (docs/architecture.md "Complete windows"): a judge that finds
the data late says `inconclusive: data late`, and the stage is extended without using an extension meant for too
little evidence. The Temporal UI shows what the rollout is doing (current details, summaries, the `RolloutState`
search attribute).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow

from llm_optimizer.ids import ROLLOUT_PROGRESS
from runtime.search_attributes import CONFIG_VERSION, ROLLOUT_STATE, SERVICE
from workflows.options import QUICK, waiting_for_data
from workflows.traffic import set_traffic

with workflow.unsafe.imports_passed_through():
    from activities.rollout import RolloutActivities
    from llm_optimizer.canary_judge import CanaryVerdict
    from llm_optimizer.payloads import (
        EmergencyStopRequest,
        JudgeRequest,
        PauseRequest,
        PromoteRequest,
        RequestLog,
        ResumeRequest,
        RollbackRequest,
        RolloutInput,
        RolloutOutcome,
        RolloutProgress,
        RolloutRecord,
        RolloutStatus,
        StageVerdict,
    )
    from workflows.handlers import take

# Added after histories were recorded (tests/histories): the RolloutState search attribute and the final split
# written with the rollout's record in one transaction. Older runs keep their command sequence.
V2 = "rollout-state-and-atomic-finish"
VERDICTS_SHOWN = 12  # lines of verdicts in the current details; `status` has them all


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
        self.deadline: datetime | None = None
        self.time_left_when_paused: float | None = None
        self.outcome: RolloutOutcome | None = None
        self.requests = RequestLog()  # request ids seen and refusals (workflows/handlers.py)
        self.v2 = False
        self.state = "starting"
        self.late_since: datetime | None = None  # the current stage's data has been late since then
        self.alerts: list[str] = []

    @workflow.run
    async def run(self, input: RolloutInput) -> RolloutOutcome:
        self.v2 = workflow.patched(V2)
        if self.v2:
            present = workflow.info().typed_search_attributes
            missing = [
                key.value_set(value)
                for key, value in ((SERVICE, input.service), (CONFIG_VERSION, input.to_version))
                if present.get(key) is None
            ]
            workflow.upsert_search_attributes([*missing, ROLLOUT_STATE.value_set(self.state)])
        self._show()
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
            self.late_since = None
            await self._report_progress()
            if stage.percent >= 100:
                if self.input.strategy == "blue_green" and stage.bake_s > 0:
                    return await self._switch_and_watch(index, stage.bake_s)
                return await self._promote()
            await self._set_traffic(
                self.input.from_version,
                self.input.to_version,
                stage.percent,
                f"set traffic {stage.percent:g}% to {self.input.to_version}",
            )
            attempt = 0  # every judgement of the stage (each has its own verdict row)
            extensions = 0  # those that found too little evidence: bounded by max_extensions
            started = workflow.now()  # an extension judges the whole stage so far: more samples each time
            while True:
                self._set_state("data_late" if self.late_since is not None else "baking")
                await self._bake(stage.bake_s, f"bake {stage.percent:g}% for {stage.bake_s:g} s")
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
                if verdict.data_late:
                    late_for = self._data_late()
                    if late_for >= self.input.max_late_s:
                        return await self._roll_back(
                            f"data late at {stage.percent:g}% for {late_for:.0f} s: " + "; ".join(verdict.reasons)
                        )
                    continue
                self.late_since = None
                extensions += 1
                if extensions > self.input.max_extensions:
                    return await self._roll_back(
                        f"still inconclusive at {stage.percent:g}% after {self.input.max_extensions} extensions: "
                        + "; ".join(verdict.reasons)
                    )
            index += 1
        return await self._promote()

    def _data_late(self) -> float:
        """Seconds the stage's data has been late; alerts once past `late_alert_s`."""
        now = workflow.now()
        if self.late_since is None:
            self.late_since = now
        late_for = (now - self.late_since).total_seconds()
        if late_for >= self.input.late_alert_s and not self.alerts:
            alert = (
                f"data late for {late_for:.0f} s at stage {self.stage + 1} ({self.percent:g}%): the judge is waiting "
                "for ingestion (docs/operations.md, Runbook)"
            )
            self.alerts = [alert]
            workflow.logger.warning("%s: %s", self.input.rollout_id, alert)
        return late_for

    async def _switch_and_watch(self, index: int, bake_s: float) -> RolloutOutcome:
        """Blue-green: all traffic to the new version, the old one kept; judged against the traffic before."""
        switched = workflow.now()
        before = (switched - timedelta(seconds=bake_s), switched)
        await self._set_traffic(
            self.input.from_version, self.input.to_version, 100.0, f"switch all traffic to {self.input.to_version}"
        )
        self._set_state("baking")
        await self._bake(bake_s, f"watch the switch for {bake_s:g} s")
        if self.rollback_reason is not None:
            return await self._roll_back(self.rollback_reason)
        if self.promote_request is not None:
            return await self._promote()
        verdict = await self._judge(switched, index, 0, 100.0, baseline_window=before)
        attempt = 0
        while verdict.data_late:  # not judged yet: watch on until the window has landed
            late_for = self._data_late()
            if late_for >= self.input.max_late_s:
                return await self._roll_back(f"data late after the switch for {late_for:.0f} s")
            self._set_state("data_late")
            await self._bake(bake_s, f"watch the switch for {bake_s:g} s more (data late)")
            if self.rollback_reason is not None:
                return await self._roll_back(self.rollback_reason)
            if self.promote_request is not None:
                return await self._promote()
            attempt += 1
            verdict = await self._judge(switched, index, attempt, 100.0, baseline_window=before)
        if verdict.verdict == "degraded":
            return await self._roll_back("degraded after the switch: " + "; ".join(verdict.reasons))
        return await self._promote()

    async def _report_progress(self) -> None:
        self._show()
        parent = workflow.info().parent
        if parent is None:
            return
        try:  # best effort: a parent that has closed must not fail the rollout
            await workflow.get_external_workflow_handle(parent.workflow_id, run_id=parent.run_id).signal(
                ROLLOUT_PROGRESS,
                RolloutProgress(
                    rollout_id=self.input.rollout_id,
                    to_version=self.input.to_version,
                    stage=self.stage,
                    percent=self.percent,
                ),
            )
        except Exception as err:
            workflow.logger.warning("could not report progress to %s: %s", parent.workflow_id, err)

    async def _bake(self, seconds: float, summary: str) -> None:
        """Wait `seconds` of unpaused time; promote, rollback and stop cut it short."""
        remaining = seconds
        while remaining > 0:
            if self.rollback_reason is not None or self.promote_request is not None:
                return
            if self.paused:
                self.time_left_when_paused = remaining
                baking = self.state
                self._set_state("paused")
                # A promote ends the pause too (runs older than V2 waited for resume).
                await workflow.wait_condition(
                    lambda: (
                        not self.paused
                        or self.rollback_reason is not None
                        or (self.v2 and self.promote_request is not None)
                    )
                )
                self.time_left_when_paused = None
                self._set_state(baking)
                continue
            self.deadline = workflow.now() + timedelta(seconds=remaining)
            self._show()
            try:
                await workflow.wait_condition(
                    lambda: self.paused or self.rollback_reason is not None or self.promote_request is not None,
                    timeout=timedelta(seconds=remaining),
                    timeout_summary=summary if remaining == seconds else f"{summary} ({remaining:.0f} s left)",
                )
            except TimeoutError:
                return
            finally:
                remaining = max(0.0, (self.deadline - workflow.now()).total_seconds())
                self.deadline = None

    async def _judge(
        self, started, stage: int, attempt: int, percent: float, baseline_window=None, gate: bool = False
    ) -> CanaryVerdict:
        self._set_state("judging")
        earlier = [v.verdict for v in self.verdicts if v.stage == stage]
        # The previous sample of this stage, unless it was never read (the watermark said late before it was).
        sampled = [v for v in earlier if not (v.data_late and v.baseline_requests == v.canary_requests == 0)]
        previous = (sampled[-1].baseline_requests, sampled[-1].canary_requests) if sampled else None
        label = f"judge stage {stage + 1}: {percent:g}%" + (" (promotion gate)" if gate else "")
        verdict = await workflow.execute_activity_method(
            RolloutActivities.judge_stage,
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
                data_wait_s=self.input.data_wait_s,
                previous_requests=previous,
            ),
            summary=label + (f", attempt {attempt + 1}" if attempt else ""),
            **waiting_for_data(self.input.data_wait_s),
        )
        self.verdicts.append(StageVerdict(stage=stage, attempt=attempt, percent=percent, verdict=verdict))
        self._show()
        return verdict

    async def _promote(self) -> RolloutOutcome:
        self.percent = 100.0
        self._set_state("promoting")
        return await self._finish("promoted", f"{self.input.to_version} serves all traffic", self.input.to_version)

    async def _roll_back(self, reason: str) -> RolloutOutcome:
        self.percent = 0.0
        self._set_state("rolling_back")
        return await self._finish("rolled_back", reason, self.input.from_version)

    async def _finish(self, result: str, reason: str, final: str) -> RolloutOutcome:
        if self.v2:
            # The split and the rollout's record in one transaction: the registry and the `rollouts` row agree at
            # every moment (docs/architecture.md "Timeouts and dead workers").
            await set_traffic(
                self.input.rollout_id,
                self.input.service,
                final,
                None,
                0.0,
                summary=f"{'promote' if result == 'promoted' else 'roll back to'} {final}, record {result}",
                record=self._record_of(result, reason=reason, finished=True),
            )
        else:
            await set_traffic(self.input.rollout_id, self.input.service, final, None, 0.0)
            await self._record(result, reason=reason, finished=True)
        self._set_state(result)
        self.outcome = RolloutOutcome(
            rollout_id=self.input.rollout_id,
            service=self.input.service,
            result=result,
            reason=reason,
            final_version=final,
            verdicts=self.verdicts,
        )
        self._show()
        return self.outcome

    async def _set_traffic(self, active: str, canary: str | None, percent: float, summary: str) -> None:
        # Histories from before the summaries keep the default one (the split in words).
        await set_traffic(
            self.input.rollout_id, self.input.service, active, canary, percent, summary=summary if self.v2 else None
        )

    def _record_of(self, state: str, *, reason: str | None = None, finished: bool = False) -> RolloutRecord:
        return RolloutRecord(
            rollout_id=self.input.rollout_id,
            service=self.input.service,
            from_version=self.input.from_version,
            to_version=self.input.to_version,
            strategy=self.input.strategy,
            state=state,
            reason=reason,
            finished=finished,
        )

    async def _record(self, state: str, *, reason: str | None = None, finished: bool = False) -> None:
        await workflow.execute_activity_method(
            RolloutActivities.record_rollout,
            self._record_of(state, reason=reason, finished=finished),
            summary=f"record rollout {state}",
            **QUICK,
        )

    # ---- what the Temporal UI shows ----

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if self.v2:
            workflow.upsert_search_attributes([ROLLOUT_STATE.value_set(state)])
        self._show()

    def _show(self) -> None:
        workflow.set_current_details(self._details())

    def _details(self) -> str:
        inp = self.input
        lines = [
            f"**Canary of `{inp.service}`**: `{inp.from_version}`{_model(inp.from_model)} → "
            f"`{inp.to_version}`{_model(inp.to_model)} ({inp.strategy})",
        ]
        if self.outcome is not None:
            lines.append(f"**{self.outcome.result.replace('_', ' ')}**: {self.outcome.reason}")
        else:
            stages = len(inp.stages)
            doing = self.state.replace("_", " ")
            if self.deadline is not None:
                doing += f" until {self.deadline:%H:%M:%S} UTC"
            lines.append(f"**Stage {self.stage + 1} of {stages}**: {self.percent:g}% of traffic, {doing}")
            if self.paused:
                lines.append("**Paused** by an operator: the bake timer is stopped; `resume` goes on.")
            if self.late_since is not None:
                late_for = (workflow.now() - self.late_since).total_seconds()
                lines.append(
                    f"**Waiting for data**: the stage's events have been late for {late_for:.0f} s "
                    f"(alert after {inp.late_alert_s:g} s, rolled back after {inp.max_late_s:g} s)"
                )
        for alert in self.alerts:
            lines.append(f"**Alert**: {alert}")
        if self.verdicts:
            lines.append("")
            lines.append("**Verdicts**")
            shown = self.verdicts[-VERDICTS_SHOWN:]
            if len(shown) < len(self.verdicts):
                lines.append(f"- ... {len(self.verdicts) - len(shown)} earlier (see `status`)")
            lines += [f"- {_verdict_line(v)}" for v in shown]
        return "\n".join(lines)

    # ---- operator controls. Signals are idempotent (a repeated request_id is ignored) and take their inputs as
    # they come (`*inputs`), so that no input can fail a workflow task: what is not one valid JSON object is refused
    # and shown in `status` (docs/operations.md). ----

    @workflow.signal(
        description='Skip the rest of this stage\'s bake and its verdict: {"to_end": true} promotes to all traffic '
        "at once, otherwise the next stage starts. Optional request_id, reason."
    )
    def promote(self, *inputs: Any) -> None:
        request = take(self.requests, "promote", inputs, PromoteRequest).request
        if request is not None and self.outcome is None:
            self.promote_request = request

    @workflow.signal(description="Put all traffic back on the baseline version and end the rollout. Optional reason.")
    def rollback(self, *inputs: Any) -> None:
        request = take(self.requests, "rollback", inputs, RollbackRequest).request
        if request is not None and self.rollback_reason is None:
            self.rollback_reason = "rolled back by an operator" + (f": {request.reason}" if request.reason else "")

    @workflow.signal(description="Roll back at once, whatever the stage (the cycle forwards its emergency stop).")
    def emergency_stop(self, *inputs: Any) -> None:
        request = take(self.requests, "emergency_stop", inputs, EmergencyStopRequest).request
        if request is not None:
            self.rollback_reason = "emergency stop" + (f": {request.reason}" if request.reason else "")

    @workflow.signal(description="Stop the bake timer: the split stays as it is and nothing is judged until resume.")
    def pause(self, *inputs: Any) -> None:
        if take(self.requests, "pause", inputs, PauseRequest).request is not None:
            self.paused = True
            self._show()

    @workflow.signal(description="Start the bake timer again where pause stopped it.")
    def resume(self, *inputs: Any) -> None:
        if take(self.requests, "resume", inputs, ResumeRequest).request is not None:
            self.paused = False
            self._show()

    @workflow.query(
        description="Stage, share, state (RolloutState), time left of the bake, every verdict with its reasons, "
        "data-late waits, alerts and refused signals."
    )
    def status(self, *inputs: Any) -> RolloutStatus:
        """Takes no input; whatever a caller sends is ignored, so that it always answers."""
        if self.time_left_when_paused is not None:
            left = self.time_left_when_paused
        elif self.deadline is not None:
            left = max(0.0, (self.deadline - workflow.now()).total_seconds())
        else:
            left = None
        late_for = (workflow.now() - self.late_since).total_seconds() if self.late_since is not None else 0.0
        return RolloutStatus(
            rollout_id=self.input.rollout_id,
            stage=self.stage,
            percent=self.percent,
            paused=self.paused,
            time_left_s=left,
            verdicts=self.verdicts,
            finished=self.outcome,
            refusals=self.requests.refusals,
            state=self.state,
            data_late_s=round(late_for, 1),
            alerts=self.alerts,
        )


def _model(model: str | None) -> str:
    return f" ({model})" if model else ""


_METRIC_NAMES = {"quality": "quality", "latency_p95": "latency p95", "error_rate": "errors", "cost_per_request": "cost"}


def _verdict_line(v: StageVerdict) -> str:
    """One line per judgement: the verdict, each metric's change against its limit, and why."""
    verdict = v.verdict
    head = f"stage {v.stage + 1} ({v.percent:g}%)" + (f", attempt {v.attempt + 1}" if v.attempt else "")
    figures = ", ".join(
        f"{_METRIC_NAMES.get(c.metric, c.metric)} {_percent(c.relative_change)} (limit {c.threshold:+.0%}, "
        f"p={c.p_value:.2g})"
        for c in verdict.checks
    )
    if verdict.verdict == "healthy":
        why = "no metric credibly past its limit"
    else:
        why = "; ".join(verdict.reasons) or verdict.verdict
    label = "inconclusive: data late" if verdict.data_late else verdict.verdict
    sizes = f"{verdict.baseline_requests} / {verdict.canary_requests} requests"
    return f"{head}: **{label}** on {sizes}" + (f"; {figures}" if figures else "") + f". Why: {why}"


def _percent(change: float) -> str:
    return "n/a" if abs(change) >= 1e8 else f"{change:+.1%}"
