"""CanaryRollout on the time-skipping server with real Postgres: every operator signal at every stage.

The judge is scripted here (registered under the real activity name) so that each test chooses the verdicts;
the traffic and audit activities are the real ones. tests/integration/test_control_loop.py runs the real judge, and
tests/integration/test_watermark.py the real judge on late data.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import psycopg
import pytest
from helpers.fixture_prices import fixture_book
from helpers.servers import settings_for, wait_for
from temporalio import activity
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowFailureError
from temporalio.worker import Worker

from activities import LoopActivitySet
from llm_optimizer.canary_judge import CanaryVerdict, JudgeThresholds, MetricCheck, late
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.payloads import JudgeRequest, RolloutInput, RolloutOutcome, RolloutStatus
from llm_optimizer.resolution import Assignment
from llm_optimizer.strategies import PRESETS, RolloutStage, Strategy
from runtime.search_attributes import CONFIG_VERSION, ROLLOUT_STATE
from runtime.search_attributes import SERVICE as SERVICE_ATTRIBUTE
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
        if verdict == "late":
            return late("scripted: ingestion is behind")
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


def rollout_input(**overrides) -> RolloutInput:
    """A canary of v2 against v1 of the test service, through STAGES, with default thresholds."""
    fields = {
        "rollout_id": f"canary/{SERVICE}/v2@{uuid.uuid4().hex[:6]}",
        "service": SERVICE,
        "from_version": "v1",
        "to_version": "v2",
        "stages": STAGES,
        "thresholds": JudgeThresholds(),
    }
    return RolloutInput(**{**fields, **overrides})


class Rig:
    def __init__(self, env, database_url, stack, judge: ScriptedJudge):
        self.env, self.judge = env, judge
        settings = settings_for(stack, database_url)
        loop = LoopActivitySet(settings, fixture_book())
        self.queue = f"rollout-{uuid.uuid4().hex[:8]}"
        self.worker = Worker(
            env.client,
            task_queue=self.queue,
            workflows=[CanaryRollout],
            activities=[loop.rollout.set_traffic, loop.rollout.record_rollout, judge.judge_stage],
        )

    async def start(self, **overrides):
        return await self.env.client.start_workflow(
            CanaryRollout.run,
            rollout_input(max_extensions=2, **overrides),
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


async def test_late_data_extends_a_stage_without_using_its_extensions(time_skipping_env, registry, stack):
    # Three late judgements, then two inconclusive ones (the two extensions allowed), then healthy: promoted.
    judge = ScriptedJudge({0: ["late", "late", "late", "inconclusive", "inconclusive", "healthy"]})
    rig = Rig(time_skipping_env, registry, stack, judge)
    async with rig.worker:
        outcome: RolloutOutcome = await (await rig.start()).result()
    assert outcome.result == "promoted"
    first = [v.verdict for v in outcome.verdicts if v.stage == 0]
    assert [v.data_late for v in first] == [True, True, True, False, False, False]
    assert first[0].reasons == ["data late: scripted: ingestion is behind"]
    # Each judgement of the stage has its own attempt (its own verdict row), late or not.
    assert [c.attempt for c in judge.calls if c.stage == 0] == [0, 1, 2, 3, 4, 5]
    with psycopg.connect(registry) as conn:
        rows = conn.execute("SELECT count(*) FROM rollout_verdicts").fetchone()
    assert rows == (0,), "the scripted judge writes no verdict rows; only the real one does"


async def test_data_late_for_long_alerts_then_rolls_back_on_the_safe_side(time_skipping_env, registry, stack):
    rig = Rig(time_skipping_env, registry, stack, ScriptedJudge({0: ["late"] * 100}))
    async with rig.worker:
        handle = await rig.start(late_alert_s=900, max_late_s=3000)
        for _ in range(100):
            status: RolloutStatus = await handle.query(CanaryRollout.status)
            if status.alerts:
                break
            await rig.env.sleep(timedelta(seconds=60))
        assert status.alerts and "data late for" in status.alerts[0]
        assert status.state in ("data_late", "judging") and status.data_late_s >= 900
        assert assignment(registry).canary_percent == STAGES[0].percent, "late data changes no traffic"
        outcome: RolloutOutcome = await handle.result()
    assert outcome.result == "rolled_back" and outcome.reason.startswith("data late at 5% for ")
    assert all(v.verdict.data_late for v in outcome.verdicts)
    assert assignment(registry) == Assignment(service=SERVICE, active_version="v1")


class FiguresJudge(ScriptedJudge):
    """Healthy, with the unrounded figures a real judge produces."""

    @activity.defn(name="judge_stage")
    async def judge_stage(self, request: JudgeRequest) -> CanaryVerdict:
        self.calls.append(request)
        return CanaryVerdict(
            verdict="healthy",
            reasons=[],
            checks=[
                MetricCheck(
                    metric="quality",
                    baseline=0.8123456,
                    canary=0.6759999,
                    relative_change=-0.16781234,
                    threshold=-0.19999999999999996,
                    test="welch_t (non-inferiority)",
                    p_value=0.000123456,
                    degraded=False,
                )
            ],
            baseline_requests=1234,
            canary_requests=77,
        )


async def test_the_temporal_ui_says_what_the_rollout_is_doing(temporal_client, registry, stack):
    """Current details, summaries, descriptions and search attributes, read back from the real dev server."""
    settings = settings_for(stack, registry)
    loop = LoopActivitySet(settings, fixture_book())
    queue = f"rollout-ui-{uuid.uuid4().hex[:8]}"
    judge = FiguresJudge()
    stages = [
        RolloutStage(percent=5, bake_s=0.5),
        RolloutStage(percent=25, bake_s=600),
        RolloutStage(percent=100, bake_s=0),
    ]
    worker = Worker(
        temporal_client,
        task_queue=queue,
        workflows=[CanaryRollout],
        activities=[loop.rollout.set_traffic, loop.rollout.record_rollout, judge.judge_stage],
    )
    async with worker:
        handle = await temporal_client.start_workflow(
            CanaryRollout.run,
            rollout_input(stages=stages, from_model="gpt-4o", to_model="gpt-4o-mini"),
            id=f"canary/{SERVICE}/v2/{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )

        async def baking_stage_two():
            status = await handle.query(CanaryRollout.status)
            return status.stage == 1 and status.state == "baking" and status.time_left_s

        await wait_for(baking_stage_two, 20, "the rollout baking at 25%")
        details = (await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)).current_details
        assert "`v1` (gpt-4o) → `v2` (gpt-4o-mini)" in details
        assert "**Stage 2 of 3**: 25% of traffic, baking until" in details
        # One line per verdict: rounded figures against their limits, and why.
        assert "stage 1 (5%): **healthy** on 1234 / 77 requests; quality -16.8% (limit -20%, p=0.00012)" in details
        assert "Why: no metric credibly past its limit" in details
        attributes = (await handle.describe()).typed_search_attributes
        assert attributes.get(ROLLOUT_STATE) == "baking"
        assert attributes.get(SERVICE_ATTRIBUTE) == SERVICE and attributes.get(CONFIG_VERSION) == "v2"

        await handle.signal(CanaryRollout.pause, {})
        await wait_for(lambda: _state(handle, "paused"), 10, "RolloutState paused")
        assert (
            "**Paused** by an operator"
            in (await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)).current_details
        )
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        described = {
            d.name: d.description
            for d in [*metadata.definition.signal_definitions, *metadata.definition.query_definitions]
        }
        for name in ("promote", "rollback", "emergency_stop", "pause", "resume", "status"):
            assert len(described[name]) > 20, name
        await handle.signal(CanaryRollout.promote, {"to_end": True})
        outcome = await handle.result()
        assert outcome.result == "promoted"
        assert (await handle.describe()).typed_search_attributes.get(ROLLOUT_STATE) == "promoted"

        summaries = []
        async for event in handle.fetch_history_events():
            if event.HasField("user_metadata") and event.user_metadata.HasField("summary"):
                summaries.append(
                    temporal_client.data_converter.payload_converter.from_payload(event.user_metadata.summary, str)
                )
    assert "record rollout running" in summaries
    assert "set traffic 5% to v2" in summaries
    assert "bake 5% for 0.5 s" in summaries and "bake 25% for 600 s" in summaries
    assert "judge stage 1: 5%" in summaries
    assert "promote v2, record promoted" in summaries


async def _state(handle, state: str) -> bool:
    return (await handle.describe()).typed_search_attributes.get(ROLLOUT_STATE) == state


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
