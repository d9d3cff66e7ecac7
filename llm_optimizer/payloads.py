"""Payloads of the workflows: the inputs, signals, queries and results of OptimizationCycle, CanaryRollout,
Exploration, StorageMaintenance, QualityEvaluation and the ingestion.

They carry ids and summaries, never event batches: the activities read events from Postgres themselves.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from itertools import pairwise
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llm_optimizer.canary_judge import CanaryVerdict, JudgeThresholds
from llm_optimizer.candidates import CandidateConfig
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.decision import Constraints, Decision, Memory, Objectives, Profile
from llm_optimizer.errors import PayloadRefused
from llm_optimizer.exploration import ArmResult, ArmStats, ExplorationPolicy, QualityEstimate
from llm_optimizer.settings import CanaryThresholds, ExplorationSettings
from llm_optimizer.strategies import RolloutKind, RolloutStage, Strategy


class CycleState(StrEnum):
    IDLE = "IDLE"
    OBSERVING = "OBSERVING"
    ANALYZING = "ANALYZING"
    DECIDING = "DECIDING"
    VALIDATING = "VALIDATING"
    DEPLOYING = "DEPLOYING"
    MONITORING = "MONITORING"
    ROLLING_BACK = "ROLLING_BACK"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"


# ---- signals (each may carry a request_id; a repeated request_id is ignored) ----

# A config version as the registry names it (v1, v2, ...; imports may name their own): no path separators, spaces
# or control characters, so that a typo or a path such as "../../x" is refused before anything looks it up.
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$"


class SignalBase(BaseModel):
    # Strict: an unknown field (a typo such as "constrains"), a string where a bool belongs ("yes") or a number where
    # a string belongs is refused, never guessed at.
    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str | None = Field(default=None, min_length=1, max_length=200)
    reason: str = Field(default="", max_length=1000)


class PauseRequest(SignalBase):
    pass


class ResumeRequest(SignalBase):
    pass


class TriggerRequest(SignalBase):
    pass


class EmergencyStopRequest(SignalBase):
    pass


class RollbackRequest(SignalBase):
    # None: the parent of the live version. The cycle also checks that the version exists (docs/operations.md).
    target_version: str | None = Field(default=None, pattern=VERSION_PATTERN)


class ObjectivesUpdate(SignalBase):
    objectives: Objectives | None = None
    constraints: Constraints | None = None
    strategy: Strategy | None = None


class PromoteRequest(SignalBase):
    to_end: bool = False


class StopRequest(SignalBase):
    """Exploration's `stop` and `emergency_stop`."""


Request = TypeVar("Request", bound=SignalBase)


def operator_request(model: type[Request], inputs: Sequence[Any]) -> Request:
    """The request in a signal's inputs (decoded JSON values, any number of them), or PayloadRefused saying why.

    No input or a JSON null is the empty object; anything but one JSON object is refused, and so are non-finite
    numbers and NUL characters anywhere (nothing downstream can store them), then whatever `model` refuses.
    """
    if len(inputs) > 1:
        raise PayloadRefused(f"takes one JSON object, got {len(inputs)} inputs: {shown(list(inputs))}")
    payload = inputs[0] if inputs else None
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise PayloadRefused(f"the input must be a JSON object, got {_kind(payload)} {shown(payload)}")
    problem = unstorable(payload)
    if problem is not None:
        raise PayloadRefused(problem)
    try:
        # Validated as JSON, strictly: enums by value, no coercion of strings to numbers or bools.
        return model.model_validate_json(json.dumps(payload), strict=True)
    except ValidationError as err:
        raise PayloadRefused(describe_refusal(err)) from None
    except (TypeError, ValueError) as err:  # not JSON at all (a caller in Python passed an object)
        raise PayloadRefused(f"the input is not JSON: {err}") from None


def unstorable(value: Any, path: str = "") -> str | None:
    """Why `value` (decoded JSON) cannot be kept and stored, naming the field and value; None if it can."""
    where = path or "the input"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} = {value!r}: not a finite number"
    if isinstance(value, str) and "\x00" in value:
        return f"{where} = {shown(value)}: contains a NUL character"
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return f"{where}: the field name {shown(key)} contains a NUL character"
            problem = unstorable(item, f"{path}.{key}" if path else str(key))
            if problem is not None:
                return problem
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = unstorable(item, f"{path}[{index}]" if path else f"[{index}]")
            if problem is not None:
                return problem
    return None


def describe_refusal(err: ValidationError) -> str:
    """Pydantic's errors as `field = value: why`, one per problem."""
    parts = []
    for e in err.errors(include_url=False):
        field = ".".join(map(str, e["loc"])) or "the input"
        parts.append(f"{field}: {e['msg']}" if e["type"] == "missing" else f"{field} = {shown(e['input'])}: {e['msg']}")
    return "; ".join(parts)


def shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


# ---- OptimizationCycle ----


class ControlCommand(BaseModel):
    """Input of the cycle's `control` update: a control's name and the JSON payload its signal takes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(max_length=100)
    payload: dict[str, Any] | None = None


class CycleRecord(BaseModel):
    """One pass of the loop, as `history` shows it."""

    cycle_id: str
    started_at: datetime
    finished_at: datetime | None = None
    trigger: str
    action: str = "none"
    rationale: str = ""
    rollout_id: str | None = None
    outcome: str | None = None


class RolloutLink(BaseModel):
    """A rollout or exploration the cycle started, by workflow id and run: `status` lists the last ones, across
    continue-as-new, so an operator goes from the cycle to each of its children."""

    kind: Literal["canary", "exploration"]
    workflow_id: str
    run_id: str | None = None
    rollout_id: str
    target: str  # the version on trial, or the arms of an exploration
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str | None = None


class RequestLog(BaseModel):
    """What a workflow's handlers remember of the requests they took (workflows/handlers.py): the request ids seen,
    so that a repeat is a duplicate, and the refusals with why, newest last."""

    seen_request_ids: list[str] = Field(default_factory=list)
    refusals: list[str] = Field(default_factory=list)


class CycleCarried(RequestLog):
    """Everything a cycle keeps across continue-as-new, in one object: the cycle holds it as one attribute and hands
    it whole to its next run (with the settings operators last set), so no field can be left behind."""

    memory: Memory = Memory()
    history: list[CycleRecord] = Field(default_factory=list)
    paused_reason: str | None = None
    stopped_reason: str | None = None
    cycles_done: int = 0
    rollouts: list[RolloutLink] = Field(default_factory=list)
    alerts: list[str] = Field(default_factory=list)  # the last 20 that need an operator (a rollback not applied)


class CycleInput(BaseModel):
    """A cycle's settings (changed by `set_objectives` for the cycles after it) and what it carries from its
    earlier runs."""

    service: str
    strategy: Strategy = Strategy.balanced
    objectives: Objectives = Objectives()
    constraints: Constraints = Constraints()
    interval_s: float = Field(default=900, gt=0)
    fast_path_s: float = Field(default=60, gt=0)
    time_scale: float = Field(default=1.0, gt=0, le=1)
    analysis_window_s: float = Field(default=3600, gt=0)
    candidate_models: list[str] = Field(default_factory=list, description="models worth trying (any names)")
    # Whole configs worth trying (another prompt template, other parameters, another model): judged like models.
    candidate_configs: list[CandidateConfig] = Field(default_factory=list)
    canary: CanaryThresholds = CanaryThresholds()
    exploration: ExplorationSettings = ExplorationSettings()
    # A Schedule's one-shot cycle: one pass at once, then return (the cycle's result says what it did).
    run_once: bool = False
    carried: CycleCarried = Field(default_factory=CycleCarried)

    @model_validator(mode="before")
    @classmethod
    def _fold_flat_carried(cls, data: Any) -> Any:
        """Inputs written before CycleCarried (recorded histories, a continue-as-new of an older worker) hold its
        fields at the top level: folded into `carried`. A field in both places is ambiguous, and refused."""
        if not isinstance(data, dict):
            return data
        flat = [name for name in CycleCarried.model_fields if name in data]
        if not flat:
            return data
        data = dict(data)
        carried = data.get("carried")
        if isinstance(carried, BaseModel):
            carried = carried.model_dump()
        carried = dict(carried or {})
        both = [name for name in flat if name in carried]
        if both:
            raise ValueError(f"{', '.join(both)}: given both at the top level and in `carried`; give them in `carried`")
        carried.update({name: data.pop(name) for name in flat})
        data["carried"] = carried
        return data


class RolloutProgress(BaseModel):
    rollout_id: str
    to_version: str
    stage: int
    percent: float


class CycleStatus(BaseModel):
    service: str
    state: CycleState
    active_version: str | None
    rollout: RolloutProgress | None
    last_decision: Decision | None
    next_run_at: datetime | None
    paused_reason: str | None
    stopped_reason: str | None
    strategy: Strategy
    objectives: Objectives
    constraints: Constraints
    refusals: list[str]
    cycles_done: int
    # What needs an operator: a rollback that could not be applied (docs/operations.md). Kept for this run only.
    alerts: list[str] = Field(default_factory=list)
    # The last rollouts and explorations, newest last, each with its workflow id (docs/operations.md).
    rollouts: list[RolloutLink] = Field(default_factory=list)


class ControlAck(BaseModel):
    """What the cycle answered to a control: accepted or duplicate (request_id seen). The `control` update answers a
    refusal with a ControlRefused error instead (docs/operations.md); `refused` stays readable for older answers."""

    command: str
    outcome: Literal["accepted", "duplicate", "refused"]
    refusal: str | None = None
    status: CycleStatus


# ---- activities of the cycle ----


class ObserveRequest(BaseModel):
    service: str
    window_start: datetime
    window_end: datetime
    # The observation waits at most this long for the window's events to land (docs/architecture.md "Complete
    # windows"); past it the observation says the data is late.
    data_wait_s: float = Field(default=30, ge=0)


class Observation(BaseModel):
    service: str
    active_version: str | None
    parent_version: str | None
    canary_version: str | None
    active_model: str | None = None  # the live version's model, for what the Temporal UI shows
    data_late: str | None = None  # why the window is not complete yet (then the cycle does not decide on it)


class ThresholdRequest(BaseModel):
    service: str
    window_start: datetime
    window_end: datetime
    constraints: Constraints


class ThresholdCheck(BaseModel):
    """Result of the fast path: does the live config break a hard limit, or did Sentinel alert?"""

    violated: bool
    reasons: list[str] = Field(default_factory=list)


class ThresholdWatch(BaseModel):
    """What the threshold watcher needs of a cycle, kept in the cycle's memo under `thresholds`."""

    service: str
    constraints: Constraints
    window_s: float = Field(gt=0)  # the fast path's window (and how often it is checked), time scale applied


class ThresholdBreach(BaseModel):
    """The watcher's signal to a cycle whose live config broke a hard limit or got a Sentinel alert."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reasons: list[str] = Field(default_factory=list, max_length=50)  # hard limits `version` broke in the window
    version: str | None = None  # the live version the limits were checked on: a breach of an older one is stale
    alerts: list[str] = Field(default_factory=list, max_length=50)  # Sentinel's alerts, claimed for this cycle
    request_id: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _something(self) -> ThresholdBreach:
        if not self.reasons and not self.alerts:
            raise ValueError("a breach names at least one broken limit (reasons) or Sentinel alert (alerts)")
        return self


class WatchInput(BaseModel):
    """Input of `ThresholdWatcher`: one per task queue, watching every running cycle on it."""

    task_queue: str
    list_every_s: float = Field(default=10, gt=0)  # how often the running cycles are listed again
    run_s: float = Field(default=3600, gt=0)  # one watch activity's length; the workflow starts the next
    runs_done: int = 0
    breaches: int = 0


class WatchReport(BaseModel):
    """What one watch activity did: checks made, breaches signalled (service and reasons), repeats held back,
    cycles watched."""

    checks: int = 0
    cycles: list[str] = Field(default_factory=list)
    breaches: list[str] = Field(default_factory=list)
    repeats_held: int = 0  # breaches not signalled again: the same limits of the same version, signalled lately


class DecideRequest(BaseModel):
    service: str
    cycle_id: str
    now: datetime
    window_start: datetime
    strategy: Strategy
    objectives: Objectives
    constraints: Constraints
    memory: Memory
    findings: list[str] = Field(default_factory=list, description="fast-path violations that triggered the cycle")
    candidate_models: list[str] = Field(default_factory=list)
    candidate_configs: list[CandidateConfig] = Field(default_factory=list)
    exploration: ExplorationSettings = ExplorationSettings()
    time_scale: float = 1.0


class PrepareCanaryRequest(BaseModel):
    service: str
    decision_id: str
    base_version: str
    model: str
    provider: str
    changes: dict[str, Any] = Field(default_factory=dict)  # a config candidate's prompt/params changes
    known_version: str | None = None  # the version its exploration already registered and measured


class PreparedCanary(BaseModel):
    version: str
    spec: ConfigSpec


class AuditRecord(BaseModel):
    """A row of optimization_events: a state transition, a signal, a trigger."""

    id: str
    service: str
    at: datetime
    event_type: str
    triggered_by: str
    details: dict = Field(default_factory=dict)


# ---- CanaryRollout ----


class RolloutInput(BaseModel):
    rollout_id: str
    service: str
    from_version: str
    to_version: str
    # canary: the last stage (100%) promotes. blue_green: usually a small health-check stage, then a switch of all
    # traffic that keeps the old version for an instant rollback and is judged against the old version's
    # traffic just before the switch.
    strategy: RolloutKind = "canary"
    stages: list[RolloutStage]
    thresholds: JudgeThresholds
    max_extensions: int = 2
    decision_id: str | None = None
    from_model: str | None = None  # the versions' models, for what the Temporal UI shows
    to_model: str | None = None
    # Measurements of the new version before this rollout (its exploration): the last stage's promotion gate pools
    # the quality of every request since then.
    evidence_since: datetime | None = None
    # Late data (docs/architecture.md "Complete windows"): a judge waits this long for its window to land; a stage
    # whose data stays late is extended (not counted against max_extensions), alerts after late_alert_s and is
    # rolled back, the safe side, after max_late_s.
    data_wait_s: float = Field(default=60, ge=0)
    late_alert_s: float = Field(default=300, ge=0)
    max_late_s: float = Field(default=3600, gt=0)


class StageVerdict(BaseModel):
    stage: int
    attempt: int
    percent: float
    verdict: CanaryVerdict


class RolloutOutcome(BaseModel):
    rollout_id: str
    service: str
    result: Literal["promoted", "rolled_back"]
    reason: str
    final_version: str
    verdicts: list[StageVerdict]


class RolloutStatus(BaseModel):
    rollout_id: str
    stage: int
    percent: float
    paused: bool
    time_left_s: float | None
    verdicts: list[StageVerdict]
    finished: RolloutOutcome | None
    refusals: list[str] = Field(default_factory=list)  # operator signals that were not applied, and why
    state: str | None = None  # the RolloutState search attribute: baking, judging, data_late, paused, ...
    data_late_s: float = 0.0  # how long the current stage has waited for late data
    alerts: list[str] = Field(default_factory=list)  # what needs an operator (data late for long)


class TrafficRequest(BaseModel):
    rollout_id: str
    service: str
    active_version: str
    canary_version: str | None
    percent: float
    explore: dict[str, float] = Field(default_factory=dict)  # exploration arms: version -> percent
    # The rollout's final record, written in the same transaction as the split: the registry and the `rollouts`
    # row never disagree (docs/architecture.md "Timeouts and dead workers").
    record: RolloutRecord | None = None


# ---- Exploration ----


class ExplorationArm(BaseModel):
    key: str  # the candidate's name
    version: str  # its registered config version
    since: datetime | None = None  # measured since then (an earlier, deferred exploration): its evidence is pooled


class ExplorationInput(BaseModel):
    exploration_id: str
    service: str
    live_version: str
    arms: list[ExplorationArm]
    traffic_percent: float = Field(gt=0, le=50)
    round_s: float = Field(gt=0)
    max_duration_s: float = Field(gt=0)
    policy: ExplorationPolicy
    reference_version: str | None = None  # the reference config (the floor's base) when it is still known
    reference: QualityEstimate | None = None  # its pooled quality, used when it is no longer live
    decision_id: str | None = None


class ExploreRoundRequest(BaseModel):
    exploration_id: str
    service: str
    live_version: str
    arms: list[ExplorationArm]
    since: datetime
    until: datetime
    policy: ExplorationPolicy
    reference_version: str | None = None
    reference: QualityEstimate | None = None
    previous: list[ArmResult] = Field(default_factory=list)
    final: bool = False


class ExploreRound(BaseModel):
    arms: list[ArmResult]
    live: ArmStats
    reference: QualityEstimate | None = None  # what the floor was tested against


class ExplorationOutcome(BaseModel):
    exploration_id: str
    service: str
    live_version: str
    arms: list[ArmResult]
    live: ArmStats | None = None  # the live config over the same period
    started_at: datetime
    reason: str


class ExplorationStatus(BaseModel):
    exploration_id: str
    rounds: int
    shares: dict[str, float]
    arms: list[ArmResult]
    stop_reason: str | None
    refusals: list[str]


class PrepareArmsRequest(BaseModel):
    service: str
    decision_id: str
    base_version: str
    arms: list[Profile]


class JudgeRequest(BaseModel):
    rollout_id: str
    service: str
    baseline_version: str
    canary_version: str
    window_start: datetime
    window_end: datetime
    baseline_window: tuple[datetime, datetime] | None = None  # default: the same window as the canary
    stage: int
    attempt: int
    percent: float
    thresholds: JudgeThresholds
    data_wait_s: float = Field(default=0, ge=0)  # how long to wait for the window's events to land
    # The sample sizes the previous judgement of this stage saw: the same again means no event landed meanwhile.
    previous_requests: tuple[int, int] | None = None


class RolloutRecord(BaseModel):
    rollout_id: str
    service: str
    from_version: str
    to_version: str
    strategy: str
    state: str
    reason: str | None = None
    finished: bool = False


TrafficRequest.model_rebuild()


# ---- StorageMaintenance ----


class MaintenanceRequest(BaseModel):
    now: datetime
    lateness_s: float = Field(default=60, ge=0, description="events may arrive this late; newer buckets wait")
    retention_days: float = Field(default=7, gt=0)
    # Set: one long-running workflow that runs every `every_s` (its own timer, continue-as-new), instead of one
    # workflow per run: the workflow list stays readable (docs/operations.md).
    every_s: float | None = Field(default=None, gt=0)
    runs_done: int = 0


class MaintenanceReport(BaseModel):
    rollup_rows: dict[str, int]
    expired_events: int


# ---- QualityEvaluation ----


class EvaluationRound(BaseModel):
    """Input of `QualityEvaluation`: the services to score (each must be in `evaluation.services`)."""

    services: list[str]
    lookback_s: float = Field(default=3600, gt=0, description="events older than this are left alone")
    # Set: one long-running workflow that runs a round every `every_s` (see MaintenanceRequest.every_s).
    every_s: float | None = Field(default=None, gt=0)
    rounds_done: int = 0


class QualityRequest(BaseModel):
    service: str
    now: datetime
    lookback_s: float
    time_budget_s: float = 60.0  # an LLM judge is slow: what is left waits for the next round


class QualityReport(BaseModel):
    service: str
    evaluator: str
    evaluated: int = 0  # scored, and the score written into the event
    skipped: int = 0  # the evaluator could not score them (recorded with the reason, not retried)
    unavailable: int = 0  # left for a later round: the evaluator's service was down or the time budget ran out
    cost_usd: float = 0.0
    note: str = ""


# ---- Ingestion ----


class IngestCounts(BaseModel):
    """Running totals of an ingestion, reported by the activity and shown by the workflow's query."""

    accepted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    anomalies: int = 0
    batches: int = 0

    def plus(self, other: IngestCounts) -> IngestCounts:
        return IngestCounts(**{name: getattr(self, name) + getattr(other, name) for name in IngestCounts.model_fields})


class ConsumeReport(IngestCounts):
    """What one `consume_topic` run reports: its counts, and how far behind it left its partitions."""

    lag: int | None = None  # messages between the last commit and the partitions' ends, summed; None: not known


class ConsumeRequest(BaseModel):
    """Input of the `consume_topic` activity: consume for `run_s` seconds, then report."""

    topic: str
    group_id: str
    run_s: int = Field(gt=0)
    # Which of the workflow's consumers this is: each has a Kafka consumer of its own in the group, on any worker.
    consumer: int = Field(default=0, ge=0)


# The Ingestion workflow calls its consumer stuck after this many failed runs in a row, or when the lag after its
# runs has grown this many times in a row.
STUCK_AFTER_FAILURES = 3
STUCK_AFTER_LAG_RISES = 3


class IngestionHealth(BaseModel):
    """How the consumer of a topic has fared lately; carried across continue-as-new."""

    consecutive_failures: int = 0  # failed runs of `consume_topic` since the last one that succeeded
    last_error: str | None = None  # of the last failed run, kept after a success (the time says when)
    last_error_at: datetime | None = None
    last_success_at: datetime | None = None
    lags: list[int] = Field(default_factory=list)  # after the last few successful runs, oldest first

    @property
    def lag_rising(self) -> bool:
        recent = self.lags[-(STUCK_AFTER_LAG_RISES + 1) :]
        return len(recent) > STUCK_AFTER_LAG_RISES and all(a < b for a, b in pairwise(recent))

    @property
    def stuck(self) -> bool:
        return self.consecutive_failures >= STUCK_AFTER_FAILURES or self.lag_rising


class IngestionInput(BaseModel):
    """Input of the `Ingestion` workflow (one per topic); `totals` carries counts across continue-as-new."""

    topic: str
    group_id: str
    run_s: int = Field(default=60, gt=0)
    heartbeat_timeout_s: int = Field(default=10, gt=0)
    # `consume_topic` activities run at once, one group member each (kafka.consumers); 1 before this field existed.
    consumers: int = Field(default=1, gt=0)
    totals: IngestCounts = IngestCounts()
    health: IngestionHealth = IngestionHealth()


class IngestionStatus(BaseModel):
    topic: str
    group_id: str
    totals: IngestCounts
    runs_in_this_history: int
    last_error: str | None = None
    # Stuck is visible: `stuck` when the last STUCK_AFTER_FAILURES runs failed or the lag rose after each of the
    # last STUCK_AFTER_LAG_RISES runs; `last_error` says why (docs/troubleshooting.md).
    stuck: bool = False
    consecutive_failures: int = 0
    last_error_at: datetime | None = None
    last_success_at: datetime | None = None
    lag: int | None = None
    lag_rising: bool = False
