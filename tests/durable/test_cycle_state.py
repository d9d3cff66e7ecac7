"""What a cycle carries and what its handlers may change: the carried state is one object (old flat inputs still
read), a `set_objectives` that arrives half-way through a cycle is for the next one, a one-shot cycle runs at once,
and the one accept/refuse helper of the handlers. Workflows run on scripted activities (tests/helpers/
fake_activities.py) and the time-skipping server: no Postgres."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from helpers.fake_activities import FakeLoop, canary_of, fake_worker
from pydantic import ValidationError
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from llm_optimizer import ids
from llm_optimizer.decision import Memory
from llm_optimizer.payloads import (
    CycleCarried,
    CycleInput,
    CycleRecord,
    CycleStatus,
    PauseRequest,
    PrepareCanaryRequest,
    PreparedCanary,
    RequestLog,
    RolloutLink,
)
from llm_optimizer.strategies import PRESETS, Strategy
from workflows import OptimizationCycle
from workflows.handlers import REFUSALS_KEPT, SEEN_KEPT, take

SERVICE = "cycle-state"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def round_trip(value: object, type_hint: type) -> object:
    """`value` as Temporal stores it and a worker reads it back (the project's pydantic data converter)."""
    converter = pydantic_data_converter.payload_converter
    [payload] = converter.to_payloads([value])
    [decoded] = converter.from_payloads([payload], [type_hint])
    return decoded


# ---- one carried object ----


def test_an_input_with_the_flat_fields_of_older_runs_folds_them_into_carried():
    # A continue-as-new input written before CycleCarried (and every recorded history's start) has them flat.
    old = {
        "service": SERVICE,
        "strategy": "aggressive",
        "memory": {"last_change_at": NOW.isoformat()},
        "history": [{"cycle_id": "c#1", "started_at": NOW.isoformat(), "trigger": "timer"}],
        "paused_reason": "maintenance",
        "stopped_reason": None,
        "seen_request_ids": ["r1"],
        "refusals": ["pause refused: reason = 5: Input should be a valid string"],
        "cycles_done": 7,
        "rollouts": [
            {"kind": "canary", "workflow_id": "canary/x/v3", "rollout_id": "r", "target": "v3", "started_at": NOW}
        ],
    }
    inp = round_trip(old, CycleInput)
    assert isinstance(inp, CycleInput) and inp.strategy == Strategy.aggressive
    carried = inp.carried
    assert carried.memory.last_change_at == NOW and carried.history[0].cycle_id == "c#1"
    assert (carried.paused_reason, carried.cycles_done, carried.seen_request_ids) == ("maintenance", 7, ["r1"])
    assert carried.refusals == old["refusals"] and carried.rollouts[0].workflow_id == "canary/x/v3"
    # Written back, it has the new shape only.
    dumped = inp.model_dump(mode="json")
    assert not set(CycleCarried.model_fields) & set(dumped) and dumped["carried"]["cycles_done"] == 7


def test_a_carried_field_given_flat_and_in_carried_is_refused_naming_it():
    with pytest.raises(ValidationError, match="cycles_done: given both at the top level and in `carried`"):
        CycleInput.model_validate({"service": SERVICE, "cycles_done": 1, "carried": {"cycles_done": 2}})


def test_every_carried_field_survives_the_next_runs_input():
    carried = CycleCarried(
        seen_request_ids=["r1"],
        refusals=["trigger refused: x"],
        memory=Memory(last_change_at=NOW),
        history=[CycleRecord(cycle_id="c#1", started_at=NOW, trigger="timer")],
        paused_reason="paused",
        stopped_reason="stopped",
        cycles_done=3,
        rollouts=[RolloutLink(kind="canary", workflow_id="w", rollout_id="r", target="v3", started_at=NOW)],
        alerts=["rollback of v3 could not be applied"],
    )
    unset = [name for name in CycleCarried.model_fields if name not in carried.model_fields_set]
    assert not unset, f"give every field a value here: {unset}"
    cycle = OptimizationCycle(CycleInput(service=SERVICE))
    cycle.carried = carried
    cycle.input = cycle.input.model_copy(update={"strategy": Strategy.conservative})  # as set_objectives does
    following = round_trip(cycle._continued_input(), CycleInput)
    assert isinstance(following, CycleInput)
    assert following.carried == carried and following.strategy == Strategy.conservative


# ---- the handlers' one helper ----


def test_take_accepts_once_refuses_with_why_and_bounds_what_it_keeps():
    log = RequestLog()
    accepted = take(log, "pause", ({"reason": "window", "request_id": "a"},), PauseRequest)
    assert accepted.outcome == "accepted" and accepted.request is not None and accepted.request.reason == "window"
    assert take(log, "pause", ({"request_id": "a"},), PauseRequest).outcome == "duplicate"
    refused = take(log, "pause", ({"reason": 5},), PauseRequest)
    assert refused.request is None and refused.outcome == "refused"
    assert refused.refusal is not None and refused.refusal.startswith("pause refused: reason = 5")
    assert log.refusals == [refused.refusal]
    for i in range(SEEN_KEPT + 5):
        take(log, "pause", ({"request_id": f"r{i}"},), PauseRequest)
        take(log, "pause", ([i],), PauseRequest)
    assert len(log.seen_request_ids) == SEEN_KEPT and log.seen_request_ids[-1] == f"r{SEEN_KEPT + 4}"
    assert len(log.refusals) == REFUSALS_KEPT and "[104]" in log.refusals[-1]


# ---- handlers cannot change a cycle half-way ----


class ChangedDuringPrepare(FakeLoop):
    """prepare_canary (between decide and the rollout's start) has the operator change the strategy and the quality
    floor, and returns once the cycle has taken the change: what follows in the cycle must not use it."""

    def __init__(self, client: Client, **kwargs) -> None:
        super().__init__(SERVICE, **kwargs)
        self.client = client
        self.workflow_id = ""

    @activity.defn(name="prepare_canary")
    async def prepare_canary(self, request: PrepareCanaryRequest) -> PreparedCanary:
        handle = self.client.get_workflow_handle(self.workflow_id)
        change = {"strategy": "aggressive", "constraints": {"quality_floor_ratio": 0.8}, "request_id": "o1"}
        await handle.signal("set_objectives", change)
        for _ in range(200):
            if (await handle.query("status", result_type=CycleStatus)).strategy == Strategy.aggressive:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the cycle never took set_objectives")
        return await super().prepare_canary(request)


async def test_set_objectives_during_a_cycle_is_for_the_next_cycle(time_skipping_env):
    env = time_skipping_env
    fakes = ChangedDuringPrepare(env.client, decisions=[canary_of("gpt-4o-mini")])
    async with fake_worker(env.client, fakes) as worker:
        fakes.workflow_id = f"{ids.cycle_id(SERVICE)}-{uuid.uuid4().hex[:6]}"
        handle = await env.client.start_workflow(
            OptimizationCycle.run,
            CycleInput(service=SERVICE, interval_s=1_000_000, time_scale=0.01),  # no timed cycle: two triggered
            id=fakes.workflow_id,
            task_queue=worker.task_queue,
        )
        await handle.signal(OptimizationCycle.trigger, {"reason": "first"})
        for _ in range(200):
            status = await handle.query(OptimizationCycle.status)
            if status.cycles_done == 1:
                break
            await env.sleep(timedelta(seconds=30))  # the rollout's bakes
        else:
            raise AssertionError(f"the first cycle never ended: {status}")
        await handle.signal(OptimizationCycle.trigger, {"reason": "second"})
        for _ in range(200):
            if len(fakes.decided) == 2:
                break
            await asyncio.sleep(0.02)
        await handle.terminate()

    balanced = PRESETS[Strategy.balanced]
    # The rollout started after the change ran the strategy and floor its cycle started with.
    assert [t.percent for t in fakes.traffic[:-1]] == [s.percent for s in balanced.stages if s.percent < 100]
    assert fakes.judged and {j.thresholds.error_rate_increase for j in fakes.judged} == {balanced.error_rate_increase}
    assert {j.thresholds.quality_decrease for j in fakes.judged} == {0.05}, "the floor of 0.95 it started with"
    first, second = fakes.decided
    assert first.strategy == Strategy.balanced and first.constraints.quality_floor_ratio == 0.95
    # The next cycle takes the change.
    assert second.strategy == Strategy.aggressive and second.constraints.quality_floor_ratio == 0.8
    assert status.strategy == Strategy.aggressive and status.constraints.quality_floor_ratio == 0.8


# ---- run once ----


async def test_a_one_shot_cycle_runs_at_once_and_returns_what_it_did(time_skipping_env):
    env = time_skipping_env
    fakes = FakeLoop(SERVICE)
    async with fake_worker(env.client, fakes) as worker:
        handle = await env.client.start_workflow(
            OptimizationCycle.run,
            CycleInput(service=SERVICE, interval_s=86_400, run_once=True),  # a day's interval: not waited for
            id=f"{ids.batch_cycle_id(SERVICE)}-{uuid.uuid4().hex[:6]}",
            task_queue=worker.task_queue,
        )
        record = await handle.result()
        events = [e async for e in handle.fetch_history_events()]
    assert isinstance(record, CycleRecord) and record.trigger == "schedule" and len(fakes.decided) == 1
    assert EventType.EVENT_TYPE_TIMER_STARTED not in {e.event_type for e in events}, "it waited for a timer"
    started = events[0].event_time.ToDatetime(tzinfo=UTC)
    assert abs((record.started_at - started).total_seconds()) < 5
