"""`optimization.canary.rollout: blue_green` reaches the rollout: the cycle starts a CanaryRollout that checks the
new version on the preset's first stage, then switches all traffic and watches it (activities scripted under their
real names, no Postgres)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from llm_optimizer.canary_judge import CanaryVerdict
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.decision import Action, Decision, Profile
from llm_optimizer.payloads import (
    AuditRecord,
    CycleInput,
    JudgeRequest,
    Observation,
    ObserveRequest,
    PrepareCanaryRequest,
    PreparedCanary,
    RolloutOutcome,
    RolloutRecord,
    TrafficRequest,
)
from llm_optimizer.settings import CanaryThresholds
from llm_optimizer.strategies import PRESETS, RolloutStage, Strategy
from workflows import CanaryRollout, OptimizationCycle

SERVICE = "bluegreen"


def test_a_blue_green_rollout_is_the_first_stage_then_all_traffic_watched_for_the_longest_bake():
    balanced = PRESETS[Strategy.balanced]  # 5% for 5 min, 25% for 10 min, 50% for 15 min, then 100%
    assert balanced.rollout_stages("canary") == balanced.stages
    assert balanced.rollout_stages("blue_green") == (
        RolloutStage(percent=5, bake_s=300),
        RolloutStage(percent=100, bake_s=900),
    )


class Script:
    def __init__(self) -> None:
        self.judged: list[float] = []
        self.decided = False

    @activity.defn(name="observe")
    async def observe(self, request: ObserveRequest) -> Observation:
        return Observation(service=request.service, active_version="v1", parent_version=None, canary_version=None)

    @activity.defn(name="decide")
    async def decide(self, request: dict) -> Decision:
        action = Action.none if self.decided else Action.canary  # one change, then nothing more to do
        self.decided = True
        return Decision(
            decision_id=str(uuid.uuid4()),
            service=SERVICE,
            made_at=datetime.now(UTC),
            action=action,
            rationale="scripted",
            candidate=Profile(model="gpt-4o-mini", provider="openai"),
        )

    @activity.defn(name="prepare_canary")
    async def prepare_canary(self, request: PrepareCanaryRequest) -> PreparedCanary:
        return PreparedCanary(version="v2", spec=ConfigSpec(model="gpt-4o-mini", provider="openai"))

    @activity.defn(name="judge_stage")
    async def judge_stage(self, request: JudgeRequest) -> CanaryVerdict:
        self.judged.append(request.percent)
        return CanaryVerdict(verdict="healthy", reasons=[], checks=[], baseline_requests=900, canary_requests=100)

    @activity.defn(name="audit_batch")
    async def audit_batch(self, records: list[AuditRecord]) -> int:
        return len(records)

    @activity.defn(name="set_traffic")
    async def set_traffic(self, request: TrafficRequest) -> None:
        pass

    @activity.defn(name="record_rollout")
    async def record_rollout(self, record: RolloutRecord) -> None:
        pass

    @activity.defn(name="version_exists")
    async def version_exists(self, service: str, version: str) -> bool:
        return True

    def all(self) -> list:
        return [
            self.observe,
            self.decide,
            self.prepare_canary,
            self.judge_stage,
            self.audit_batch,
            self.set_traffic,
            self.record_rollout,
            self.version_exists,
        ]


async def _result_once_started(handle: WorkflowHandle[Any, RolloutOutcome]) -> RolloutOutcome:
    """The rollout's outcome; the cycle starts it after its first decision, so it may not exist yet."""
    while True:
        try:
            return await handle.result()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            await asyncio.sleep(0.1)


async def test_the_cycle_rolls_out_blue_green_when_the_setting_says_so(temporal_client):
    script = Script()
    queue = f"bluegreen-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client, task_queue=queue, workflows=[OptimizationCycle, CanaryRollout], activities=script.all()
    ):
        cycle = await temporal_client.start_workflow(
            OptimizationCycle.run,
            CycleInput(
                service=SERVICE,
                interval_s=3600,
                fast_path_s=3600,
                time_scale=0.001,  # bakes of 0.3 s and a watch of 0.9 s
                canary=CanaryThresholds(rollout="blue_green"),
            ),
            id=f"optimization-cycle/{SERVICE}/{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )
        rollout = temporal_client.get_workflow_handle("canary/bluegreen/v2", result_type=RolloutOutcome)
        outcome = await asyncio.wait_for(_result_once_started(rollout), 30)
        await cycle.terminate()
    assert outcome.result == "promoted", outcome
    # The health check at 5% and the watch after the switch to 100%: no 25% or 50% stage, as a canary would run.
    assert script.judged == [5.0, 100.0]
    assert [v.percent for v in outcome.verdicts] == [5.0, 100.0]
