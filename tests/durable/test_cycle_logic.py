"""OptimizationCycle's logic on scripted activities (tests/helpers/fake_activities.py) and the time-skipping server:
no Postgres. What each decision makes the cycle do (a CanaryRollout child, a rollback, nothing), what it remembers
of a rollout, and the operator's pause, resume and emergency stop. The same workflow against the real activities
and Postgres is tests/durable/test_optimization_cycle.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta

from helpers.fake_activities import FakeLoop, canary_of, fake_worker
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from llm_optimizer import ids
from llm_optimizer.decision import Action
from llm_optimizer.payloads import CycleInput, CycleRecord, CycleState, CycleStatus
from workflows import CanaryRollout, OptimizationCycle

SERVICE = "cycle-logic"
INTERVAL_S = 900


async def start(env: WorkflowEnvironment, worker, **overrides) -> WorkflowHandle:
    inp = CycleInput(service=SERVICE, interval_s=INTERVAL_S, **overrides)
    return await env.client.start_workflow(
        OptimizationCycle.run, inp, id=f"{ids.cycle_id(SERVICE)}-{uuid.uuid4().hex[:6]}", task_queue=worker.task_queue
    )


async def until(
    env: WorkflowEnvironment,
    handle: WorkflowHandle,
    predicate: Callable[[CycleStatus], bool],
    what: str,
    step: timedelta | None = timedelta(minutes=1),
) -> CycleStatus:
    """The cycle's status once `predicate` holds; test time moves on by `step` between looks (None: it stands)."""
    for _ in range(200):
        status = await handle.query(OptimizationCycle.status)
        if predicate(status):
            return status
        if step is None:
            await asyncio.sleep(0.05)
        else:
            await env.sleep(step)
    raise AssertionError(f"never reached: {what}; last status {status}")


async def test_a_canary_decision_runs_a_rollout_child_and_records_its_outcome(time_skipping_env):
    fakes = FakeLoop(SERVICE, decisions=[canary_of("gpt-4o-mini")])
    async with fake_worker(time_skipping_env.client, fakes) as worker:
        handle = await start(time_skipping_env, worker, run_once=True)
        record: CycleRecord = await handle.result()
        status = await handle.query(OptimizationCycle.status)
        child = await time_skipping_env.client.get_workflow_handle(ids.canary_id(SERVICE, "v3")).describe()
    assert record.action == "canary" and record.outcome == "promoted: v3 serves all traffic"
    assert record.rollout_id is not None and record.rollout_id.startswith(ids.canary_id(SERVICE, "v3") + "@")
    assert [(p.base_version, p.model) for p in fakes.prepared] == [("v2", "gpt-4o-mini")]
    assert child.parent_id == handle.id and child.status.name == "COMPLETED"
    assert fakes.splits()[-1] == ("v3", None, 0), "the promotion moved all traffic to the new version"
    assert status.active_version == "v3" and status.rollout is None
    [link] = status.rollouts
    assert link.rollout_id == record.rollout_id and link.outcome == record.outcome and link.finished_at is not None


async def test_a_rolled_back_canary_is_remembered_by_the_next_decision(time_skipping_env):
    fakes = FakeLoop(SERVICE, decisions=[canary_of("gpt-4o-mini")], verdicts=["degraded"])
    async with fake_worker(time_skipping_env.client, fakes) as worker:
        handle = await start(time_skipping_env, worker)
        status = await until(time_skipping_env, handle, lambda s: s.cycles_done >= 2, "two cycles")
        history = await handle.query(OptimizationCycle.history)
        await handle.terminate()
    assert history[0].outcome.startswith("rolled_back: degraded at "), history[0].outcome
    assert status.active_version == "v2" and fakes.splits()[-1] == ("v2", None, 0)
    # The second decision is told the candidate lost its canary, so it is not tried again at once.
    memory = fakes.decided[1].memory
    assert memory.canary_outcomes == {"gpt-4o-mini": (0, 1)} and "gpt-4o-mini" in memory.rolled_back_models
    assert len(memory.rollbacks) == 1
    assert history[1].action == "none" and history[1].rollout_id is None


async def test_a_none_decision_changes_nothing(time_skipping_env):
    fakes = FakeLoop(SERVICE)
    async with fake_worker(time_skipping_env.client, fakes) as worker:
        handle = await start(time_skipping_env, worker, run_once=True)
        record = await handle.result()
        status = await handle.query(OptimizationCycle.status)
    assert record.action == "none" and record.rollout_id is None and record.outcome is None
    assert len(fakes.decided) == 1 and fakes.prepared == [] and fakes.traffic == [] and fakes.judged == []
    assert status.rollouts == [] and status.active_version == "v2" and status.cycles_done == 1


async def test_late_data_or_no_live_config_is_not_decided_on(time_skipping_env):
    late = FakeLoop(SERVICE, data_late="the watermark is 5 minutes behind")
    empty = FakeLoop(SERVICE, active=None, parent=None)
    records = []
    for fakes in (late, empty):
        async with fake_worker(time_skipping_env.client, fakes) as worker:
            records.append(await (await start(time_skipping_env, worker, run_once=True)).result())
    assert records[0].rationale == "not decided: data late (the watermark is 5 minutes behind)"
    assert records[1].rationale == "no config is assigned to this service yet"
    assert late.observed and empty.observed and late.decided == [] and empty.decided == []


async def test_a_rollback_decision_moves_all_traffic_to_its_target(time_skipping_env):
    fakes = FakeLoop(SERVICE, decisions=[{"action": Action.rollback, "target_version": "v1"}])
    async with fake_worker(time_skipping_env.client, fakes) as worker:
        handle = await start(time_skipping_env, worker, run_once=True)
        record = await handle.result()
        status = await handle.query(OptimizationCycle.status)
    assert record.action == "rollback" and record.outcome == "rolled back to v1"
    assert fakes.splits() == [("v1", None, 0)] and status.active_version == "v1"


async def test_pause_resume_and_emergency_stop_between_cycles(time_skipping_env):
    fakes = FakeLoop(SERVICE)
    env = time_skipping_env
    async with fake_worker(env.client, fakes) as worker:
        handle = await start(env, worker)
        first = await until(env, handle, lambda s: s.cycles_done == 1 and s.state == CycleState.IDLE, "a timed cycle")
        assert first.next_run_at is not None

        await handle.signal(OptimizationCycle.pause, {"reason": "maintenance"})
        await until(env, handle, lambda s: s.state == CycleState.PAUSED, "paused", step=None)
        await env.sleep(timedelta(seconds=3 * INTERVAL_S))  # three intervals pass: no cycle may run
        paused = await handle.query(OptimizationCycle.status)
        assert paused.cycles_done == 1 and paused.paused_reason == "maintenance"

        await handle.signal(OptimizationCycle.resume, {})
        resumed = await until(env, handle, lambda s: s.cycles_done == 2, "the first cycle after resume")
        assert resumed.paused_reason is None

        await handle.signal(OptimizationCycle.emergency_stop, {"reason": "provider outage"})
        await until(env, handle, lambda s: s.state == CycleState.STOPPED, "stopped", step=None)
        await env.sleep(timedelta(seconds=3 * INTERVAL_S))
        stopped = await handle.query(OptimizationCycle.status)
        assert stopped.cycles_done == 2 and stopped.stopped_reason == "provider outage"

        await handle.signal(OptimizationCycle.resume, {})
        await until(env, handle, lambda s: s.cycles_done == 3, "the first cycle after the stop is lifted")
        history = await handle.query(OptimizationCycle.history)
        await handle.terminate()
    assert [r.trigger for r in history] == ["timer"] * 3
    assert len(fakes.decided) == 3


async def test_emergency_stop_during_a_rollout_rolls_the_child_back_and_stops(time_skipping_env):
    fakes = FakeLoop(SERVICE, decisions=[canary_of("gpt-4o-mini")])
    env = time_skipping_env
    async with fake_worker(env.client, fakes) as worker:
        handle = await start(env, worker)
        await handle.signal(OptimizationCycle.trigger, {"reason": "now"})
        await until(env, handle, lambda s: s.rollout is not None, "a rollout in flight", step=None)
        canary = env.client.get_workflow_handle_for(CanaryRollout.run, ids.canary_id(SERVICE, "v3"))
        for _ in range(100):  # the child bakes its first stage
            if (await canary.query(CanaryRollout.status)).state == "baking":
                break
            await asyncio.sleep(0.05)
        await handle.signal(OptimizationCycle.emergency_stop, {"reason": "provider outage"})
        outcome = await canary.result()
        stopped = await until(env, handle, lambda s: s.state == CycleState.STOPPED, "stopped", step=None)
        history = await handle.query(OptimizationCycle.history)
        await handle.terminate()
    assert outcome.result == "rolled_back" and outcome.reason == "emergency stop: provider outage"
    assert fakes.judged == [] and fakes.splits()[-1] == ("v2", None, 0)
    assert stopped.stopped_reason == "provider outage" and stopped.rollout is None
    assert history[-1].outcome == "rolled_back: emergency stop: provider outage"


async def test_operator_rollback_goes_to_the_rollout_in_flight_or_else_to_the_parent(time_skipping_env):
    fakes = FakeLoop(SERVICE, decisions=[canary_of("gpt-4o-mini")])
    env = time_skipping_env
    async with fake_worker(env.client, fakes) as worker:
        handle = await start(env, worker)
        await handle.signal(OptimizationCycle.trigger, {})
        await until(env, handle, lambda s: s.rollout is not None, "a rollout in flight", step=None)
        # During a rollout: the rollout is rolled back, the cycle goes on (it is not stopped).
        await handle.signal(OptimizationCycle.rollback, {"reason": "bad answers"})
        after = await until(env, handle, lambda s: s.cycles_done == 1 and s.state == CycleState.IDLE, "rolled back")
        assert after.stopped_reason is None and after.active_version == "v2"
        # Between cycles: the next cycle, at once, moves all traffic to the live version's parent.
        await handle.signal(OptimizationCycle.rollback, {"reason": "still bad"})
        parent = await until(env, handle, lambda s: s.cycles_done == 2, "the rollback's cycle", step=None)
        history = await handle.query(OptimizationCycle.history)
        await handle.terminate()
    assert history[0].outcome == "rolled_back: rolled back by an operator: bad answers"
    assert (history[1].trigger, history[1].action, history[1].outcome) == (
        "operator: rollback",
        "rollback",
        "rolled back to v1",
    )
    assert parent.active_version == "v1" and fakes.splits()[-1] == ("v1", None, 0)
    assert len(fakes.decided) == 1, "an operator's rollback is not decided on"
