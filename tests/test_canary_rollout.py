"""CanaryRollout on the time-skipping server with real Postgres: every operator signal at every stage.

The judge is scripted here (registered under the real activity name) so that each test chooses the verdicts;
the traffic and audit activities are the real ones. tests/test_control_loop.py runs the real judge.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import psycopg
import pytest
from conftest import settings_for
from fixture_prices import fixture_book
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.worker import Worker

from activities.loop import LoopActivities
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.control import JudgeRequest, RolloutInput, RolloutOutcome, RolloutStatus
from llm_optimizer.judge import CanaryVerdict, JudgeThresholds
from llm_optimizer.resolution import Assignment
from llm_optimizer.settings import Strategy
from llm_optimizer.strategies import PRESETS
from storage import configs_repo
from workflows import CanaryRollout

SERVICE = "chat"
STAGES = list(PRESETS[Strategy.balanced].stages)  # 5% 5 min, 25% 10 min, 50% 15 min, 100%


class ScriptedJudge:
    def __init__(self, verdicts: dict[int, list[str]] | None = None):
        self.verdicts = verdicts or {}
        self.calls: list[JudgeRequest] = []

    @activity.defn(name="judge_stage")
    async def judge_stage(self, request: JudgeRequest) -> CanaryVerdict:
        self.calls.append(request)
        script = self.verdicts.get(request.stage, [])
        verdict = script[request.attempt] if request.attempt < len(script) else "healthy"
        return CanaryVerdict(
            verdict=verdict,
            reasons=[] if verdict == "healthy" else [f"scripted {verdict}"],
            checks=[],
            baseline_requests=1000,
            canary_requests=500,
        )


@pytest.fixture
def registry(database_url):
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o-mini", provider="openai"))
        configs_repo.set_assignment(conn, Assignment(service=SERVICE, active_version="v1"), updated_by="test")
        conn.commit()
    return database_url


def assignment(database_url) -> Assignment:
    with psycopg.connect(database_url) as conn:
        return configs_repo.get_assignment(conn, SERVICE)


class Rig:
    def __init__(self, env, database_url, stack, judge: ScriptedJudge):
        self.env, self.judge = env, judge
        settings = settings_for(stack, database_url)
        loop = LoopActivities(settings, fixture_book())
        self.queue = f"rollout-{uuid.uuid4().hex[:8]}"
        self.worker = Worker(
            env.client,
            task_queue=self.queue,
            workflows=[CanaryRollout],
            activities=[loop.set_traffic, loop.record_rollout, judge.judge_stage],
        )

    async def start(self):
        return await self.env.client.start_workflow(
            CanaryRollout.run,
            RolloutInput(
                rollout_id=f"canary/{SERVICE}/v2@{uuid.uuid4().hex[:6]}",
                service=SERVICE,
                from_version="v1",
                to_version="v2",
                stages=STAGES,
                thresholds=JudgeThresholds(),
                max_extensions=2,
            ),
            id=f"canary/{SERVICE}/v2/{uuid.uuid4().hex[:6]}",
            task_queue=self.queue,
        )

    async def baking(self, handle, stage: int) -> RolloutStatus:
        """Skip time until the rollout bakes at `stage`."""
        for _ in range(200):
            status = await handle.query(CanaryRollout.status)
            if status.stage == stage and status.time_left_s and status.time_left_s > 0:
                return status
            await self.env.sleep(timedelta(seconds=30))
        raise AssertionError(f"never reached stage {stage}")


async def test_healthy_rollout_is_promoted_through_every_stage(time_skipping_env, registry, stack):
    judge = ScriptedJudge()
    rig = Rig(time_skipping_env, registry, stack, judge)
    async with rig.worker:
        handle = await rig.start()
        outcome: RolloutOutcome = await handle.result()
    assert outcome.result == "promoted" and outcome.final_version == "v2"
    assert [v.percent for v in outcome.verdicts] == [5, 25, 50]
    # The judge saw each stage's own window, as long as its bake time; the last stage before promotion is the
    # gate, judged on every request since the rollout began.
    windows = [(c.window_end - c.window_start).total_seconds() for c in judge.calls]
    assert windows == pytest.approx([300, 600, 300 + 600 + 900], abs=1)
    assert [c.thresholds.promotion_gate for c in judge.calls] == [False, False, True]
    assert assignment(registry) == Assignment(service=SERVICE, active_version="v2")
    with psycopg.connect(registry) as conn:
        assert conn.execute("SELECT state FROM rollouts").fetchone() == ("promoted",)


async def test_degradation_rolls_back_and_inconclusive_stages_are_extended(time_skipping_env, registry, stack):
    judge = ScriptedJudge({0: ["inconclusive", "healthy"], 1: ["degraded"]})
    rig = Rig(time_skipping_env, registry, stack, judge)
    async with rig.worker:
        outcome: RolloutOutcome = await (await rig.start()).result()
    assert outcome.result == "rolled_back" and "scripted degraded" in outcome.reason
    assert [(v.stage, v.attempt, v.verdict.verdict) for v in outcome.verdicts] == [
        (0, 0, "inconclusive"),
        (0, 1, "healthy"),
        (1, 0, "degraded"),
    ]
    assert assignment(registry) == Assignment(service=SERVICE, active_version="v1")


async def test_a_stage_that_stays_inconclusive_is_rolled_back(time_skipping_env, registry, stack):
    rig = Rig(time_skipping_env, registry, stack, ScriptedJudge({0: ["inconclusive"] * 5}))
    async with rig.worker:
        outcome: RolloutOutcome = await (await rig.start()).result()
    assert outcome.result == "rolled_back" and "after 2 extensions" in outcome.reason
    assert len(outcome.verdicts) == 3


@pytest.mark.parametrize("stage", [0, 1, 2])
@pytest.mark.parametrize("signal", ["pause", "promote", "promote_to_end", "rollback", "emergency_stop", "cancel"])
async def test_every_signal_at_every_stage(time_skipping_env, registry, stack, signal, stage):
    rig = Rig(time_skipping_env, registry, stack, ScriptedJudge())
    async with rig.worker:
        handle = await rig.start()
        before = await rig.baking(handle, stage)
        assert assignment(registry).canary_percent == STAGES[stage].percent

        if signal == "pause":
            await handle.signal(CanaryRollout.pause, {"reason": "maintenance"})
            paused = await handle.query(CanaryRollout.status)
            await rig.env.sleep(timedelta(hours=3))  # far longer than any bake: the timer must not run
            later = await handle.query(CanaryRollout.status)
            assert paused.paused and later.paused and later.stage == stage
            assert 0 < later.time_left_s == pytest.approx(paused.time_left_s, abs=1)
            assert later.time_left_s <= before.time_left_s
            await handle.signal(CanaryRollout.resume, {})
            outcome = await handle.result()
            assert outcome.result == "promoted" and len(outcome.verdicts) == 3
        elif signal == "promote":
            await handle.signal(CanaryRollout.promote, {"to_end": False})
            outcome = await handle.result()
            assert outcome.result == "promoted"
            assert stage not in {v.stage for v in outcome.verdicts}, "a promoted stage is not judged"
        elif signal == "promote_to_end":
            await handle.signal(CanaryRollout.promote, {"to_end": True})
            outcome = await handle.result()
            assert outcome.result == "promoted" and len(outcome.verdicts) == stage
        elif signal in ("rollback", "emergency_stop"):
            await handle.signal(signal, {"reason": "incident 42"})
            await handle.signal(signal, {"reason": "incident 42"})  # signals may arrive twice
            outcome = await handle.result()
            assert outcome.result == "rolled_back" and "incident 42" in outcome.reason
            assert len(outcome.verdicts) == stage
        else:
            await handle.cancel()
            outcome = await handle.result()
            assert outcome.result == "rolled_back" and "cancelled" in outcome.reason

    expected = "v2" if outcome.result == "promoted" else "v1"
    assert assignment(registry) == Assignment(service=SERVICE, active_version=expected)


async def test_a_bad_signal_payload_is_ignored_not_fatal(time_skipping_env, registry, stack):
    rig = Rig(time_skipping_env, registry, stack, ScriptedJudge())
    async with rig.worker:
        handle = await rig.start()
        await rig.baking(handle, 0)
        await handle.signal(CanaryRollout.promote, {"to_end": "sometimes"})
        outcome = await handle.result()
    assert outcome.result == "promoted" and len(outcome.verdicts) == 3


async def test_unknown_version_fails_cleanly(time_skipping_env, registry, stack):
    rig = Rig(time_skipping_env, registry, stack, ScriptedJudge())
    async with rig.worker:
        handle = await rig.env.client.start_workflow(
            CanaryRollout.run,
            RolloutInput(
                rollout_id="canary/chat/v9@x",
                service=SERVICE,
                from_version="v1",
                to_version="v9",
                stages=STAGES,
                thresholds=JudgeThresholds(),
            ),
            id=f"canary/{SERVICE}/v9/{uuid.uuid4().hex[:6]}",
            task_queue=rig.queue,
            execution_timeout=timedelta(hours=1),
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert assignment(registry) == Assignment(service=SERVICE, active_version="v1")
