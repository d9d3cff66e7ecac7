"""The cycle's explore step: measure several candidates at once on a slice of traffic through a child
`Exploration`, and remember what it measured for the decision right after. Deterministic: workflow code only."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

from workflows.cycle_books import CycleBooks
from workflows.options import ACTIVITY

with workflow.unsafe.imports_passed_through():
    from activities.exploration import ExplorationActivities
    from llm_optimizer import ids
    from llm_optimizer import memory as memory_rules
    from llm_optimizer.decision import Decision
    from llm_optimizer.exploration import RETRYABLE, ExplorationPolicy
    from llm_optimizer.payloads import (
        CycleRecord,
        CycleState,
        ExplorationInput,
        ExplorationOutcome,
        Observation,
        PrepareArmsRequest,
        RolloutLink,
    )
    from llm_optimizer.strategies import PRESETS
    from runtime.search_attributes import CONFIG_VERSION, ROLLOUT_STATE, SERVICE
    from workflows.details import minutes
    from workflows.exploration import Exploration


async def explore(cycle: CycleBooks, decision: Decision, observation: Observation, record: CycleRecord) -> None:
    """Measure several candidates at once on a slice of traffic (a child `Exploration`); what it measured is
    remembered, and the next decision, right after, picks from it."""
    assert observation.active_version is not None
    await cycle.transition(CycleState.VALIDATING, "decision")
    arms = await workflow.execute_activity_method(
        ExplorationActivities.prepare_arms,
        PrepareArmsRequest(
            service=cycle.settings.service,
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
        if (e := cycle.carried.memory.explored.get(a.key)) is not None and e.result.fate in RETRYABLE
        else a
        for a in arms
    ]
    await cycle.transition(CycleState.DEPLOYING, "exploration")
    scale = cycle.settings.time_scale
    exploring = cycle.settings.exploration
    exploration_id = ids.exploration_id(cycle.settings.service, decision.decision_id)
    arm_names = ", ".join(f"{a.key} ({a.version})" for a in arms)
    cycle.show(f"starting an exploration of {arm_names}")
    cycle.exploration_handle = await workflow.start_child_workflow(
        Exploration.run,
        ExplorationInput(
            exploration_id=exploration_id,
            service=cycle.settings.service,
            live_version=observation.active_version,
            arms=arms,
            traffic_percent=exploring.traffic_percent,
            round_s=exploring.round_s * scale,
            max_duration_s=exploring.max_duration_s * scale,
            policy=ExplorationPolicy(
                floor_ratio=cycle.settings.constraints.quality_floor_ratio,
                alpha=exploring.alpha,
                min_samples=exploring.min_samples,
                max_samples=exploring.max_samples,
                error_rate_max=cycle.settings.constraints.error_rate_max,
                min_gain=PRESETS[cycle.settings.strategy].min_improvement,
                cost_weight=cycle.settings.objectives.cost,
                quality_weight=cycle.settings.objectives.quality,
                max_traffic_percent=exploring.max_traffic_percent,
                safe_margin=exploring.safe_margin,
            ),
            reference_version=cycle.carried.memory.reference_version,
            reference=cycle.carried.memory.reference,
            decision_id=decision.decision_id,
        ),
        id=exploration_id,
        static_summary=f"{cycle.settings.service}: explore {', '.join(a.key for a in arms)}",
        static_details=(
            f"Measures {arm_names} on {exploring.traffic_percent:g}% of {cycle.settings.service}'s traffic against "
            f"the quality floor ({cycle.settings.constraints.quality_floor_ratio:g} x the reference), for at most "
            f"{minutes(exploring.max_duration_s * scale)}; the live config {observation.active_version} serves "
            f"the rest.\n\nDecision: {decision.rationale}"
        ),
        # Every arm's version is on trial: the search attribute can hold one, so it names the live version the
        # arms are measured beside; `Service` and `RolloutState` find it.
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SERVICE, cycle.settings.service),
                SearchAttributePair(CONFIG_VERSION, observation.active_version),
                SearchAttributePair(ROLLOUT_STATE, "exploring"),
            ]
        ),
        parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
    )
    record.rollout_id = exploration_id
    cycle.link(
        RolloutLink(
            kind="exploration",
            workflow_id=exploration_id,
            run_id=cycle.exploration_handle.first_execution_run_id,
            rollout_id=exploration_id,
            target=", ".join(a.key for a in arms),
            started_at=workflow.now(),
        )
    )
    await cycle.transition(CycleState.MONITORING, "exploration")
    cycle.show(f"watching the exploration `{exploration_id}`")
    try:
        outcome: ExplorationOutcome = await cycle.exploration_handle
    except ChildWorkflowError as err:
        cycle.exploration_handle = None
        record.outcome = await cycle.alert(f"exploration {exploration_id} failed: {err.cause or err}", "exploration")
        cycle.finish_link(exploration_id, record.outcome)
        return
    cycle.exploration_handle = None
    record.outcome = outcome.reason
    cycle.finish_link(exploration_id, record.outcome)
    cycle.carried.memory = memory_rules.after_exploration(
        cycle.carried.memory,
        outcome.arms,
        outcome.live_version,
        outcome.live.quality if outcome.live is not None else None,
        since=outcome.started_at,
        now=workflow.now(),
    )
    if outcome.arms and any(r.fate == "qualified" for r in outcome.arms) and cycle.trigger_reason is None:
        cycle.trigger_reason = "exploration finished: decide on what it measured"
