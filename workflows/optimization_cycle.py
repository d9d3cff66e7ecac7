"""`OptimizationCycle`: one long-running loop per service. Observe, analyse, decide, act; then wait for the next
trigger (the interval, a threshold violation or Sentinel anomaly on the fast path, or an operator)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.api.failure.v1 import ApplicationFailureInfo, Failure
from temporalio.common import RawValue, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ChildWorkflowError, FailureError
from temporalio.workflow import ParentClosePolicy

from llm_optimizer import ids
from llm_optimizer.ids import ROLLOUT_PROGRESS, THRESHOLD_BREACHED
from workflows.options import ACTIVITY, OBSERVE, ActivityOptions
from workflows.traffic import set_traffic

with workflow.unsafe.imports_passed_through():
    from activities.audit import AuditActivities
    from activities.decide import DecisionActivities
    from activities.exploration import ExplorationActivities
    from activities.rollout import RolloutActivities
    from activities.thresholds import ThresholdActivities
    from llm_optimizer import memory as memory_rules
    from llm_optimizer.canary_judge import thresholds_for
    from llm_optimizer.decision import Action, Decision
    from llm_optimizer.errors import ControlRefused, PayloadRefused
    from llm_optimizer.exploration import RETRYABLE, ExplorationPolicy
    from llm_optimizer.payloads import (
        AuditRecord,
        ControlAck,
        ControlCommand,
        CycleInput,
        CycleRecord,
        CycleState,
        CycleStatus,
        DecideRequest,
        EmergencyStopRequest,
        ExplorationInput,
        ExplorationOutcome,
        ObjectivesUpdate,
        Observation,
        ObserveRequest,
        PauseRequest,
        PrepareArmsRequest,
        PrepareCanaryRequest,
        ResumeRequest,
        RollbackRequest,
        RolloutInput,
        RolloutLink,
        RolloutOutcome,
        RolloutProgress,
        ThresholdBreach,
        ThresholdRequest,
        ThresholdWatch,
        TriggerRequest,
        describe_refusal,
        operator_request,
        shown,
        unstorable,
    )
    from llm_optimizer.strategies import PRESETS
    from runtime.search_attributes import CONFIG_VERSION, CYCLE_STATE, ROLLOUT_STATE, SERVICE
    from workflows.canary_rollout import CanaryRollout
    from workflows.details import DOING, cycle_details, minutes, rollout_details
    from workflows.exploration import Exploration
    from workflows.handlers import first_time, refuse, take


T = TypeVar("T", bound=BaseModel)
Request = TypeVar("Request")
Result = TypeVar("Result")

# Added after one-shot cycles ran (they waited an interval first): patched() keeps their histories replaying.
RUN_ONCE_AT_ONCE = "run-once-at-once"
MAX_CYCLES_PER_RUN = 100  # beside Temporal's suggestion: keeps every run's history short
HISTORY_KEPT = 20
ROLLOUTS_KEPT = 20
# States the cycle passes through within one workflow task: not worth a search-attribute event of their own. With
# observe and decide as local activities, a quiet cycle's whole run is one workflow task.
INSTANT_STATES = (CycleState.ANALYZING,)
LOCAL_STEP_STATES = (CycleState.OBSERVING, CycleState.ANALYZING, CycleState.DECIDING)


def control_refused(refusal: str) -> FailureError:
    """How the `control` update refuses: an ApplicationError of type ControlRefused, non-retryable, whose message is
    the one line naming the field and value (docs/operations.md). Its failure is built here, so it carries no cause
    and no Python stack trace: the caller (the API, `temporal workflow update execute`) shows just that line."""
    failure = Failure(
        message=refusal,
        application_failure_info=ApplicationFailureInfo(type=ControlRefused.__name__, non_retryable=True),
    )
    return FailureError(refusal, failure=failure)


@workflow.defn(name="OptimizationCycle")
class OptimizationCycle:
    @workflow.init
    def __init__(self, input: CycleInput) -> None:
        # The settings as operators last set them (`set_objectives`): what the next cycle takes.
        self.input = input
        # What the running cycle took at its start: a change arriving half-way (say between decide and deploy) waits
        # for the next cycle instead of mixing two strategies in one.
        self.settings = input
        # Everything kept across continue-as-new, in one object handed whole to the next run (`_continued_input`).
        self.carried = input.carried.model_copy(deep=True)
        self.audit_seq = 0
        self.cycles_this_run = 0
        self.state = CycleState.IDLE
        self.trigger_reason: str | None = None
        self.findings: list[str] = []  # fast-path violations, handed to the next decision
        self.rollback_request: RollbackRequest | None = None
        self.active_version: str | None = None
        self.rollout: RolloutProgress | None = None
        self.rollout_handle: workflow.ChildWorkflowHandle | None = None
        self.exploration_handle: workflow.ChildWorkflowHandle | None = None
        self.last_decision: Decision | None = None
        self.next_run_at: datetime | None = None
        self.live_model: str | None = None
        self.breach: list[str] | None = None  # the threshold watcher's latest findings, not yet acted on
        self.pending_audit: list[AuditRecord] = []
        self.doing = "starting"  # what the current details say the cycle is doing
        # Histories recorded before the threshold watcher polled the fast path from the cycle and wrote one audit
        # row per local activity: `run` sets this with workflow.patched, so those histories replay the old way.
        self.lean = False
        # Observe and decide as local activities: a marker each instead of six events and a workflow task each; set by
        # `run` with workflow.patched like `lean`.
        self.local_steps = False
        self.upserted_state: str | None = None  # the CycleState search attribute as last written in this run

    @workflow.run
    async def run(self, input: CycleInput) -> CycleRecord | None:
        self.lean = workflow.patched("lean-history")
        self.local_steps = self.lean and workflow.patched("local-observe-decide")
        if self.local_steps:
            self.upserted_state = workflow.info().typed_search_attributes.get(CYCLE_STATE)
        if self.lean:
            self._publish_watch()
        self._show()
        # A one-shot cycle (a Schedule's) runs at once; runs from before waited for an interval first (the Schedule
        # set it to a second), and keep doing so on replay.
        at_once = input.run_once and workflow.patched(RUN_ONCE_AT_ONCE)
        carried = self.carried
        while True:
            if carried.stopped_reason is not None or carried.paused_reason is not None:
                await self._transition(CycleState.STOPPED if carried.stopped_reason else CycleState.PAUSED, "operator")
                await workflow.wait_condition(lambda: carried.stopped_reason is None and carried.paused_reason is None)
                await self._transition(CycleState.IDLE, "operator")
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

    # ---- the loop ----

    async def _next_trigger(self) -> str | None:
        """Wait for the interval, a fast-path violation, or an operator; None if paused or stopped meanwhile."""
        scale = self.input.time_scale
        self.next_run_at = workflow.now() + timedelta(seconds=self.input.interval_s * scale)
        self._show("waiting for the next run")
        if self.lean:
            return await self._wait()
        while True:
            over, trigger = self._interruption(breaches=False)
            if over:
                return trigger
            left = (self.next_run_at - workflow.now()).total_seconds()
            if left <= 0:
                return "timer"
            try:
                await workflow.wait_condition(
                    lambda: self._interrupted(breaches=False),
                    timeout=timedelta(seconds=min(left, self.input.fast_path_s * scale)),
                )
            except TimeoutError:
                if workflow.now() >= self.next_run_at:
                    return "timer"
                check = await workflow.execute_activity_method(
                    ThresholdActivities.check_thresholds,
                    ThresholdRequest(
                        service=self.input.service,
                        window_start=workflow.now() - timedelta(seconds=self.input.fast_path_s * scale),
                        window_end=workflow.now(),
                        constraints=self.input.constraints,
                    ),
                    **ACTIVITY,
                )
                if check.violated:
                    self.findings = check.reasons
                    return "threshold: " + "; ".join(check.reasons)

    async def _wait(self) -> str | None:
        """The interval's one timer: the fast path is the threshold watcher's (workflows/threshold_watcher.py),
        which signals `threshold_breached` only when something is wrong, so a quiet wait adds two events."""
        assert self.next_run_at is not None
        while True:
            over, trigger = self._interruption(breaches=True)
            if over:
                return trigger
            left = (self.next_run_at - workflow.now()).total_seconds()
            if left <= 0:
                return "timer"
            try:
                await workflow.wait_condition(
                    lambda: self._interrupted(breaches=True),
                    timeout=timedelta(seconds=left),
                    timeout_summary=f"next cycle in {minutes(left)}",
                )
            except TimeoutError:
                return "timer"

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

    async def _one_cycle(self, trigger: str) -> None:
        self.settings = self.input  # what this cycle uses to its end, whatever arrives meanwhile
        now = workflow.now()
        record = CycleRecord(
            cycle_id=f"{workflow.info().workflow_id}#{self.carried.cycles_done + 1}", started_at=now, trigger=trigger
        )
        await self._audit("cycle_started", trigger, {"cycle_id": record.cycle_id})

        await self._transition(CycleState.OBSERVING, trigger)
        window_start = now - timedelta(seconds=self.settings.analysis_window_s * self.settings.time_scale)
        observation = await self._step(
            DecisionActivities.observe,
            ObserveRequest(service=self.settings.service, window_start=window_start, window_end=now),
            "observe: the live config and its traffic split",
            OBSERVE,  # it waits for the window's events to land (docs/architecture.md "Complete windows")
        )
        self._set_active(observation.active_version, observation.active_model)

        if self.rollback_request is not None:
            await self._operator_rollback(observation, record)
        elif observation.active_version is None:
            record.rationale = "no config is assigned to this service yet"
        elif observation.data_late and not self.findings:
            # Not decided on a window still arriving: the next trigger looks again (a breach is acted on anyway).
            record.rationale = f"not decided: data late ({observation.data_late})"
        else:
            await self._transition(CycleState.ANALYZING, trigger)
            await self._transition(CycleState.DECIDING, trigger)
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
                await self._deploy(decision, observation, record)
            elif decision.action is Action.experiment and decision.arms and free:
                await self._explore(decision, observation, record)
            elif decision.action is Action.rollback and decision.target_version:
                await self._apply_rollback(decision.target_version, decision.rationale, record)
            elif decision.action is Action.alert:
                self._keep_alert(decision.rationale)  # the decision itself is the audit row

        record.finished_at = workflow.now()
        self.carried.history = [*self.carried.history, record][-HISTORY_KEPT:]
        self.carried.cycles_done += 1
        self.cycles_this_run += 1
        await self._audit("cycle_finished", trigger, record.model_dump(mode="json"))
        await self._transition(CycleState.IDLE, trigger)

    async def _deploy(self, decision: Decision, observation: Observation, record: CycleRecord) -> None:
        assert decision.candidate is not None and observation.active_version is not None
        candidate = decision.candidate
        explored = self.carried.memory.explored.get(candidate.key)
        measured = explored if explored is not None and explored.result.fate == "qualified" else None
        await self._transition(CycleState.VALIDATING, "decision")
        prepared = await workflow.execute_activity_method(
            RolloutActivities.prepare_canary,
            PrepareCanaryRequest(
                service=self.settings.service,
                decision_id=decision.decision_id,
                base_version=observation.active_version,
                model=candidate.model,
                provider=candidate.provider,
                changes=candidate.changes,
                known_version=measured.result.version if measured else None,
            ),
            summary=f"register the candidate {candidate.key} as a version",
            **ACTIVITY,
        )
        if prepared.version == observation.active_version:
            # The candidate's content is the live config's (same fingerprint): there is nothing to roll out.
            record.outcome = f"{candidate.key} is the live version {prepared.version} already: nothing rolled out"
            self.carried.memory = memory_rules.after_rollout(
                self.carried.memory, candidate.key, "promoted", workflow.now()
            )
            return
        await self._transition(CycleState.DEPLOYING, "decision")
        preset = PRESETS[self.settings.strategy].scaled(self.settings.time_scale)
        workflow_id = ids.canary_id(self.settings.service, prepared.version)
        rollout_id = f"{workflow_id}@{decision.decision_id[:8]}"  # a version may be rolled out again later
        thresholds = thresholds_for(
            self.settings.canary, preset.error_rate_increase, self.settings.constraints.quality_floor_ratio
        )
        if decision.floor_margin is not None:
            # The floor is relative to the reference config, not to the live one: after earlier promotions less
            # (or no) further drop is allowed.
            thresholds = thresholds.model_copy(
                update={"quality_decrease": min(thresholds.quality_decrease, decision.floor_margin)}
            )
        rollout_input = RolloutInput(
            rollout_id=rollout_id,
            service=self.settings.service,
            from_version=observation.active_version,
            to_version=prepared.version,
            strategy=self.settings.canary.rollout,
            stages=list(preset.rollout_stages(self.settings.canary.rollout)),
            # Rounded where people read them (the UI, `status`): a limit of -0.19999999999999996 reads as -0.2.
            thresholds=thresholds.model_copy(update={"quality_decrease": round(thresholds.quality_decrease, 6)}),
            max_extensions=self.settings.canary.max_extensions,
            decision_id=decision.decision_id,
            evidence_since=measured.since if measured else None,
            from_model=observation.active_model,
            to_model=prepared.spec.model,
        )
        self._show(f"starting the canary of {prepared.version} ({candidate.key})")
        self.rollout_handle = await workflow.start_child_workflow(
            CanaryRollout.run,
            rollout_input,
            id=workflow_id,
            static_summary=f"{self.settings.service}: canary {observation.active_version} -> {prepared.version} "
            f"({candidate.key})",
            static_details=rollout_details(rollout_input, decision.rationale),
            # Found in the UI with the cycle's own filters (Service="chat", ConfigVersion="v3", RolloutState).
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SERVICE, self.settings.service),
                    SearchAttributePair(CONFIG_VERSION, prepared.version),
                    SearchAttributePair(ROLLOUT_STATE, "starting"),  # the rollout's own states follow
                ]
            ),
            # The rollout's own cancellation handler restores the traffic: it is never left half-done.
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        )
        self.rollout = RolloutProgress(rollout_id=rollout_id, to_version=prepared.version, stage=0, percent=0)
        record.rollout_id = rollout_id
        self._link(
            RolloutLink(
                kind="canary",
                workflow_id=workflow_id,
                run_id=self.rollout_handle.first_execution_run_id,
                rollout_id=rollout_id,
                target=prepared.version,
                started_at=workflow.now(),
            )
        )
        await self._transition(CycleState.MONITORING, "rollout")
        self._show(f"watching the canary `{workflow_id}`")
        try:
            outcome: RolloutOutcome = await self.rollout_handle
        except ChildWorkflowError as err:
            # Only a step that can never succeed fails a rollout (workflows/options.py): alert, count it as rolled
            # back so the candidate is not retried at once, and keep the loop going.
            self.rollout_handle, self.rollout = None, None
            record.outcome = await self._alert(f"rollout {rollout_id} failed: {err.cause or err}", "rollout")
            self._finish_link(rollout_id, record.outcome)
            self.carried.memory = memory_rules.after_rollout(
                self.carried.memory, candidate.key, "rolled_back", workflow.now()
            )
            return
        self.rollout_handle, self.rollout = None, None
        record.outcome = f"{outcome.result}: {outcome.reason}"
        self._finish_link(rollout_id, record.outcome)
        self._set_active(
            outcome.final_version, candidate.model if outcome.result == "promoted" and candidate.model else None
        )
        self.carried.memory = memory_rules.after_rollout(
            self.carried.memory, candidate.key, outcome.result, workflow.now()
        )

    async def _explore(self, decision: Decision, observation: Observation, record: CycleRecord) -> None:
        """Measure several candidates at once on a slice of traffic (a child `Exploration`); what it measured is
        remembered, and the next decision, right after, picks from it."""
        assert observation.active_version is not None
        await self._transition(CycleState.VALIDATING, "decision")
        arms = await workflow.execute_activity_method(
            ExplorationActivities.prepare_arms,
            PrepareArmsRequest(
                service=self.settings.service,
                decision_id=decision.decision_id,
                base_version=observation.active_version,
                arms=decision.arms,
            ),
            summary=f"register {len(decision.arms)} exploration arms",
            **ACTIVITY,
        )
        # A candidate deferred by an earlier exploration carries on from what it measured then.
        arms = [
            a.model_copy(update={"since": e.since})
            if (e := self.carried.memory.explored.get(a.key)) is not None and e.result.fate in RETRYABLE
            else a
            for a in arms
        ]
        await self._transition(CycleState.DEPLOYING, "exploration")
        scale = self.settings.time_scale
        exploring = self.settings.exploration
        exploration_id = ids.exploration_id(self.settings.service, decision.decision_id)
        arm_names = ", ".join(f"{a.key} ({a.version})" for a in arms)
        self._show(f"starting an exploration of {arm_names}")
        self.exploration_handle = await workflow.start_child_workflow(
            Exploration.run,
            ExplorationInput(
                exploration_id=exploration_id,
                service=self.settings.service,
                live_version=observation.active_version,
                arms=arms,
                traffic_percent=exploring.traffic_percent,
                round_s=exploring.round_s * scale,
                max_duration_s=exploring.max_duration_s * scale,
                policy=ExplorationPolicy(
                    floor_ratio=self.settings.constraints.quality_floor_ratio,
                    alpha=exploring.alpha,
                    min_samples=exploring.min_samples,
                    max_samples=exploring.max_samples,
                    error_rate_max=self.settings.constraints.error_rate_max,
                    min_gain=PRESETS[self.settings.strategy].min_improvement,
                    cost_weight=self.settings.objectives.cost,
                    quality_weight=self.settings.objectives.quality,
                    max_traffic_percent=exploring.max_traffic_percent,
                    safe_margin=exploring.safe_margin,
                ),
                reference_version=self.carried.memory.reference_version,
                reference=self.carried.memory.reference,
                decision_id=decision.decision_id,
            ),
            id=exploration_id,
            static_summary=f"{self.settings.service}: explore {', '.join(a.key for a in arms)}",
            static_details=(
                f"Measures {arm_names} on {exploring.traffic_percent:g}% of {self.settings.service}'s traffic against "
                f"the quality floor ({self.settings.constraints.quality_floor_ratio:g} x the reference), for at most "
                f"{minutes(exploring.max_duration_s * scale)}; the live config {observation.active_version} serves "
                f"the rest.\n\nDecision: {decision.rationale}"
            ),
            # Every arm's version is on trial: the search attribute can hold one, so it names the live version the
            # arms are measured beside; `Service` and `RolloutState` find it.
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SERVICE, self.settings.service),
                    SearchAttributePair(CONFIG_VERSION, observation.active_version),
                    SearchAttributePair(ROLLOUT_STATE, "exploring"),
                ]
            ),
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        )
        record.rollout_id = exploration_id
        self._link(
            RolloutLink(
                kind="exploration",
                workflow_id=exploration_id,
                run_id=self.exploration_handle.first_execution_run_id,
                rollout_id=exploration_id,
                target=", ".join(a.key for a in arms),
                started_at=workflow.now(),
            )
        )
        await self._transition(CycleState.MONITORING, "exploration")
        self._show(f"watching the exploration `{exploration_id}`")
        try:
            outcome: ExplorationOutcome = await self.exploration_handle
        except ChildWorkflowError as err:
            self.exploration_handle = None
            record.outcome = await self._alert(
                f"exploration {exploration_id} failed: {err.cause or err}", "exploration"
            )
            self._finish_link(exploration_id, record.outcome)
            return
        self.exploration_handle = None
        record.outcome = outcome.reason
        self._finish_link(exploration_id, record.outcome)
        self.carried.memory = memory_rules.after_exploration(
            self.carried.memory,
            outcome.arms,
            outcome.live_version,
            outcome.live.quality if outcome.live is not None else None,
            since=outcome.started_at,
            now=workflow.now(),
        )
        if outcome.arms and any(r.fate == "qualified" for r in outcome.arms) and self.trigger_reason is None:
            self.trigger_reason = "exploration finished: decide on what it measured"

    async def _operator_rollback(self, observation: Observation, record: CycleRecord) -> None:
        request, self.rollback_request = self.rollback_request, None
        assert request is not None  # the caller checked
        target = request.target_version or observation.parent_version
        record.action = "rollback"
        if target is None or observation.active_version is None:
            record.rationale = "rollback requested but the live version has no parent to return to"
            refuse(self.carried, "rollback", record.rationale)
            return
        await self._apply_rollback(target, f"operator: {request.reason or 'manual rollback'}", record)

    async def _apply_rollback(self, target: str, reason: str, record: CycleRecord) -> None:
        await self._transition(CycleState.ROLLING_BACK, reason)
        self._show(f"rolling back to {target}: {reason}")
        try:
            await set_traffic(
                ids.rollback_change_id(self.settings.service, record.cycle_id),
                self.settings.service,
                target,
                None,
                0,
                summary=f"roll back: all traffic to {target}",
            )
        except ActivityError as err:
            # Only what can never succeed gets here (workflows/options.py TRAFFIC retries the rest): the split is
            # unchanged, and the cycle goes on with an alert instead of staying in ROLLING_BACK.
            record.rationale = reason
            record.outcome = await self._alert(
                f"rollback to {target} failed, traffic unchanged: {err.cause or err}", "rollback"
            )
            return
        record.rationale, record.outcome = reason, f"rolled back to {target}"
        self._set_active(target)
        self.carried.memory = memory_rules.after_rollback(self.carried.memory, workflow.now())

    # ---- bookkeeping ----

    def _set_active(self, version: str | None, model: str | None = None) -> None:
        if version and version != self.active_version:
            self.active_version, self.live_model = version, model  # a version whose model is not known yet: none
            workflow.upsert_search_attributes([CONFIG_VERSION.value_set(version)])
        elif model:
            self.live_model = model
        self._show()

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

    async def _transition(self, state: CycleState, why: str) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        instant = LOCAL_STEP_STATES if self.local_steps else INSTANT_STATES if self.lean else ()
        # Lean with local steps, a state already shown is not written again (a quiet run goes IDLE -> ... -> IDLE).
        if state not in instant and (not self.local_steps or self.upserted_state != state.value):
            workflow.upsert_search_attributes([CYCLE_STATE.value_set(state.value)])
            self.upserted_state = state.value
        self._show(f"{DOING[state]} ({why})")
        # The audit rows of a cycle's steps go together, written when the cycle waits (idle, paused, stopped,
        # watching a rollout): one local activity instead of one per row.
        waits = state in (CycleState.IDLE, CycleState.PAUSED, CycleState.STOPPED, CycleState.MONITORING)
        await self._audit("transition", why, {"from": previous.value, "to": state.value}, flush=waits)

    async def _audit(self, event_type: str, triggered_by: str, details: dict[str, Any], flush: bool = False) -> None:
        info = workflow.info()
        self.audit_seq += 1
        record = AuditRecord(
            id=f"{info.workflow_id}/{info.run_id}/{self.audit_seq}",
            service=self.input.service,
            at=workflow.now(),
            event_type=event_type,
            triggered_by=triggered_by[:200],
            details=details,
        )
        if not self.lean:  # as the recorded histories did: one local activity per row
            await workflow.execute_local_activity_method(
                AuditActivities.audit, record, start_to_close_timeout=timedelta(seconds=30)
            )
            return
        self.pending_audit.append(record)
        if flush:
            await self._flush_audit()

    async def _flush_audit(self) -> None:
        # Taken before the await: a signal handler flushing meanwhile writes only what came after.
        batch, self.pending_audit = self.pending_audit, []
        if not batch:
            return
        kinds = sorted({r.event_type for r in batch})
        await workflow.execute_local_activity_method(
            AuditActivities.audit_batch,
            batch,
            start_to_close_timeout=timedelta(seconds=30),
            summary=f"audit {len(batch)} rows ({', '.join(kinds)})",
        )

    def _publish_watch(self) -> None:
        """Tell the threshold watcher what to watch (memo `thresholds`), when it changed."""
        watch = ThresholdWatch(
            service=self.input.service,
            constraints=self.input.constraints,
            window_s=round(self.input.fast_path_s * self.input.time_scale, 6),  # read in the UI's memo tab
        )
        current = workflow.memo_value("thresholds", None, type_hint=ThresholdWatch)
        if current != watch:
            workflow.upsert_memo({"thresholds": watch})

    def _link(self, link: RolloutLink) -> None:
        self.carried.rollouts = [*self.carried.rollouts, link][-ROLLOUTS_KEPT:]

    def _finish_link(self, rollout_id: str, outcome: str) -> None:
        self.carried.rollouts = [
            r.model_copy(update={"finished_at": workflow.now(), "outcome": outcome[:500]})
            if r.rollout_id == rollout_id and r.finished_at is None
            else r
            for r in self.carried.rollouts
        ]

    def _show(self, doing: str | None = None) -> None:
        """The current details the Temporal UI shows (Markdown), after every transition, signal and stage."""
        if doing is not None:
            self.doing = doing
        workflow.set_current_details(cycle_details(self.status(), self.live_model, self.doing, workflow.now()))

    def _continued_input(self) -> CycleInput:
        """The next run's input: the settings operators last set, and everything carried, whole."""
        return self.input.model_copy(update={"carried": self.carried})

    # ---- operator controls. Every handler takes its inputs as they come (`*inputs`: any number, any JSON), so
    # that no input can fail a workflow task: what is not one valid JSON object is refused, shown in `status` and
    # audited; the `control` update answers a refusal with a ControlRefused error (docs/operations.md). ----

    async def _alert(self, text: str, cause: str) -> str:
        self._keep_alert(text)
        await self._audit("alert", cause, {"alert": text[:2000]}, flush=True)
        return text

    def _keep_alert(self, text: str) -> None:
        """`status` lists the last 20 things that need an operator."""
        self.carried.alerts = [*self.carried.alerts, text[:500]][-20:]

    async def _signal_rollout(self, name: str, payload: dict[str, Any]) -> None:
        # The rollout (or exploration) may have just finished (its result not yet seen here): then there is nothing
        # to stop.
        for child in (self.rollout_handle, self.exploration_handle):
            if child is None:
                continue
            try:
                await child.signal(name, payload)
            except Exception as err:
                workflow.logger.warning("could not signal %s to %s: %s", name, child.id, err)

    async def _record_signal(self, name: str, inputs: Sequence[Any], outcome: str, refusal: str | None) -> None:
        # Added after histories were recorded: patched() keeps those replaying.
        if workflow.patched("audit-signals"):
            payload = inputs[0] if len(inputs) == 1 else list(inputs) or None
            details: dict[str, Any] = {"payload": payload, "outcome": outcome}
            if refusal is not None:
                # A refused input may hold what Postgres cannot store (NUL, Infinity): kept as bounded JSON text.
                details = {"payload": json.dumps(payload, default=repr)[:2000], "outcome": outcome, "refusal": refusal}
            await self._audit("signal", name, details, flush=True)
        self._show()

    async def _missing_target(self, version: str) -> str | None:
        """Why a rollback to `version` is refused (it is not a version of this service), or None."""
        # Added after histories were recorded: patched() keeps those replaying.
        if not workflow.patched("rollback-target-exists"):
            return None
        try:
            exists = await workflow.execute_activity_method(
                RolloutActivities.version_exists,
                args=[self.input.service, version],
                summary=f"is {version} a version of {self.input.service}? (rollback target)",
                **ACTIVITY,
            )
        except ActivityError as err:
            return f"target_version = {version!r}: could not be checked ({err.cause or err})"
        return None if exists else f"target_version = {version!r}: no such version of service {self.input.service!r}"

    # Each control is a signal (fire and forget: the `temporal` CLI, the starters) and a command of the `control`
    # update (the HTTP API, which returns what the workflow acknowledged). Both run the same method, which returns
    # (outcome, refusal).

    async def _pause(self, inputs: Sequence[Any]) -> tuple[str, str | None]:
        request, outcome, refusal = take(self.carried, "pause", inputs, PauseRequest)
        if request is not None and self.carried.paused_reason is None:
            self.carried.paused_reason = request.reason or "paused by an operator"
        await self._record_signal("pause", inputs, outcome, refusal)
        return outcome, refusal

    async def _resume(self, inputs: Sequence[Any]) -> tuple[str, str | None]:
        request, outcome, refusal = take(self.carried, "resume", inputs, ResumeRequest)
        if request is not None:
            self.carried.paused_reason = None
            self.carried.stopped_reason = None
        await self._record_signal("resume", inputs, outcome, refusal)
        return outcome, refusal

    async def _trigger(self, inputs: Sequence[Any]) -> tuple[str, str | None]:
        request, outcome, refusal = take(self.carried, "trigger", inputs, TriggerRequest)
        if request is not None:
            self.trigger_reason = request.reason or "operator"
        await self._record_signal("trigger", inputs, outcome, refusal)
        return outcome, refusal

    async def _emergency_stop(self, inputs: Sequence[Any]) -> tuple[str, str | None]:
        request, outcome, refusal = take(self.carried, "emergency_stop", inputs, EmergencyStopRequest)
        if request is not None:
            self.carried.stopped_reason = request.reason or "emergency stop"
            if self.rollout_handle is not None or self.exploration_handle is not None:
                await self._signal_rollout("emergency_stop", {"reason": self.carried.stopped_reason})
        await self._record_signal("emergency_stop", inputs, outcome, refusal)
        return outcome, refusal

    async def _rollback(self, inputs: Sequence[Any]) -> tuple[str, str | None]:
        request, outcome, refusal = take(self.carried, "rollback", inputs, RollbackRequest)
        if request is not None and request.target_version is not None:
            missing = await self._missing_target(request.target_version)
            if missing is not None:
                request, outcome, refusal = None, "refused", refuse(self.carried, "rollback", missing)
        if request is not None:
            if self.rollout_handle is not None and request.target_version is None:
                await self._signal_rollout("rollback", {"reason": request.reason})
            else:
                self.rollback_request = request
        await self._record_signal("rollback", inputs, outcome, refusal)
        return outcome, refusal

    async def _set_objectives(self, inputs: Sequence[Any]) -> tuple[str, str | None]:
        request, outcome, refusal = take(self.carried, "set_objectives", inputs, ObjectivesUpdate)
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
            if self.lean:
                self._publish_watch()  # the watcher holds the live config to the new limits from now on
        await self._record_signal("set_objectives", inputs, outcome, refusal)
        return outcome, refusal

    # Signals answer nothing: a refused one is listed in `status` and audited. The `control` update answers.
    _SIGNAL = " Fire and forget; the `control` update does the same and answers (a refusal says why)."

    @workflow.signal(
        description='No new cycle starts until `resume`; a rollout in flight goes on. {"reason"}.' + _SIGNAL
    )
    async def pause(self, *inputs: Any) -> None:
        await self._pause(inputs)

    @workflow.signal(description="Undo a pause or an emergency stop: cycles run again. {}" + _SIGNAL)
    async def resume(self, *inputs: Any) -> None:
        await self._resume(inputs)

    @workflow.signal(description='Run a cycle now instead of at the next interval. {"reason"}' + _SIGNAL)
    async def trigger(self, *inputs: Any) -> None:
        await self._trigger(inputs)

    @workflow.signal(
        description='Roll back any rollout in flight at once and stay STOPPED until `resume`. {"reason"}' + _SIGNAL
    )
    async def emergency_stop(self, *inputs: Any) -> None:
        await self._emergency_stop(inputs)

    @workflow.signal(
        description='Back to the parent of the live version, or to "target_version"; during a rollout, roll it back.'
        ' {"reason", "target_version"}' + _SIGNAL
    )
    async def rollback(self, *inputs: Any) -> None:
        await self._rollback(inputs)

    @workflow.signal(
        description='Change "objectives" (weights), "constraints" (limits) or "strategy" (conservative, balanced, '
        "aggressive) for the cycles that start from now on; a running cycle ends with what it started with." + _SIGNAL
    )
    async def set_objectives(self, *inputs: Any) -> None:
        await self._set_objectives(inputs)

    def _commands(self) -> dict[str, Callable[[Sequence[Any]], Awaitable[tuple[str, str | None]]]]:
        return {
            "pause": self._pause,
            "resume": self._resume,
            "trigger": self._trigger,
            "emergency_stop": self._emergency_stop,
            "rollback": self._rollback,
            "set_objectives": self._set_objectives,
        }

    _MODELS: dict[str, type] = {
        "pause": PauseRequest,
        "resume": ResumeRequest,
        "trigger": TriggerRequest,
        "emergency_stop": EmergencyStopRequest,
        "rollback": RollbackRequest,
        "set_objectives": ObjectivesUpdate,
    }

    def _command(self, inputs: Sequence[Any]) -> ControlCommand:
        """The `control` update's one input as a ControlCommand naming a known control, or PayloadRefused."""
        if len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise PayloadRefused(f'takes one JSON object {{"name", "payload"}}, got {shown(list(inputs))}')
        try:
            command = ControlCommand.model_validate(inputs[0])
        except ValidationError as err:
            raise PayloadRefused(describe_refusal(err)) from None
        if command.name not in self._MODELS:
            raise PayloadRefused(f"name = {shown(command.name)}: not one of {', '.join(self._MODELS)}")
        return command

    @workflow.update(
        description='The operator\'s control, answered: {"name": pause|resume|trigger|emergency_stop|rollback|'
        'set_objectives, "payload": {...}} -> accepted or duplicate, with the status; a refusal is one line saying why.'
    )
    async def control(self, *inputs: Any) -> ControlAck:
        """Run one control and answer with its outcome and the cycle's status right after it; a refusal is a
        ControlRefused error whose message says which field and value, and why."""
        try:
            command = self._command(inputs)
        except PayloadRefused as err:  # the validator refuses these first; on replay it does not run
            raise control_refused(f"control refused: {err}") from None
        outcome, refusal = await self._commands()[command.name]((command.payload,))
        if refusal is not None:
            raise control_refused(refusal)
        return ControlAck(command=command.name, outcome=outcome, status=self.status())

    @control.validator
    def _validate_control(self, *inputs: Any) -> None:
        # Before acceptance: a refused command leaves nothing in the history. Whether a rollback target exists needs
        # the registry, so the handler checks that.
        try:
            command = self._command(inputs)
        except PayloadRefused as err:
            raise control_refused(f"control refused: {err}") from None
        try:
            operator_request(self._MODELS[command.name], (command.payload,))
        except PayloadRefused as err:
            raise control_refused(f"{command.name} refused: {err}") from None

    # Queries take no input; whatever a caller sends is ignored, so that a query always answers.

    @workflow.query(
        description="State, live version, rollout in flight, last decision and why, next run, pause or stop reason, "
        "refusals, alerts, and the last rollouts by workflow id."
    )
    def status(self, *inputs: Any) -> CycleStatus:
        return CycleStatus(
            service=self.input.service,
            state=self.state,
            active_version=self.active_version,
            rollout=self.rollout,
            last_decision=self.last_decision,
            next_run_at=self.next_run_at,
            paused_reason=self.carried.paused_reason,
            stopped_reason=self.carried.stopped_reason,
            strategy=self.input.strategy,
            objectives=self.input.objectives,
            constraints=self.input.constraints,
            refusals=self.carried.refusals,
            cycles_done=self.carried.cycles_done,
            alerts=self.carried.alerts,
            rollouts=self.carried.rollouts,
        )

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
            self._show()
