"""`OptimizationCycle`: one long-running loop per service. Observe, analyse, decide, act; then wait for the next
trigger (the interval, a threshold violation or Sentinel anomaly on the fast path, or an operator), and continue as
new every 100 cycles.

This module is the loop and its handlers. What the cycle keeps and shows is `workflows/cycle_books.py`; its acts
are `cycle_deploy.py` (a child CanaryRollout), `cycle_explore.py` (a child Exploration) and `cycle_rollback.py`;
the operator's controls, one table making the signals and the `control` update's commands, `cycle_controls.py`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.common import RawValue

from llm_optimizer.ids import ROLLOUT_PROGRESS, THRESHOLD_BREACHED
from workflows.cycle_books import CycleBooks
from workflows.cycle_controls import (
    CONTROL_DESCRIPTION,
    command_of,
    control_refused,
    control_signals,
    run_control,
    validate_command,
)
from workflows.cycle_deploy import deploy
from workflows.cycle_explore import explore
from workflows.cycle_rollback import apply_rollback, operator_rollback
from workflows.options import ACTIVITY, OBSERVE, ActivityOptions

with workflow.unsafe.imports_passed_through():
    from activities.decide import DecisionActivities
    from activities.thresholds import ThresholdActivities
    from llm_optimizer import memory as memory_rules
    from llm_optimizer.decision import Action
    from llm_optimizer.errors import PayloadRefused
    from llm_optimizer.payloads import (
        ControlAck,
        CycleInput,
        CycleRecord,
        CycleState,
        CycleStatus,
        DecideRequest,
        ObserveRequest,
        RolloutProgress,
        ThresholdBreach,
        ThresholdRequest,
        describe_refusal,
        unstorable,
    )
    from runtime.search_attributes import CYCLE_STATE
    from workflows.details import minutes
    from workflows.handlers import first_time, refuse


T = TypeVar("T", bound=BaseModel)
Request = TypeVar("Request")
Result = TypeVar("Result")

# Added after one-shot cycles ran (they waited an interval first): patched() keeps their histories replaying.
RUN_ONCE_AT_ONCE = "run-once-at-once"
MAX_CYCLES_PER_RUN = 100  # beside Temporal's suggestion: keeps every run's history short
HISTORY_KEPT = 20


@workflow.defn(name="OptimizationCycle")
@control_signals  # pause, resume, trigger, emergency_stop, rollback, set_objectives: workflows/cycle_controls.py
class OptimizationCycle(CycleBooks):
    @workflow.init
    def __init__(self, input: CycleInput) -> None:
        super().__init__(input)

    @workflow.run
    async def run(self, input: CycleInput) -> CycleRecord | None:
        self.lean = workflow.patched("lean-history")
        self.local_steps = self.lean and workflow.patched("local-observe-decide")
        if self.local_steps:
            self.upserted_state = workflow.info().typed_search_attributes.get(CYCLE_STATE)
        if self.lean:
            self.publish_watch()
        self.show()
        # A one-shot cycle (a Schedule's) runs at once; runs from before waited for an interval first (the Schedule
        # set it to a second), and keep doing so on replay.
        at_once = input.run_once and workflow.patched(RUN_ONCE_AT_ONCE)
        carried = self.carried
        while True:
            if carried.stopped_reason is not None or carried.paused_reason is not None:
                await self.transition(CycleState.STOPPED if carried.stopped_reason else CycleState.PAUSED, "operator")
                await workflow.wait_condition(lambda: carried.stopped_reason is None and carried.paused_reason is None)
                await self.transition(CycleState.IDLE, "operator")
            trigger = "schedule" if at_once else await self._next_trigger()
            if trigger is not None:
                await self._one_cycle(trigger)
                if input.run_once:
                    break
            if self.cycles_this_run >= MAX_CYCLES_PER_RUN or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._continued_input())
        await workflow.wait_condition(workflow.all_handlers_finished)
        # A one-shot cycle (a Schedule's) answers with what it did, so its result in the UI says it in words.
        history = self.carried.history
        return history[-1] if history else None

    def _continued_input(self) -> CycleInput:
        """The next run's input: the settings operators last set, and everything carried, whole."""
        return self.input.model_copy(update={"carried": self.carried})

    # ---- the wait for the next run ----

    async def _next_trigger(self) -> str | None:
        """Wait for the interval, a fast-path violation, or an operator; None if paused or stopped meanwhile.

        Where the history is lean, the wait is the interval's one timer: the fast path is the threshold watcher's
        (workflows/threshold_watcher.py), which signals `threshold_breached` only when something is wrong, so a
        quiet wait adds two events. Histories from before polled the thresholds themselves every `fast_path_s`."""
        scale = self.input.time_scale
        self.next_run_at = workflow.now() + timedelta(seconds=self.input.interval_s * scale)
        self.show("waiting for the next run")
        polls = not self.lean
        while True:
            over, trigger = self._interruption(breaches=not polls)
            if over:
                return trigger
            left = (self.next_run_at - workflow.now()).total_seconds()
            if left <= 0:
                return "timer"
            try:
                await workflow.wait_condition(
                    lambda: self._interrupted(breaches=not polls),
                    timeout=timedelta(seconds=min(left, self.input.fast_path_s * scale) if polls else left),
                    timeout_summary=None if polls else f"next cycle in {minutes(left)}",
                )
            except TimeoutError:
                if not polls or workflow.now() >= self.next_run_at:
                    return "timer"
                reasons = await self._check_thresholds()
                if reasons:
                    self.findings = reasons
                    return "threshold: " + "; ".join(reasons)

    async def _check_thresholds(self) -> list[str]:
        """The cycle's own poll of its hard limits over the last fast-path window (histories before the watcher)."""
        window = timedelta(seconds=self.input.fast_path_s * self.input.time_scale)
        check = await workflow.execute_activity_method(
            ThresholdActivities.check_thresholds,
            ThresholdRequest(
                service=self.input.service,
                window_start=workflow.now() - window,
                window_end=workflow.now(),
                constraints=self.input.constraints,
            ),
            **ACTIVITY,
        )
        return check.reasons if check.violated else []

    def _interrupted(self, *, breaches: bool) -> bool:
        """Whether something ends the wait for the next run before its time (the threshold watcher's breaches only
        where the history is lean: before, the cycle polled its thresholds itself)."""
        return (
            self.trigger_reason is not None
            or self.rollback_request is not None
            or self.carried.paused_reason is not None
            or self.carried.stopped_reason is not None
            or (breaches and self.breach is not None)
        )

    def _interruption(self, *, breaches: bool) -> tuple[bool, str | None]:
        """(over, trigger) of the wait: an operator's rollback, then a trigger, then a pause or stop (no trigger: the
        cycle does not run), then a breach; a trigger or a breach is taken once."""
        if self.rollback_request is not None:
            return True, "operator: rollback"
        if self.trigger_reason is not None:
            reason, self.trigger_reason = self.trigger_reason, None
            return True, f"manual: {reason}" if reason else "manual"
        if self.carried.paused_reason is not None or self.carried.stopped_reason is not None:
            return True, None
        if breaches and self.breach is not None:
            self.findings, self.breach = self.breach, None
            return True, "threshold: " + "; ".join(self.findings)
        return False, None

    # ---- one cycle: observe, analyse, decide, act ----

    async def _one_cycle(self, trigger: str) -> None:
        self.settings = self.input  # what this cycle uses to its end, whatever arrives meanwhile
        now = workflow.now()
        record = CycleRecord(
            cycle_id=f"{workflow.info().workflow_id}#{self.carried.cycles_done + 1}", started_at=now, trigger=trigger
        )
        await self.audit("cycle_started", trigger, {"cycle_id": record.cycle_id})

        await self.transition(CycleState.OBSERVING, trigger)
        window_start = now - timedelta(seconds=self.settings.analysis_window_s * self.settings.time_scale)
        observation = await self._step(
            DecisionActivities.observe,
            ObserveRequest(service=self.settings.service, window_start=window_start, window_end=now),
            "observe: the live config and its traffic split",
            OBSERVE,  # it waits for the window's events to land (docs/architecture.md "Complete windows")
        )
        self.set_active(observation.active_version, observation.active_model)

        if self.rollback_request is not None:
            await operator_rollback(self, observation, record)
        elif observation.active_version is None:
            record.rationale = "no config is assigned to this service yet"
        elif observation.data_late and not self.findings:
            # Not decided on a window still arriving: the next trigger looks again (a breach is acted on anyway).
            record.rationale = f"not decided: data late ({observation.data_late})"
        else:
            await self.transition(CycleState.ANALYZING, trigger)
            await self.transition(CycleState.DECIDING, trigger)
            decision = await self._step(
                DecisionActivities.decide,
                DecideRequest(
                    service=self.settings.service,
                    cycle_id=record.cycle_id,
                    now=now,
                    window_start=window_start,
                    strategy=self.settings.strategy,
                    objectives=self.settings.objectives,
                    constraints=self.settings.constraints,
                    memory=self.carried.memory,
                    findings=self.findings,
                    candidate_models=self.settings.candidate_models,
                    candidate_configs=self.settings.candidate_configs,
                    exploration=self.settings.exploration,
                    time_scale=self.settings.time_scale,
                ),
                f"decide on the last {minutes(self.settings.analysis_window_s * self.settings.time_scale)} "
                f"of traffic ({self.settings.strategy.value})",
                ACTIVITY,
            )
            self.last_decision, self.findings = decision, []
            self.carried.memory = memory_rules.after_decision(self.carried.memory, decision, now)
            record.action, record.rationale = decision.action.value, decision.rationale
            free = self.carried.stopped_reason is None and self.carried.paused_reason is None
            if decision.action is Action.canary and free:
                await deploy(self, decision, observation, record)
            elif decision.action is Action.experiment and decision.arms and free:
                await explore(self, decision, observation, record)
            elif decision.action is Action.rollback and decision.target_version:
                await apply_rollback(self, decision.target_version, decision.rationale, record)
            elif decision.action is Action.alert:
                self.keep_alert(decision.rationale)  # the decision itself is the audit row

        record.finished_at = workflow.now()
        self.carried.history = [*self.carried.history, record][-HISTORY_KEPT:]
        self.carried.cycles_done += 1
        self.cycles_this_run += 1
        await self.audit("cycle_finished", trigger, record.model_dump(mode="json"))
        await self.transition(CycleState.IDLE, trigger)

    async def _step(
        self,
        activity: Callable[[DecisionActivities, Request], Awaitable[Result]],
        request: Request,
        summary: str,
        options: ActivityOptions,
    ) -> Result:
        """Observe or decide: a local activity where the history is lean (its result in one marker, in the same
        workflow task: a dead worker's task is retried by another after the workflow task timeout), else a regular
        activity as the recorded histories have it."""
        if not self.local_steps:
            return await workflow.execute_activity_method(activity, request, summary=summary, **options)
        return await workflow.execute_local_activity_method(
            activity,
            request,
            summary=summary,
            start_to_close_timeout=options["start_to_close_timeout"],
            retry_policy=options["retry_policy"],
        )

    # ---- the operator's `control` update (its commands, and the signals of the same names: cycle_controls.py) ----

    @workflow.update(description=CONTROL_DESCRIPTION)
    async def control(self, *inputs: Any) -> ControlAck:
        """Run one control and answer with its outcome and the cycle's status right after it; a refusal is a
        ControlRefused error whose message says which field and value, and why."""
        command, known = command_of(inputs)  # the validator refuses these first; on replay it does not run
        outcome, refusal = await run_control(self, known, (command.payload,))
        if refusal is not None:
            raise control_refused(refusal)
        return ControlAck(command=command.name, outcome=outcome, status=self.current_status())

    @control.validator
    def _validate_control(self, *inputs: Any) -> None:
        # Before acceptance: a refused command leaves nothing in the history.
        validate_command(inputs)

    # Queries take no input; whatever a caller sends is ignored, so that a query always answers.

    @workflow.query(
        description="State, live version, rollout in flight, last decision and why, next run, pause or stop reason, "
        "refusals, alerts, and the last rollouts by workflow id."
    )
    def status(self, *inputs: Any) -> CycleStatus:
        return self.current_status()

    @workflow.query(description="The last 20 cycles: trigger, action, rationale, rollout and outcome.")
    def history(self, *inputs: Any) -> list[CycleRecord]:
        return self.carried.history

    # ---- internal channels: sent by other workflows, never by an operator (their descriptions say so) ----

    def _internal_payload(self, name: str, inputs: Sequence[Any], model: type[T]) -> T | None:
        """The one payload an internal signal takes, or None with the refusal recorded in `status`."""
        try:
            if len(inputs) != 1:
                raise PayloadRefused(f"takes one {model.__name__}, got {len(inputs)} inputs")
            problem = unstorable(inputs[0])
            if problem is not None:
                raise PayloadRefused(problem)
            return model.model_validate(inputs[0])
        except ValidationError as err:
            refuse(self.carried, name, describe_refusal(err))
        except PayloadRefused as err:
            refuse(self.carried, name, str(err))
        return None

    @workflow.signal(
        dynamic=True,
        description="Not an operator control: the internal channels (the threshold watcher's breaches, a child "
        "rollout's progress). Choose a named signal, or use the `control` update.",
    )
    def internal(self, name: str, args: Sequence[RawValue]) -> None:
        """The internal channels, by name: `threshold_breached` from the threshold watcher, `rollout_progress` from
        a child rollout. One dynamic handler, so that the Temporal UI does not offer them beside the operator's
        signals; any other name is refused in `status`, like a malformed payload."""
        try:
            inputs = [workflow.payload_converter().from_payload(arg.payload) for arg in args]
        except Exception as err:  # not a payload this worker can read: refused, never a failed workflow task
            refuse(self.carried, name, f"unreadable payload ({type(err).__name__})")
            return
        if name == THRESHOLD_BREACHED:
            self._threshold_breached(inputs)
        elif name == ROLLOUT_PROGRESS:
            self._rollout_progress(inputs)
        else:
            refuse(self.carried, name[:100], "no such signal")

    def _threshold_breached(self, inputs: Sequence[Any]) -> None:
        """The threshold watcher's findings (a hard limit broken, a Sentinel alert): the cycle runs at once on them."""
        breach = self._internal_payload(THRESHOLD_BREACHED, inputs, ThresholdBreach)
        if breach is None:
            return
        if not first_time(self.carried, breach.request_id):
            return
        # Sentinel's alerts were claimed for this cycle: kept whenever they arrive (a running or paused cycle acts on
        # them next). Broken limits only count while the cycle waits, and of the version it serves: one checked
        # while a cycle ran (visibility lags) or of a version since replaced is stale; the watcher checks again.
        keep = list(breach.alerts)
        current = breach.version is None or self.active_version is None or breach.version == self.active_version
        if self.state == CycleState.IDLE and current:
            keep += breach.reasons
        if keep:
            self.breach = [*(self.breach or []), *keep][-50:]

    def _rollout_progress(self, inputs: Sequence[Any]) -> None:
        """Sent by the child rollout at every stage, so that `status` shows where it is; anything else is refused."""
        progress = self._internal_payload(ROLLOUT_PROGRESS, inputs, RolloutProgress)
        if progress is not None and self.rollout is not None and progress.rollout_id == self.rollout.rollout_id:
            self.rollout = progress
            self.show()
