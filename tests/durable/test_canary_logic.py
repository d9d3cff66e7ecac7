"""CanaryRollout's logic on scripted activities (tests/helpers/fake_activities.py) and the time-skipping server: no
Postgres. Which verdict promotes, rolls back or extends a stage, and what operator signals do mid-stage. The same
workflow against the real activities and Postgres is tests/durable/test_canary_rollout.py."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from helpers.fake_activities import FakeLoop, fake_worker
from temporalio.client import WorkflowHandle

from llm_optimizer.canary_judge import JudgeThresholds
from llm_optimizer.payloads import RolloutInput, RolloutOutcome, RolloutStatus
from llm_optimizer.strategies import RolloutStage
from workflows import CanaryRollout

SERVICE = "canary-logic"
BAKE_S = 600
STAGES = [
    RolloutStage(percent=5, bake_s=BAKE_S),
    RolloutStage(percent=50, bake_s=BAKE_S),
    RolloutStage(percent=100, bake_s=0),
]


async def start(env, worker, **overrides) -> WorkflowHandle:
    inp = RolloutInput(
        rollout_id=f"r-{uuid.uuid4().hex[:6]}",
        service=SERVICE,
        from_version="v2",
        to_version="v3",
        stages=STAGES,
        thresholds=JudgeThresholds(),
        **overrides,
    )
    return await env.client.start_workflow(CanaryRollout.run, inp, id=inp.rollout_id, task_queue=worker.task_queue)


async def baking(handle: WorkflowHandle, stage: int) -> RolloutStatus:
    """The rollout's status once it bakes `stage` (real time passes, test time does not)."""
    for _ in range(200):
        status = await handle.query(CanaryRollout.status)
        if status.stage == stage and status.state == "baking" and status.time_left_s is not None:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"never baked stage {stage}: {status}")


def windows(fakes: FakeLoop) -> list[int]:
    """The length of each judged window, in whole seconds of test time (activities take a few real ms)."""
    return [round((j.window_end - j.window_start).total_seconds()) for j in fakes.judged]


async def test_healthy_at_every_stage_promotes_after_judging_each_with_the_last_as_gate(time_skipping_env):
    fakes = FakeLoop(SERVICE)
    async with fake_worker(time_skipping_env.client, fakes) as worker:
        outcome: RolloutOutcome = await (await start(time_skipping_env, worker)).result()
    assert outcome.result == "promoted" and outcome.final_version == "v3"
    assert fakes.splits() == [("v2", "v3", 5), ("v2", "v3", 50), ("v3", None, 0)]
    assert fakes.judged_stages() == [(0, 0), (1, 0)]
    assert [j.thresholds.promotion_gate for j in fakes.judged] == [False, True]
    # The first stage is judged on its bake; the promotion gate pools everything since the rollout began.
    assert windows(fakes) == [BAKE_S, 2 * BAKE_S]
    assert [(r.state, r.finished) for r in fakes.records] == [("running", False), ("promoted", True)]


async def test_degraded_at_a_stage_rolls_back_at_once(time_skipping_env):
    fakes = FakeLoop(SERVICE, verdicts=["healthy", "degraded"])
    async with fake_worker(time_skipping_env.client, fakes) as worker:
        outcome = await (await start(time_skipping_env, worker)).result()
    assert outcome.result == "rolled_back" and outcome.final_version == "v2"
    assert outcome.reason == "degraded at 50%: scripted degraded"
    assert fakes.splits() == [("v2", "v3", 5), ("v2", "v3", 50), ("v2", None, 0)]
    assert fakes.judged_stages() == [(0, 0), (1, 0)]
    assert fakes.records[-1].state == "rolled_back" and fakes.records[-1].reason == outcome.reason


async def test_inconclusive_extends_the_stage_up_to_max_extensions_then_rolls_back(time_skipping_env):
    fakes = FakeLoop(SERVICE, verdicts=["inconclusive"] * 3)
    async with fake_worker(time_skipping_env.client, fakes) as worker:
        outcome = await (await start(time_skipping_env, worker, max_extensions=2)).result()
    assert outcome.result == "rolled_back"
    assert outcome.reason == "still inconclusive at 5% after 2 extensions: scripted inconclusive"
    assert fakes.judged_stages() == [(0, 0), (0, 1), (0, 2)]
    # An extension bakes again and judges the whole stage so far: the same start, one more bake each time.
    assert len({j.window_start for j in fakes.judged}) == 1
    assert windows(fakes) == [BAKE_S, 2 * BAKE_S, 3 * BAKE_S]
    assert fakes.splits()[-1] == ("v2", None, 0)


async def test_an_extension_that_turns_healthy_goes_on_and_late_data_uses_no_extension(time_skipping_env):
    # Stage 1: two extensions (the most allowed), then healthy. Stage 2: late data three times, which is not too
    # little evidence (max_extensions does not count it), then healthy.
    script = ["inconclusive", "inconclusive", "healthy", "late", "late", "late", "healthy"]
    fakes = FakeLoop(SERVICE, verdicts=script)
    async with fake_worker(time_skipping_env.client, fakes) as worker:
        outcome = await (await start(time_skipping_env, worker, max_extensions=2)).result()
    assert outcome.result == "promoted", outcome.reason
    assert fakes.judged_stages() == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert len(outcome.verdicts) == len(script)


async def test_data_late_past_max_late_s_rolls_back(time_skipping_env):
    fakes = FakeLoop(SERVICE, verdicts=["late"] * 10)
    async with fake_worker(time_skipping_env.client, fakes) as worker:
        # Late since the first judgement: at the third it has been late for two bakes, 1200 s = max_late_s.
        outcome = await (await start(time_skipping_env, worker, max_late_s=2 * BAKE_S, late_alert_s=BAKE_S)).result()
    assert outcome.result == "rolled_back"
    assert outcome.reason.startswith("data late at 5% for 1200 s"), outcome.reason
    assert fakes.judged_stages() == [(0, 0), (0, 1), (0, 2)]


async def test_operator_promote_skips_the_stage_verdict_once_per_request_id(time_skipping_env):
    fakes = FakeLoop(SERVICE)
    async with fake_worker(time_skipping_env.client, fakes) as worker:
        handle = await start(time_skipping_env, worker)
        await baking(handle, 0)
        await handle.signal(CanaryRollout.promote, {"request_id": "p1"})
        await baking(handle, 1)
        await handle.signal(CanaryRollout.promote, {"request_id": "p1"})  # a repeat: ignored, stage 2 is judged
        outcome = await handle.result()
    assert outcome.result == "promoted"
    assert fakes.judged_stages() == [(1, 0)], "the promoted stage is not judged, the next one is"
    assert fakes.splits() == [("v2", "v3", 5), ("v2", "v3", 50), ("v3", None, 0)]


async def test_operator_promote_to_end_promotes_at_once(time_skipping_env):
    fakes = FakeLoop(SERVICE)
    async with fake_worker(time_skipping_env.client, fakes) as worker:
        handle = await start(time_skipping_env, worker)
        await baking(handle, 0)
        await handle.signal(CanaryRollout.promote, {"to_end": True})
        outcome = await handle.result()
    assert outcome.result == "promoted" and outcome.verdicts == [] and fakes.judged == []
    assert fakes.splits() == [("v2", "v3", 5), ("v3", None, 0)]


async def test_operator_rollback_mid_stage_restores_the_baseline_without_a_verdict(time_skipping_env):
    fakes = FakeLoop(SERVICE)
    async with fake_worker(time_skipping_env.client, fakes) as worker:
        handle = await start(time_skipping_env, worker)
        await baking(handle, 0)
        await handle.signal(CanaryRollout.rollback, {"reason": "bad answers"})
        outcome = await handle.result()
    assert outcome.result == "rolled_back" and outcome.reason == "rolled back by an operator: bad answers"
    assert fakes.judged == [] and fakes.splits() == [("v2", "v3", 5), ("v2", None, 0)]


async def test_pause_stops_the_bake_timer_until_resume(time_skipping_env):
    fakes = FakeLoop(SERVICE)
    async with fake_worker(time_skipping_env.client, fakes) as worker:
        handle = await start(time_skipping_env, worker)
        await baking(handle, 0)
        await handle.signal(CanaryRollout.pause, {})
        for _ in range(100):
            paused = await handle.query(CanaryRollout.status)
            if paused.state == "paused":
                break
            await asyncio.sleep(0.05)
        assert paused.paused and paused.state == "paused"
        await time_skipping_env.sleep(timedelta(hours=3))  # far past the bake: nothing may be judged meanwhile
        still = await handle.query(CanaryRollout.status)
        assert fakes.judged == [] and still.stage == 0 and still.time_left_s == paused.time_left_s
        await handle.signal(CanaryRollout.resume, {})
        outcome = await handle.result()
    assert outcome.result == "promoted" and fakes.judged_stages() == [(0, 0), (1, 0)]
    # The stage was judged on its bake and the pause together: the pause counts as no bake time.
    assert (fakes.judged[0].window_end - fakes.judged[0].window_start) >= timedelta(hours=3)
