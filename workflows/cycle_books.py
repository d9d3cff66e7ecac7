"""What an `OptimizationCycle` keeps and how it keeps it: its state, the audit rows, the transitions, the links to
its rollouts, its alerts, and what it shows (`status`, the current details). The cycle's steps
(`workflows/cycle_deploy.py`, `cycle_explore.py`, `cycle_rollback.py`) and its controls (`cycle_controls.py`) work
on these books; the loop itself is `workflows/optimization_cycle.py`. Deterministic: workflow code only."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.audit import AuditActivities
    from llm_optimizer.decision import Decision
    from llm_optimizer.payloads import (
        AuditRecord,
        CycleInput,
        CycleState,
        CycleStatus,
        RollbackRequest,
        RolloutLink,
        RolloutProgress,
        ThresholdWatch,
    )
    from runtime.search_attributes import CONFIG_VERSION, CYCLE_STATE
    from workflows.details import DOING, cycle_details

ROLLOUTS_KEPT = 20
ALERTS_KEPT = 20
# States the cycle passes through within one workflow task: not worth a search-attribute event of their own. With
# observe and decide as local activities, a quiet cycle's whole run is one workflow task.
INSTANT_STATES = (CycleState.ANALYZING,)
LOCAL_STEP_STATES = (CycleState.OBSERVING, CycleState.ANALYZING, CycleState.DECIDING)


class CycleBooks:
    """The cycle's state and its bookkeeping; `OptimizationCycle` is these books plus the loop and its handlers."""

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

    # ---- what it shows ----

    def current_status(self) -> CycleStatus:
        """What the `status` query answers (and the `control` update with it)."""
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

    def show(self, doing: str | None = None) -> None:
        """The current details the Temporal UI shows (Markdown), after every transition, signal and stage."""
        if doing is not None:
            self.doing = doing
        workflow.set_current_details(cycle_details(self.current_status(), self.live_model, self.doing, workflow.now()))

    def publish_watch(self) -> None:
        """Tell the threshold watcher what to watch (memo `thresholds`), when it changed."""
        watch = ThresholdWatch(
            service=self.input.service,
            constraints=self.input.constraints,
            window_s=round(self.input.fast_path_s * self.input.time_scale, 6),  # read in the UI's memo tab
        )
        current = workflow.memo_value("thresholds", None, type_hint=ThresholdWatch)
        if current != watch:
            workflow.upsert_memo({"thresholds": watch})

    def set_active(self, version: str | None, model: str | None = None) -> None:
        if version and version != self.active_version:
            self.active_version, self.live_model = version, model  # a version whose model is not known yet: none
            workflow.upsert_search_attributes([CONFIG_VERSION.value_set(version)])
        elif model:
            self.live_model = model
        self.show()

    async def transition(self, state: CycleState, why: str) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        instant = LOCAL_STEP_STATES if self.local_steps else INSTANT_STATES if self.lean else ()
        # Lean with local steps, a state already shown is not written again (a quiet run goes IDLE -> ... -> IDLE).
        if state not in instant and (not self.local_steps or self.upserted_state != state.value):
            workflow.upsert_search_attributes([CYCLE_STATE.value_set(state.value)])
            self.upserted_state = state.value
        self.show(f"{DOING[state]} ({why})")
        # The audit rows of a cycle's steps go together, written when the cycle waits (idle, paused, stopped,
        # watching a rollout): one local activity instead of one per row.
        waits = state in (CycleState.IDLE, CycleState.PAUSED, CycleState.STOPPED, CycleState.MONITORING)
        await self.audit("transition", why, {"from": previous.value, "to": state.value}, flush=waits)

    # ---- the audit ----

    async def audit(self, event_type: str, triggered_by: str, details: dict[str, Any], flush: bool = False) -> None:
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
            await self.flush_audit()

    async def flush_audit(self) -> None:
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

    async def alert(self, text: str, cause: str) -> str:
        self.keep_alert(text)
        await self.audit("alert", cause, {"alert": text[:2000]}, flush=True)
        return text

    def keep_alert(self, text: str) -> None:
        """`status` lists the last 20 things that need an operator."""
        self.carried.alerts = [*self.carried.alerts, text[:500]][-ALERTS_KEPT:]

    # ---- the rollouts and explorations it started ----

    def link(self, link: RolloutLink) -> None:
        self.carried.rollouts = [*self.carried.rollouts, link][-ROLLOUTS_KEPT:]

    def finish_link(self, rollout_id: str, outcome: str) -> None:
        self.carried.rollouts = [
            r.model_copy(update={"finished_at": workflow.now(), "outcome": outcome[:500]})
            if r.rollout_id == rollout_id and r.finished_at is None
            else r
            for r in self.carried.rollouts
        ]

    async def signal_children(self, name: str, payload: dict[str, Any]) -> None:
        # The rollout (or exploration) may have just finished (its result not yet seen here): then there is nothing
        # to stop.
        for child in (self.rollout_handle, self.exploration_handle):
            if child is None:
                continue
            try:
                await child.signal(name, payload)
            except Exception as err:
                workflow.logger.warning("could not signal %s to %s: %s", name, child.id, err)
