"""The cycle's deploy step: register the decided candidate as a version and roll it out through a child
`CanaryRollout`, then remember how it went. Deterministic: workflow code only."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

from workflows.cycle_books import CycleBooks
from workflows.options import ACTIVITY

with workflow.unsafe.imports_passed_through():
    from activities.rollout import RolloutActivities
    from llm_optimizer import ids
    from llm_optimizer import memory as memory_rules
    from llm_optimizer.canary_judge import thresholds_for
    from llm_optimizer.decision import Decision
    from llm_optimizer.payloads import (
        CycleRecord,
        CycleState,
        Observation,
        PrepareCanaryRequest,
        RolloutInput,
        RolloutLink,
        RolloutOutcome,
        RolloutProgress,
    )
    from llm_optimizer.strategies import PRESETS
    from runtime.search_attributes import CONFIG_VERSION, ROLLOUT_STATE, SERVICE
    from workflows.canary_rollout import CanaryRollout
    from workflows.details import rollout_details


async def deploy(cycle: CycleBooks, decision: Decision, observation: Observation, record: CycleRecord) -> None:
    assert decision.candidate is not None and observation.active_version is not None
    candidate = decision.candidate
    explored = cycle.carried.memory.explored.get(candidate.key)
    measured = explored if explored is not None and explored.result.fate == "qualified" else None
    await cycle.transition(CycleState.VALIDATING, "decision")
    prepared = await workflow.execute_activity_method(
        RolloutActivities.prepare_canary,
        PrepareCanaryRequest(
            service=cycle.settings.service,
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
        cycle.carried.memory = memory_rules.after_rollout(
            cycle.carried.memory, candidate.key, "promoted", workflow.now()
        )
        return
    await cycle.transition(CycleState.DEPLOYING, "decision")
    preset = PRESETS[cycle.settings.strategy].scaled(cycle.settings.time_scale)
    workflow_id = ids.canary_id(cycle.settings.service, prepared.version)
    rollout_id = f"{workflow_id}@{decision.decision_id[:8]}"  # a version may be rolled out again later
    thresholds = thresholds_for(
        cycle.settings.canary, preset.error_rate_increase, cycle.settings.constraints.quality_floor_ratio
    )
    if decision.floor_margin is not None:
        # The floor is relative to the reference config, not to the live one: after earlier promotions less
        # (or no) further drop is allowed.
        thresholds = thresholds.model_copy(
            update={"quality_decrease": min(thresholds.quality_decrease, decision.floor_margin)}
        )
    rollout_input = RolloutInput(
        rollout_id=rollout_id,
        service=cycle.settings.service,
        from_version=observation.active_version,
        to_version=prepared.version,
        strategy=cycle.settings.canary.rollout,
        stages=list(preset.rollout_stages(cycle.settings.canary.rollout)),
        # Rounded where people read them (the UI, `status`): a limit of -0.19999999999999996 reads as -0.2.
        thresholds=thresholds.model_copy(update={"quality_decrease": round(thresholds.quality_decrease, 6)}),
        max_extensions=cycle.settings.canary.max_extensions,
        decision_id=decision.decision_id,
        evidence_since=measured.since if measured else None,
        from_model=observation.active_model,
        to_model=prepared.spec.model,
    )
    cycle.show(f"starting the canary of {prepared.version} ({candidate.key})")
    cycle.rollout_handle = await workflow.start_child_workflow(
        CanaryRollout.run,
        rollout_input,
        id=workflow_id,
        static_summary=f"{cycle.settings.service}: canary {observation.active_version} -> {prepared.version} "
        f"({candidate.key})",
        static_details=rollout_details(rollout_input, decision.rationale),
        # Found in the UI with the cycle's own filters (Service="chat", ConfigVersion="v3", RolloutState).
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SERVICE, cycle.settings.service),
                SearchAttributePair(CONFIG_VERSION, prepared.version),
                SearchAttributePair(ROLLOUT_STATE, "starting"),  # the rollout's own states follow
            ]
        ),
        # The rollout's own cancellation handler restores the traffic: it is never left half-done.
        parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
    )
    cycle.rollout = RolloutProgress(rollout_id=rollout_id, to_version=prepared.version, stage=0, percent=0)
    record.rollout_id = rollout_id
    cycle.link(
        RolloutLink(
            kind="canary",
            workflow_id=workflow_id,
            run_id=cycle.rollout_handle.first_execution_run_id,
            rollout_id=rollout_id,
            target=prepared.version,
            started_at=workflow.now(),
        )
    )
    await cycle.transition(CycleState.MONITORING, "rollout")
    cycle.show(f"watching the canary `{workflow_id}`")
    try:
        outcome: RolloutOutcome = await cycle.rollout_handle
    except ChildWorkflowError as err:
        # Only a step that can never succeed fails a rollout (workflows/options.py): alert, count it as rolled
        # back so the candidate is not retried at once, and keep the loop going.
        cycle.rollout_handle, cycle.rollout = None, None
        record.outcome = await cycle.alert(f"rollout {rollout_id} failed: {err.cause or err}", "rollout")
        cycle.finish_link(rollout_id, record.outcome)
        cycle.carried.memory = memory_rules.after_rollout(
            cycle.carried.memory, candidate.key, "rolled_back", workflow.now()
        )
        return
    cycle.rollout_handle, cycle.rollout = None, None
    record.outcome = f"{outcome.result}: {outcome.reason}"
    cycle.finish_link(rollout_id, record.outcome)
    cycle.set_active(
        outcome.final_version, candidate.model if outcome.result == "promoted" and candidate.model else None
    )
    cycle.carried.memory = memory_rules.after_rollout(
        cycle.carried.memory, candidate.key, outcome.result, workflow.now()
    )
