"""Payloads of the control loop: the inputs, signals, queries and results of OptimizationCycle and CanaryRollout.

They carry ids and summaries, never event batches: the activities read events from Postgres themselves.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from llm_optimizer.configs import ConfigSpec
from llm_optimizer.decision import Constraints, Decision, Memory, Objectives
from llm_optimizer.experiments import ABPolicy, ABResult
from llm_optimizer.judge import CanaryVerdict, JudgeThresholds
from llm_optimizer.settings import CanaryThresholds, Strategy
from llm_optimizer.strategies import RolloutStage


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


class SignalBase(BaseModel):
    request_id: str | None = None
    reason: str = ""


class PauseRequest(SignalBase):
    pass


class ResumeRequest(SignalBase):
    pass


class TriggerRequest(SignalBase):
    pass


class EmergencyStopRequest(SignalBase):
    pass


class RollbackRequest(SignalBase):
    target_version: str | None = None  # None: the parent of the live version


class ObjectivesUpdate(SignalBase):
    objectives: Objectives | None = None
    constraints: Constraints | None = None
    strategy: Strategy | None = None


class PromoteRequest(SignalBase):
    to_end: bool = False


# ---- OptimizationCycle ----


class ControlCommand(BaseModel):
    """Input of the cycle's `control` update: a control's name and the JSON payload its signal takes."""

    name: str
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


class CycleInput(BaseModel):
    service: str
    strategy: Strategy = Strategy.balanced
    objectives: Objectives = Objectives()
    constraints: Constraints = Constraints()
    interval_s: float = Field(default=900, gt=0)
    fast_path_s: float = Field(default=60, gt=0)
    time_scale: float = Field(default=1.0, gt=0, le=1)
    analysis_window_s: float = Field(default=3600, gt=0)
    candidate_models: list[str] = Field(default_factory=list, description="models worth trying, from the catalog")
    canary: CanaryThresholds = CanaryThresholds()
    run_once: bool = False  # a Schedule's one-shot cycle: one pass, then return
    # Carried across continue-as-new:
    memory: Memory = Memory()
    history: list[CycleRecord] = Field(default_factory=list)
    paused_reason: str | None = None
    stopped_reason: str | None = None
    seen_request_ids: list[str] = Field(default_factory=list)
    refusals: list[str] = Field(default_factory=list)
    cycles_done: int = 0


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


class ControlAck(BaseModel):
    """What the cycle answered to a control: accepted, duplicate (request_id seen) or refused (with why)."""

    command: str
    outcome: Literal["accepted", "duplicate", "refused"]
    refusal: str | None = None
    status: CycleStatus


# ---- activities of the cycle ----


class ObserveRequest(BaseModel):
    service: str
    window_start: datetime
    window_end: datetime


class Observation(BaseModel):
    service: str
    active_version: str | None
    parent_version: str | None
    canary_version: str | None


class ThresholdRequest(BaseModel):
    service: str
    window_start: datetime
    window_end: datetime
    constraints: Constraints


class ThresholdCheck(BaseModel):
    """Result of the fast path: does the live config break a hard limit, or did Sentinel alert?"""

    violated: bool
    reasons: list[str] = Field(default_factory=list)


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
    time_scale: float = 1.0


class PrepareCanaryRequest(BaseModel):
    service: str
    decision_id: str
    base_version: str
    model: str
    provider: str


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
    strategy: Literal["canary", "blue_green"] = "canary"
    stages: list[RolloutStage]
    thresholds: JudgeThresholds
    max_extensions: int = 2
    decision_id: str | None = None


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


class TrafficRequest(BaseModel):
    rollout_id: str
    service: str
    active_version: str
    canary_version: str | None
    percent: float


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


class RolloutRecord(BaseModel):
    rollout_id: str
    service: str
    from_version: str
    to_version: str
    strategy: str
    state: str
    reason: str | None = None
    finished: bool = False


# ---- ABExperiment ----


class ExperimentInput(BaseModel):
    experiment_id: str
    service: str
    control_version: str
    treatment_version: str
    policy: ABPolicy = ABPolicy()
    check_every_s: float = Field(default=300, gt=0)
    success_quality: float = Field(default=0.5, ge=0, le=1, description="a request succeeds if ok and quality >= this")


class EvaluateRequest(BaseModel):
    experiment_id: str
    service: str
    control_version: str
    treatment_version: str
    since: datetime
    until: datetime
    policy: ABPolicy
    success_quality: float


class ExperimentOutcome(BaseModel):
    experiment_id: str
    result: ABResult
    live_version: str


# ---- StorageMaintenance ----


class MaintenanceRequest(BaseModel):
    now: datetime
    lateness_s: float = Field(default=60, ge=0, description="events may arrive this late; newer buckets wait")
    retention_days: float = Field(default=7, gt=0)


class MaintenanceReport(BaseModel):
    rollup_rows: dict[str, int]
    expired_events: int


# ---- QualityEvaluation ----


class EvaluationRound(BaseModel):
    """Input of `QualityEvaluation`: the services to score (each must be in `evaluation.services`)."""

    services: list[str]
    lookback_s: float = Field(default=3600, gt=0, description="events older than this are left alone")


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
