"""`OptimizationCycle`: one long-running loop per service. Observe, analyse, decide, act; then wait for the next
trigger (the interval, a threshold violation or Sentinel anomaly on the fast path, or an operator)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.workflow import ParentClosePolicy

from workflows.options import ACTIVITY
from workflows.traffic import set_traffic

with workflow.unsafe.imports_passed_through():
    from llm_optimizer.control import (
        AuditRecord,
        ControlAck,
        ControlCommand,
        CycleInput,
        CycleRecord,
        CycleState,
        CycleStatus,
        DecideRequest,
        EmergencyStopRequest,
        ObjectivesUpdate,
        Observation,
        ObserveRequest,
        PauseRequest,
        PrepareCanaryRequest,
        PreparedCanary,
        ResumeRequest,
        RollbackRequest,
        RolloutInput,
        RolloutOutcome,
        RolloutProgress,
        ThresholdCheck,
        ThresholdRequest,
        TriggerRequest,
    )
    from llm_optimizer.decision import Action, Decision
    from llm_optimizer.judge import thresholds_for
    from llm_optimizer.strategies import PRESETS
    from workflows.canary_rollout import CanaryRollout

CYCLE_STATE = SearchAttributeKey.for_keyword("CycleState")
CONFIG_VERSION = SearchAttributeKey.for_keyword("ConfigVersion")
SERVICE = SearchAttributeKey.for_keyword("Service")

MAX_CYCLES_PER_RUN = 100  # beside Temporal's suggestion: keeps every run's history short
HISTORY_KEPT = 20


def cycle_workflow_id(service: str) -> str:
    return f"optimization-cycle/{service}"


@workflow.defn(name="OptimizationCycle")
class OptimizationCycle:
    @workflow.init
    def __init__(self, input: CycleInput) -> None:
        self.input = input
        self.memory = input.memory
        self.records = list(input.history)
        self.audit_seq = 0
        self.paused_reason = input.paused_reason
        self.stopped_reason = input.stopped_reason
        self.seen_requests = list(input.seen_request_ids)
        self.refusals = list(input.refusals)
        self.cycles_done = input.cycles_done
        self.cycles_this_run = 0
        self.state = CycleState.IDLE
        self.trigger_reason: str | None = None
        self.findings: list[str] = []  # fast-path violations, handed to the next decision
        self.rollback_request: RollbackRequest | None = None
        self.active_version: str | None = None
        self.rollout: RolloutProgress | None = None
        self.rollout_handle: workflow.ChildWorkflowHandle | None = None
        self.last_decision: Decision | None = None
        self.next_run_at = None

    @workflow.run
    async def run(self, input: CycleInput) -> None:
        while True:
            if self.stopped_reason is not None or self.paused_reason is not None:
                await self._transition(CycleState.STOPPED if self.stopped_reason else CycleState.PAUSED, "operator")
                await workflow.wait_condition(lambda: self.stopped_reason is None and self.paused_reason is None)
                await self._transition(CycleState.IDLE, "operator")
            trigger = await self._next_trigger()
            if trigger is not None:
                await self._one_cycle(trigger)
                if input.run_once:
                    break
            if self.cycles_this_run >= MAX_CYCLES_PER_RUN or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._carried_input())
        await workflow.wait_condition(workflow.all_handlers_finished)

    # ---- the loop ----

    async def _next_trigger(self) -> str | None:
        """Wait for the interval, a fast-path violation, or an operator; None if paused or stopped meanwhile."""
        scale = self.input.time_scale
        self.next_run_at = workflow.now() + timedelta(seconds=self.input.interval_s * scale)
        while True:
            if self.rollback_request is not None:
                return "operator: rollback"
            if self.trigger_reason is not None:
                reason, self.trigger_reason = self.trigger_reason, None
                return f"manual: {reason}" if reason else "manual"
            if self.paused_reason is not None or self.stopped_reason is not None:
                return None
            left = (self.next_run_at - workflow.now()).total_seconds()
            if left <= 0:
                return "timer"
            try:
                await workflow.wait_condition(
                    lambda: (
                        self.trigger_reason is not None
                        or self.rollback_request is not None
                        or self.paused_reason is not None
                        or self.stopped_reason is not None
                    ),
                    timeout=timedelta(seconds=min(left, self.input.fast_path_s * scale)),
                )
            except TimeoutError:
                if workflow.now() >= self.next_run_at:
                    return "timer"
                check = await workflow.execute_activity(
                    "check_thresholds",
                    ThresholdRequest(
                        service=self.input.service,
                        window_start=workflow.now() - timedelta(seconds=self.input.fast_path_s * scale),
                        window_end=workflow.now(),
                        constraints=self.input.constraints,
                    ),
                    result_type=ThresholdCheck,
                    **ACTIVITY,
                )
                if check.violated:
                    self.findings = check.reasons
                    return "threshold: " + "; ".join(check.reasons)

    async def _one_cycle(self, trigger: str) -> None:
        now = workflow.now()
        record = CycleRecord(
            cycle_id=f"{workflow.info().workflow_id}#{self.cycles_done + 1}", started_at=now, trigger=trigger
        )
        await self._audit("cycle_started", trigger, {"cycle_id": record.cycle_id})

        await self._transition(CycleState.OBSERVING, trigger)
        window_start = now - timedelta(seconds=self.input.analysis_window_s * self.input.time_scale)
        observation = await workflow.execute_activity(
            "observe",
            ObserveRequest(service=self.input.service, window_start=window_start, window_end=now),
            result_type=Observation,
            **ACTIVITY,
        )
        self._set_active(observation.active_version)

        if self.rollback_request is not None:
            await self._operator_rollback(observation, record)
        elif observation.active_version is None:
            record.rationale = "no config is assigned to this service yet"
        else:
            await self._transition(CycleState.ANALYZING, trigger)
            await self._transition(CycleState.DECIDING, trigger)
            decision = await workflow.execute_activity(
                "decide",
                DecideRequest(
                    service=self.input.service,
                    cycle_id=record.cycle_id,
                    now=now,
                    window_start=window_start,
                    strategy=self.input.strategy,
                    objectives=self.input.objectives,
                    constraints=self.input.constraints,
                    memory=self.memory,
                    findings=self.findings,
                    candidate_models=self.input.candidate_models,
                    time_scale=self.input.time_scale,
                ),
                result_type=Decision,
                **ACTIVITY,
            )
            self.last_decision, self.findings = decision, []
            if decision.reference_quality is not None and self.memory.reference_quality is None:
                self.memory = self.memory.model_copy(update={"reference_quality": decision.reference_quality})
            if decision.rule_state is not None:  # rules' hold times and cooldowns, carried to the next decision
                self.memory = self.memory.model_copy(update={"rule_state": decision.rule_state})
            record.action, record.rationale = decision.action.value, decision.rationale
            if decision.action is Action.alert:
                self.memory = self.memory.model_copy(update={"last_alert_at": now})
            if decision.action is Action.canary and self.stopped_reason is None and self.paused_reason is None:
                await self._deploy(decision, observation, record)
            elif decision.action is Action.rollback and decision.target_version:
                await self._apply_rollback(decision.target_version, decision.rationale, record)

        record.finished_at = workflow.now()
        self.records = [*self.records, record][-HISTORY_KEPT:]
        self.cycles_done += 1
        self.cycles_this_run += 1
        await self._audit("cycle_finished", trigger, record.model_dump(mode="json"))
        await self._transition(CycleState.IDLE, trigger)

    async def _deploy(self, decision: Decision, observation: Observation, record: CycleRecord) -> None:
        assert decision.candidate is not None and observation.active_version is not None
        await self._transition(CycleState.VALIDATING, "decision")
        prepared = await workflow.execute_activity(
            "prepare_canary",
            PrepareCanaryRequest(
                service=self.input.service,
                decision_id=decision.decision_id,
                base_version=observation.active_version,
                model=decision.candidate.model,
                provider=decision.candidate.provider,
            ),
            result_type=PreparedCanary,
            **ACTIVITY,
        )
        await self._transition(CycleState.DEPLOYING, "decision")
        preset = PRESETS[self.input.strategy].scaled(self.input.time_scale)
        workflow_id = f"canary/{self.input.service}/{prepared.version}"
        rollout_id = f"{workflow_id}@{decision.decision_id[:8]}"  # a version may be rolled out again later
        self.rollout_handle = await workflow.start_child_workflow(
            CanaryRollout.run,
            RolloutInput(
                rollout_id=rollout_id,
                service=self.input.service,
                from_version=observation.active_version,
                to_version=prepared.version,
                stages=list(preset.stages),
                thresholds=thresholds_for(
                    self.input.canary, preset.error_rate_increase, self.input.constraints.quality_floor_ratio
                ),
                max_extensions=self.input.canary.max_extensions,
                decision_id=decision.decision_id,
            ),
            id=workflow_id,
            # The rollout's own cancellation handler restores the traffic: it is never left half-done.
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        )
        self.rollout = RolloutProgress(rollout_id=rollout_id, to_version=prepared.version, stage=0, percent=0)
        record.rollout_id = rollout_id
        await self._transition(CycleState.MONITORING, "rollout")
        outcome: RolloutOutcome = await self.rollout_handle
        self.rollout_handle, self.rollout = None, None
        record.outcome = f"{outcome.result}: {outcome.reason}"
        self._set_active(outcome.final_version)
        won, lost = self.memory.canary_outcomes.get(decision.candidate.model, (0, 0))
        promoted = outcome.result == "promoted"
        changes = {
            "last_change_at": workflow.now(),
            # Each model's record as a canary: the prior of the next exploration's Thompson draw.
            "canary_outcomes": {
                **self.memory.canary_outcomes,
                decision.candidate.model: (won + promoted, lost + (outcome.result == "rolled_back")),
            },
        }
        if outcome.result == "rolled_back":
            changes["rollbacks"] = [*self.memory.rollbacks, workflow.now()][-20:]
            changes["rolled_back_models"] = {**self.memory.rolled_back_models, decision.candidate.model: workflow.now()}
        self.memory = self.memory.model_copy(update=changes)

    async def _operator_rollback(self, observation: Observation, record: CycleRecord) -> None:
        request, self.rollback_request = self.rollback_request, None
        target = request.target_version or observation.parent_version
        record.action = "rollback"
        if target is None or observation.active_version is None:
            record.rationale = "rollback requested but the live version has no parent to return to"
            self.refusals.append(record.rationale)
            return
        await self._apply_rollback(target, f"operator: {request.reason or 'manual rollback'}", record)

    async def _apply_rollback(self, target: str, reason: str, record: CycleRecord) -> None:
        await self._transition(CycleState.ROLLING_BACK, reason)
        await set_traffic(f"rollback/{self.input.service}/{record.cycle_id}", self.input.service, target, None, 0)
        record.rationale, record.outcome = reason, f"rolled back to {target}"
        self._set_active(target)
        self.memory = self.memory.model_copy(
            update={"last_change_at": workflow.now(), "rollbacks": [*self.memory.rollbacks, workflow.now()][-20:]}
        )

    # ---- bookkeeping ----

    def _set_active(self, version: str | None) -> None:
        if version and version != self.active_version:
            self.active_version = version
            workflow.upsert_search_attributes([CONFIG_VERSION.value_set(version)])

    async def _transition(self, state: CycleState, why: str) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        workflow.upsert_search_attributes([CYCLE_STATE.value_set(state.value)])
        await self._audit("transition", why, {"from": previous.value, "to": state.value})

    async def _audit(self, event_type: str, triggered_by: str, details: dict[str, Any]) -> None:
        # A local activity: one marker in the history instead of three events per transition.
        info = workflow.info()
        self.audit_seq += 1
        await workflow.execute_local_activity(
            "audit",
            AuditRecord(
                id=f"{info.workflow_id}/{info.run_id}/{self.audit_seq}",
                service=self.input.service,
                at=workflow.now(),
                event_type=event_type,
                triggered_by=triggered_by[:200],
                details=details,
            ),
            start_to_close_timeout=timedelta(seconds=30),
        )

    def _carried_input(self) -> CycleInput:
        return self.input.model_copy(
            update={
                "memory": self.memory,
                "history": self.records,
                "paused_reason": self.paused_reason,
                "stopped_reason": self.stopped_reason,
                "seen_request_ids": self.seen_requests[-100:],
                "refusals": self.refusals[-20:],
                "cycles_done": self.cycles_done,
            }
        )

    # ---- operator controls: signals take JSON objects; an invalid one is refused and shown in `status` ----

    def _accept(self, name: str, payload: Any, model: type) -> tuple[Any | None, str]:
        """(request, outcome): outcome is accepted, refused (invalid; shown in `status`) or duplicate."""
        try:
            request = model.model_validate(payload if payload is not None else {})
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            self.refusals = [*self.refusals, f"{name} refused: {problems}"][-20:]
            return None, "refused"
        if request.request_id:
            if request.request_id in self.seen_requests:
                return None, "duplicate"
            self.seen_requests = [*self.seen_requests, request.request_id][-100:]
        return request, "accepted"

    async def _signal_rollout(self, name: str, payload: dict[str, Any]) -> None:
        # The rollout may have just finished (its result not yet seen here): then there is nothing to stop.
        try:
            await self.rollout_handle.signal(name, payload)
        except Exception as err:
            workflow.logger.warning("could not signal %s to the rollout: %s", name, err)

    async def _record_signal(self, name: str, payload: Any, outcome: str) -> None:
        # Added after histories were recorded: patched() keeps those replaying.
        if workflow.patched("audit-signals"):
            await self._audit("signal", name, {"payload": payload, "outcome": outcome})

    # Each control is a signal (fire and forget: the `temporal` CLI, the starters) and a command of the `control`
    # update (the HTTP API, which returns what the workflow acknowledged). Both run the same method.

    async def _pause(self, payload: dict[str, Any] | None) -> str:
        request, outcome = self._accept("pause", payload, PauseRequest)
        if request is not None and self.paused_reason is None:
            self.paused_reason = request.reason or "paused by an operator"
        await self._record_signal("pause", payload, outcome)
        return outcome

    async def _resume(self, payload: dict[str, Any] | None) -> str:
        request, outcome = self._accept("resume", payload, ResumeRequest)
        if request is not None:
            self.paused_reason = None
            self.stopped_reason = None
        await self._record_signal("resume", payload, outcome)
        return outcome

    async def _trigger(self, payload: dict[str, Any] | None) -> str:
        request, outcome = self._accept("trigger", payload, TriggerRequest)
        if request is not None:
            self.trigger_reason = request.reason or "operator"
        await self._record_signal("trigger", payload, outcome)
        return outcome

    async def _emergency_stop(self, payload: dict[str, Any] | None) -> str:
        request, outcome = self._accept("emergency_stop", payload, EmergencyStopRequest)
        if request is not None:
            self.stopped_reason = request.reason or "emergency stop"
            if self.rollout_handle is not None:
                await self._signal_rollout("emergency_stop", {"reason": self.stopped_reason})
        await self._record_signal("emergency_stop", payload, outcome)
        return outcome

    async def _rollback(self, payload: dict[str, Any] | None) -> str:
        request, outcome = self._accept("rollback", payload, RollbackRequest)
        if request is not None:
            if self.rollout_handle is not None and request.target_version is None:
                await self._signal_rollout("rollback", {"reason": request.reason})
            else:
                self.rollback_request = request
        await self._record_signal("rollback", payload, outcome)
        return outcome

    async def _set_objectives(self, payload: dict[str, Any] | None) -> str:
        request, outcome = self._accept("set_objectives", payload, ObjectivesUpdate)
        if request is not None:
            changes = {
                k: v
                for k, v in {
                    "objectives": request.objectives,
                    "constraints": request.constraints,
                    "strategy": request.strategy,
                }.items()
                if v is not None
            }
            self.input = self.input.model_copy(update=changes)
        await self._record_signal("set_objectives", payload, outcome)
        return outcome

    @workflow.signal
    async def pause(self, payload: dict[str, Any] | None = None) -> None:
        await self._pause(payload)

    @workflow.signal
    async def resume(self, payload: dict[str, Any] | None = None) -> None:
        await self._resume(payload)

    @workflow.signal
    async def trigger(self, payload: dict[str, Any] | None = None) -> None:
        await self._trigger(payload)

    @workflow.signal
    async def emergency_stop(self, payload: dict[str, Any] | None = None) -> None:
        await self._emergency_stop(payload)

    @workflow.signal
    async def rollback(self, payload: dict[str, Any] | None = None) -> None:
        await self._rollback(payload)

    @workflow.signal
    async def set_objectives(self, payload: dict[str, Any] | None = None) -> None:
        await self._set_objectives(payload)

    def _commands(self) -> dict[str, Callable[[dict[str, Any] | None], Awaitable[str]]]:
        return {
            "pause": self._pause,
            "resume": self._resume,
            "trigger": self._trigger,
            "emergency_stop": self._emergency_stop,
            "rollback": self._rollback,
            "set_objectives": self._set_objectives,
        }

    @workflow.update
    async def control(self, command: ControlCommand) -> ControlAck:
        """Run one control and answer with its outcome and the cycle's status right after it."""
        outcome = await self._commands()[command.name](command.payload)
        refusal = self.refusals[-1] if outcome == "refused" else None
        return ControlAck(command=command.name, outcome=outcome, refusal=refusal, status=self.status())

    @control.validator
    def _validate_control(self, command: ControlCommand) -> None:
        if command.name not in self._commands():
            raise ValueError(f"name = {command.name!r}: not one of {', '.join(self._commands())}")

    @workflow.query
    def status(self) -> CycleStatus:
        return CycleStatus(
            service=self.input.service,
            state=self.state,
            active_version=self.active_version,
            rollout=self.rollout,
            last_decision=self.last_decision,
            next_run_at=self.next_run_at,
            paused_reason=self.paused_reason,
            stopped_reason=self.stopped_reason,
            strategy=self.input.strategy,
            objectives=self.input.objectives,
            constraints=self.input.constraints,
            refusals=self.refusals,
            cycles_done=self.cycles_done,
        )

    @workflow.query
    def history(self) -> list[CycleRecord]:
        return self.records

    @workflow.signal
    def rollout_progress(self, progress: RolloutProgress) -> None:
        """Sent by the child rollout at every stage, so that `status` shows where it is."""
        if self.rollout is not None and progress.rollout_id == self.rollout.rollout_id:
            self.rollout = progress
