"""No input can wedge a workflow: every signal, query and update takes any number and shape of inputs, refuses
what is not one valid JSON object (naming the field and value) and records the refusal (docs/operations.md).

The property tests run a real OptimizationCycle and a real CanaryRollout on the harness's Temporal dev server, with
the activities scripted under their real names (no Postgres), send them arbitrary inputs as every signal, and check
that each keeps answering queries and obeys a following `emergency_stop`.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import threading
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from devstack.processes import venv_binary
from llm_optimizer.canary_judge import CanaryVerdict, JudgeThresholds
from llm_optimizer.decision import Action, Decision
from llm_optimizer.errors import PayloadRefused
from llm_optimizer.exploration import ArmStats, ExplorationPolicy
from llm_optimizer.payloads import (
    AuditRecord,
    ControlAck,
    CycleInput,
    CycleState,
    CycleStatus,
    EmergencyStopRequest,
    ExplorationArm,
    ExplorationInput,
    ExploreRound,
    ExploreRoundRequest,
    JudgeRequest,
    ObjectivesUpdate,
    Observation,
    ObserveRequest,
    PauseRequest,
    PromoteRequest,
    RollbackRequest,
    RolloutInput,
    RolloutOutcome,
    RolloutRecord,
    RolloutStatus,
    TrafficRequest,
    operator_request,
)
from llm_optimizer.strategies import RolloutStage
from workflows import CanaryRollout, Exploration, OptimizationCycle

SERVICE = "fuzzed"
# Hour-long bakes: a rollout waits at its stage while the inputs arrive.
STAGES = [
    RolloutStage(percent=5, bake_s=3600),
    RolloutStage(percent=50, bake_s=3600),
    RolloutStage(percent=100, bake_s=0),
]

# ---- the refusals themselves, without a server ----


@pytest.mark.parametrize(
    ("model", "inputs", "refusal"),
    [
        (PauseRequest, [{}, {}], "takes one JSON object, got 2 inputs"),
        (PauseRequest, ["maintenance"], "the input must be a JSON object, got a string 'maintenance'"),
        (PauseRequest, [42], "got a number 42"),
        (PauseRequest, [[{"reason": "x"}]], "got an array"),
        (PauseRequest, [{"bogus_field": 1}], "bogus_field = 1: Extra inputs are not permitted"),
        (ObjectivesUpdate, [{"constrains": {"quality_floor_ratio": 0.9}}], "constrains = {'quality_floor_ratio'"),
        (PromoteRequest, [{"to_end": "yes"}], "to_end = 'yes': Input should be a valid boolean"),
        (ObjectivesUpdate, [{"objectives": {"cost": math.inf}}], "objectives.cost = inf: not a finite number"),
        (ObjectivesUpdate, [{"constraints": {"p95_latency_max_ms": "900"}}], "p95_latency_max_ms = '900'"),
        (ObjectivesUpdate, [{"strategy": "reckless"}], "strategy = 'reckless'"),
        (PauseRequest, [{"reason": "a\x00b"}], "reason = 'a\\x00b': contains a NUL character"),
        (PauseRequest, [{"reason": 5}], "reason = 5: Input should be a valid string"),
        (RollbackRequest, [{"target_version": "../../x"}], "target_version = '../../x': String should match"),
    ],
)
def test_each_malformed_payload_is_refused_naming_the_field_and_value(model, inputs, refusal):
    with pytest.raises(PayloadRefused) as refused:
        operator_request(model, inputs)
    assert refusal in str(refused.value)


def test_no_input_and_null_are_the_empty_object_and_valid_payloads_pass():
    assert operator_request(EmergencyStopRequest, []) == EmergencyStopRequest()
    assert operator_request(EmergencyStopRequest, [None]) == EmergencyStopRequest()
    update = operator_request(ObjectivesUpdate, [{"strategy": "conservative", "objectives": {"cost": 1}}])
    assert update.strategy == "conservative" and update.objectives.cost == 1.0
    assert operator_request(RollbackRequest, [{"target_version": "v12"}]).target_version == "v12"


# ---- scripted activities (registered under the real names) ----


class Script:
    def __init__(self) -> None:
        self.audits: list[AuditRecord] = []

    @activity.defn(name="observe")
    async def observe(self, request: ObserveRequest) -> Observation:
        return Observation(service=request.service, active_version="v2", parent_version="v1", canary_version=None)

    @activity.defn(name="decide")
    async def decide(self, request: dict) -> Decision:
        return Decision(
            decision_id=str(uuid.uuid4()),
            service=SERVICE,
            made_at=datetime.now(UTC),
            action=Action.none,
            rationale="scripted: nothing to do",
        )

    @activity.defn(name="audit_batch")
    async def audit_batch(self, records: list[AuditRecord]) -> int:
        self.audits.extend(records)
        return len(records)

    @activity.defn(name="set_traffic")
    async def set_traffic(self, request: TrafficRequest) -> None:
        pass

    @activity.defn(name="version_exists")
    async def version_exists(self, service: str, version: str) -> bool:
        return version in ("v1", "v2")

    @activity.defn(name="record_rollout")
    async def record_rollout(self, record: RolloutRecord) -> None:
        pass

    @activity.defn(name="judge_stage")
    async def judge_stage(self, request: JudgeRequest) -> CanaryVerdict:
        return CanaryVerdict(verdict="healthy", reasons=[], checks=[], baseline_requests=1000, canary_requests=500)

    def all(self) -> list:
        return [
            self.observe,
            self.decide,
            self.audit_batch,
            self.set_traffic,
            self.version_exists,
            self.record_rollout,
            self.judge_stage,
        ]


# ---- arbitrary inputs ----

FIELDS = ["reason", "request_id", "target_version", "to_end", "objectives", "constraints", "strategy", "constrains"]
FIELDS += ["bogus_field", "cost", "quality_floor_ratio", "rollout_id", "to_version", "stage", "percent", "name"]
FIELDS += ["payload"]
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=10)  # JSON cannot carry lone surrogates
    | st.sampled_from(["v1", "v9", "../../x", "yes", "conservative", "pause"])
)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
# Raw JSON texts, as the `temporal` CLI sends them: 1e999 is Infinity once decoded.
raw_texts = st.sampled_from(
    ["1e999", '{"objectives": {"cost": 1e999}}', '{"reason": -1e999}', "NaN", '{"to_end": "yes"}', '"x"', "[]"]
)
inputs_strategy = st.lists(st.one_of(json_values.map(json.dumps), raw_texts), max_size=3)


def raw(texts: list[str]) -> list[RawValue]:
    return [RawValue(Payload(metadata={"encoding": b"json/plain"}, data=t.encode())) for t in texts]


def must_be_refused(texts: list[str], fields: set[str]) -> bool:
    """An independent (weaker) oracle: inputs that are certainly not one valid payload of these fields."""
    if len(texts) > 1:
        return True
    if not texts:
        return False
    value = json.loads(texts[0])
    if value is None:
        return False
    if not isinstance(value, dict) or set(value) - fields:
        return True
    return _non_finite(value)


def _non_finite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    return False


COMMON = {"reason", "request_id"}
CYCLE_FIELDS = {
    "pause": COMMON,
    "resume": COMMON,
    "trigger": COMMON,
    "emergency_stop": COMMON,
    "rollback": COMMON | {"target_version"},
    "set_objectives": COMMON | {"objectives", "constraints", "strategy"},
}
# The cycle's internal channels (from its rollouts and the threshold watcher): no fuzzed input is a valid one.
INTERNAL = ("rollout_progress", "threshold_breached")
UNKNOWN = ("no_such_signal",)  # reaches the cycle's dynamic handler too: refused by name, whatever its input
ROLLOUT_FIELDS = {
    "pause": COMMON,
    "resume": COMMON,
    "promote": COMMON | {"to_end"},
    "rollback": COMMON | {"target_version"},
    "emergency_stop": COMMON,
}
FUZZ = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)


class OnLoop:
    """Runs coroutines on the test's event loop from hypothesis' thread (the worker runs on that loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()

    def __call__(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


async def poll(check, what: str, timeout: float = 15):
    for _ in range(int(timeout / 0.05)):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def in_thread(fn) -> None:
    """Run hypothesis (synchronous) in a thread while this loop keeps serving the worker."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as err:  # re-raised on the test's side
            failure.append(err)

    thread = threading.Thread(target=target, name="hypothesis")
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.05)
    if failure:
        raise failure[0]


async def test_a_cycle_takes_any_input_as_any_signal_and_still_obeys_emergency_stop(temporal_client):
    script = Script()
    queue = f"arity-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client, task_queue=queue, workflows=[OptimizationCycle, CanaryRollout], activities=script.all()
    ):
        handle = await temporal_client.start_workflow(
            OptimizationCycle.run,
            CycleInput(service=SERVICE, interval_s=3600, fast_path_s=3600),
            id=f"optimization-cycle/{SERVICE}/{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )
        on_loop = OnLoop()

        def audited(name: str, count: int):
            async def check():
                rows = [r for r in script.audits if r.event_type == "signal"]
                return rows[count:] if len(rows) > count else None

            return check

        @FUZZ
        @given(name=st.sampled_from([*CYCLE_FIELDS, *INTERNAL, *UNKNOWN]), texts=inputs_strategy)
        def one_signal(name: str, texts: list[str]) -> None:
            before = on_loop(handle.query(OptimizationCycle.status))
            seen = len([r for r in script.audits if r.event_type == "signal"])
            on_loop(handle.signal(name, args=raw(texts)))
            if name in UNKNOWN:
                status = on_loop(handle.query(OptimizationCycle.status))
                assert status.refusals[-1] == f"{name} refused: no such signal", status.refusals
            elif name in INTERNAL:  # not audited; a malformed one is refused in `status`
                status = on_loop(handle.query(OptimizationCycle.status))
                if len(texts) != 1 or not isinstance(json.loads(texts[0]), dict):
                    assert status.refusals[-1].startswith(f"{name} refused: "), (texts, status.refusals)
                    if len(before.refusals) < 20:  # the status keeps the last 20
                        assert len(status.refusals) == len(before.refusals) + 1
            else:
                [row] = on_loop(poll(audited(name, seen), f"the audit of {name} {texts}"))
                assert row.triggered_by == name
                if must_be_refused(texts, CYCLE_FIELDS[name]):
                    assert row.details["outcome"] == "refused", (name, texts, row.details)
                    assert row.details["refusal"].startswith(f"{name} refused: ")
                if row.details["outcome"] == "refused":
                    status = on_loop(handle.query(OptimizationCycle.status))
                    assert row.details["refusal"] in status.refusals
            # Still answering, and its history too.
            assert isinstance(on_loop(handle.query(OptimizationCycle.status)), CycleStatus)
            on_loop(handle.query(OptimizationCycle.history))

        await in_thread(one_signal)

        await handle.signal(OptimizationCycle.emergency_stop, {"reason": "fuzz over"})
        status = await poll(
            lambda: _stopped(handle, "fuzz over"), "the cycle to obey emergency_stop after the fuzzing", timeout=30
        )
        # Stopped (or still paused by a fuzzed pause, which the stop now outlasts): no cycle runs until `resume`.
        assert status.state in (CycleState.STOPPED, CycleState.PAUSED) and status.rollout is None
        await handle.terminate()


async def _stopped(handle: WorkflowHandle, reason: str) -> CycleStatus | None:
    status = await handle.query(OptimizationCycle.status)
    if status.stopped_reason == reason and status.state in (CycleState.STOPPED, CycleState.PAUSED):
        return status
    return None


async def test_the_control_update_refuses_any_malformed_command_with_a_clean_error(temporal_client):
    script = Script()
    queue = f"arity-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client, task_queue=queue, workflows=[OptimizationCycle, CanaryRollout], activities=script.all()
    ):
        handle = await temporal_client.start_workflow(
            OptimizationCycle.run,
            CycleInput(service=SERVICE, interval_s=3600, fast_path_s=3600),
            id=f"optimization-cycle/{SERVICE}/{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )
        on_loop = OnLoop()
        commands = st.fixed_dictionaries(
            {"name": st.sampled_from([*CYCLE_FIELDS, "explode"]), "payload": json_values}
        ).map(json.dumps)

        @FUZZ
        @given(texts=st.lists(st.one_of(commands, json_values.map(json.dumps), raw_texts), max_size=3))
        def one_update(texts: list[str]) -> None:
            try:
                ack = on_loop(handle.execute_update("control", args=raw(texts), result_type=ControlAck))
            except WorkflowUpdateFailedError as err:
                assert isinstance(err.cause, ApplicationError) and err.cause.type == "ControlRefused", repr(err.cause)
                message = err.cause.message
                assert " refused: " in message and "Traceback" not in message and 'File "' not in message
                assert err.cause.cause is None
            else:
                assert len(texts) == 1 and ack.outcome in ("accepted", "duplicate")
            assert isinstance(on_loop(handle.query(OptimizationCycle.status)), CycleStatus)

        await in_thread(one_update)

        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("control", {"name": "pause", "payload": {"bogus_field": 1}})
        assert refused.value.cause.message == "pause refused: bogus_field = 1: Extra inputs are not permitted"
        ack = await handle.execute_update(
            "control", {"name": "emergency_stop", "payload": {"reason": "fuzz over"}}, result_type=ControlAck
        )
        assert ack.outcome == "accepted" and ack.status.stopped_reason == "fuzz over"
        await handle.terminate()


async def test_a_rollout_takes_any_input_as_any_signal_and_still_obeys_emergency_stop(temporal_client):
    script = Script()
    queue = f"arity-{uuid.uuid4().hex[:8]}"
    started: list[WorkflowHandle] = []

    async def running() -> WorkflowHandle:
        """The rollout under test, baking at a stage; a new one when a valid fuzzed signal (promote, rollback, stop)
        is finishing it (its share is then 0% or 100%), or when its refusals (the last 20) are nearly full."""
        if started:
            status = await started[-1].query(CanaryRollout.status)
            if status.finished is None and 0 < status.percent < 100 and len(status.refusals) < 15:
                return started[-1]
            if status.finished is None and 0 < status.percent < 100:
                await started[-1].terminate()
            else:
                await asyncio.wait_for(started[-1].result(), 30)
        handle = await temporal_client.start_workflow(
            CanaryRollout.run,
            RolloutInput(
                rollout_id=f"canary/{SERVICE}/v2@{uuid.uuid4().hex[:6]}",
                service=SERVICE,
                from_version="v1",
                to_version="v2",
                stages=STAGES,
                thresholds=JudgeThresholds(),
            ),
            id=f"canary/{SERVICE}/v2/{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )
        started.append(handle)
        await poll(lambda: _baking(handle), "the new rollout to bake at 5%")
        return handle

    async with Worker(temporal_client, task_queue=queue, workflows=[CanaryRollout], activities=script.all()):
        on_loop = OnLoop()

        @FUZZ
        @given(name=st.sampled_from(list(ROLLOUT_FIELDS)), texts=inputs_strategy)
        def one_signal(name: str, texts: list[str]) -> None:
            handle = on_loop(running())
            before = on_loop(handle.query(CanaryRollout.status))
            on_loop(handle.signal(name, args=raw(texts)))
            after = on_loop(handle.query(CanaryRollout.status))
            assert isinstance(after, RolloutStatus)
            if must_be_refused(texts, ROLLOUT_FIELDS[name]):
                assert len(after.refusals) == len(before.refusals) + 1, (name, texts, after.refusals)
                assert after.refusals[-1].startswith(f"{name} refused: ")
                assert (after.paused, after.stage) == (before.paused, before.stage), "a refused signal changed nothing"

        await in_thread(one_signal)

        handle = await running()
        await handle.signal(CanaryRollout.emergency_stop, {"reason": "fuzz over"})
        outcome: RolloutOutcome = await asyncio.wait_for(handle.result(), 30)
        assert outcome.result == "rolled_back" and outcome.reason == "emergency stop: fuzz over"
        for earlier in started[:-1]:
            assert isinstance(await earlier.query(CanaryRollout.status), RolloutStatus)


async def _baking(handle: WorkflowHandle) -> bool:
    status = await handle.query(CanaryRollout.status)
    return status.percent == 5 and status.time_left_s is not None


def cli(address: str, *args: str) -> None:
    """The real `temporal` CLI, as an operator runs it."""
    result = subprocess.run(
        [str(venv_binary("temporal")), *args, "--address", address], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


async def test_the_probes_of_issue_19_are_refused_and_shown(stack, temporal_client):
    """The exact inputs that used to stall workflows for good: two inputs to a cycle's pause, none to a rollout's."""
    script = Script()
    queue = f"arity-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client, task_queue=queue, workflows=[OptimizationCycle, CanaryRollout], activities=script.all()
    ):
        cycle = await temporal_client.start_workflow(
            OptimizationCycle.run,
            CycleInput(service=SERVICE, interval_s=3600, fast_path_s=3600),
            id=f"optimization-cycle/{SERVICE}/{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )
        signal = ("workflow", "signal", "--workflow-id", cycle.id)
        await asyncio.to_thread(
            cli, stack.temporal_address, *signal, "--name", "pause", "--input", "{}", "--input", "{}"
        )
        await cycle.signal("pause", args=raw(['{"bogus_field": 1}']))
        cost = '{"objectives": {"cost": 1e999}}'
        await asyncio.to_thread(cli, stack.temporal_address, *signal, "--name", "set_objectives", "--input", cost)
        await cycle.signal("set_objectives", args=raw(['{"constrains": {"quality_floor_ratio": 0.9}}']))
        await cycle.signal("trigger", args=raw(['"now"']))
        status = await poll(lambda: _with_refusals(cycle, 5), "five refusals in the cycle's status", timeout=15)
        assert status.refusals == [
            "pause refused: takes one JSON object, got 2 inputs: [{}, {}]",
            "pause refused: bogus_field = 1: Extra inputs are not permitted",
            "set_objectives refused: objectives.cost = inf: not a finite number",
            "set_objectives refused: constrains = {'quality_floor_ratio': 0.9}: Extra inputs are not permitted",
            "trigger refused: the input must be a JSON object, got a string 'now'",
        ]
        assert status.paused_reason is None and status.objectives.cost == 0.6 and status.cycles_done == 0

        rollout = await temporal_client.start_workflow(
            CanaryRollout.run,
            RolloutInput(
                rollout_id=f"canary/{SERVICE}/v2@{uuid.uuid4().hex[:6]}",
                service=SERVICE,
                from_version="v1",
                to_version="v2",
                stages=[RolloutStage(percent=5, bake_s=3600), RolloutStage(percent=100, bake_s=0)],
                thresholds=JudgeThresholds(),
            ),
            id=f"canary/{SERVICE}/v2/{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )
        await poll(lambda: _baking(rollout), "the rollout to bake at 5%")
        await rollout.signal("promote", args=raw(['{"to_end": "yes"}']))
        await rollout.signal("pause")  # no input at all: the empty object, a valid pause
        paused = await rollout.query(CanaryRollout.status)
        assert paused.paused and paused.percent == 5 and paused.finished is None
        assert paused.refusals == ["promote refused: to_end = 'yes': Input should be a valid boolean"]
        await rollout.signal("emergency_stop", {"reason": "probe over"})
        outcome = await asyncio.wait_for(rollout.result(), 30)
        assert outcome.result == "rolled_back" and outcome.reason == "emergency stop: probe over"
        await cycle.terminate()


async def _with_refusals(handle: WorkflowHandle, count: int) -> CycleStatus | None:
    status = await handle.query(OptimizationCycle.status)
    return status if len(status.refusals) >= count else None


@activity.defn(name="explore_round")
async def nothing_settled(request: ExploreRoundRequest) -> ExploreRound:
    return ExploreRound(arms=request.previous, live=ArmStats(key="live", version=request.live_version))


async def test_an_exploration_refuses_a_malformed_stop_and_obeys_a_valid_one(temporal_client):
    script = Script()
    queue = f"arity-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[Exploration],
        activities=[script.set_traffic, nothing_settled],
    ):
        handle = await temporal_client.start_workflow(
            Exploration.run,
            ExplorationInput(
                exploration_id=f"explore/{SERVICE}",
                service=SERVICE,
                live_version="v1",
                arms=[ExplorationArm(key="cheaper", version="v2")],
                traffic_percent=10,
                round_s=3600,
                max_duration_s=86400,
                policy=ExplorationPolicy(floor_ratio=0.95),
            ),
            id=f"explore/{SERVICE}/{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )
        await handle.signal("stop", args=raw(["{}", "{}"]))
        await handle.signal("stop", args=raw(['"now"']))
        await handle.signal("emergency_stop", args=raw(['{"reason": 1e999}']))
        status = await handle.query(Exploration.status)
        assert status.stop_reason is None and status.refusals == [
            "stop refused: takes one JSON object, got 2 inputs: [{}, {}]",
            "stop refused: the input must be a JSON object, got a string 'now'",
            "emergency_stop refused: reason = inf: not a finite number",
        ]
        await handle.signal("stop", {"reason": "enough"})
        outcome = await asyncio.wait_for(handle.result(), 30)
    assert outcome.reason == "stopped: enough" and [a.fate for a in outcome.arms] == ["exploring"]
