"""What a decision reads and says: a candidate's profile, the constraints, objectives and guards it keeps, the
cycle's memory, and the decision itself with its checks and every candidate's fate. These models travel in workflow
payloads and recorded histories: rename a class freely, never a field."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm_optimizer.exploration import ArmResult, QualityEstimate
from llm_optimizer.objectives import Objectives, Outcome
from llm_optimizer.readable import Tidy
from llm_optimizer.rules import RuleState
from llm_optimizer.strategies import StrategyPreset


class Action(StrEnum):
    none = "none"
    canary = "canary"
    rollback = "rollback"
    experiment = "experiment"
    alert = "alert"


class Constraints(BaseModel):
    """Hard limits: a candidate that breaks one is never proposed, and the live config breaking one is a finding."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quality_floor_ratio: float = Field(default=0.95, gt=0, le=1, description="of the reference config's quality")
    quality_min: float | None = Field(default=None, ge=0, le=1)
    p95_latency_max_ms: float | None = Field(default=None, gt=0)
    error_rate_max: float | None = Field(default=0.05, ge=0, le=1)
    daily_budget_usd: float | None = Field(default=None, gt=0)
    monthly_budget_usd: float | None = Field(default=None, gt=0)
    approved_models: list[str] | None = None
    denied_providers: list[str] = Field(default_factory=list)
    approved_regions: list[str] | None = None  # a candidate's region must be one of these (and known)
    # deny: a candidate outside the approved models or from a denied provider is never proposed; warn: it may be,
    # and the decision records the breach as a warning.
    governance_mode: Literal["deny", "warn"] = "deny"


class Profile(BaseModel):
    """What is known of one candidate (a model, or a config an operator offered) for a service: observed, measured
    by an exploration, or priced only."""

    model_config = ConfigDict(frozen=True)

    key: str = ""  # the candidate's name: the model's for a model candidate; set from `model` when empty
    model: str
    provider: str
    config_version: str | None = None
    requests: int = 0
    error_rate: Tidy | None = None
    latency_p95_ms: Tidy | None = None
    quality_mean: Tidy | None = None
    quality_sd: Tidy | None = None
    quality_n: int = 0
    cost_per_request: Tidy | None = None
    cost_sd: Tidy | None = None
    tokens_in_mean: Tidy | None = None
    tokens_out_mean: Tidy | None = None
    region: str | None = None  # where the model is hosted, when the model registry says
    price_source: str | None = None  # where cost_per_request comes from when not observed (registry, genai-prices...)
    changes: dict = Field(default_factory=dict)  # a config candidate's changes to the live spec (prompt, params)

    @model_validator(mode="after")
    def _key_defaults_to_model(self) -> Profile:
        if not self.key:
            object.__setattr__(self, "key", self.model)
        return self

    @property
    def quality_known(self) -> bool:
        return self.quality_mean is not None and self.quality_n >= 30

    @property
    def known_quality(self) -> float | None:
        """The mean quality where it is known (`quality_known`), else None."""
        return self.quality_mean if self.quality_known else None

    @property
    def outcome(self) -> Outcome:
        """Cost, known quality and p95 latency: what the weighted gain and the Pareto frontier compare."""
        return Outcome(self.cost_per_request, self.known_quality, self.latency_p95_ms)


class Check(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["safety", "guard", "constraint", "policy", "objective"]
    passed: bool
    detail: str


class Impact(BaseModel):
    """An expected relative change (cost, latency) or difference (quality), with a 95% interval where estimable."""

    model_config = ConfigDict(frozen=True)

    estimate: Tidy
    low: Tidy | None = None
    high: Tidy | None = None


class ExploredArm(BaseModel):
    """A candidate's last exploration: its measurements and fate, and when."""

    since: datetime | None = None  # when its exploration began: its measurements are the version's since then
    at: datetime
    result: ArmResult


class Memory(BaseModel):
    """What the cycle remembers between decisions (carried across continue-as-new).

    The floor's base is held twice, on purpose: `reference_quality` and `reference` are both fields of the payload
    `CycleCarried` hands to the next run, so neither can be renamed or dropped without changing that wire format.
    - `reference_quality`: the base as a bare mean. It is all a cycle carried before `reference` existed, and the
      first decision sets it even when the base has no measured spread (no scored requests behind it).
    - `reference`: the same base with its spread and sample size, kept only once measured (n > 0) and pooled over
      every measurement while the reference config was live; whenever it is set, `reference_quality` is its mean
      (`llm_optimizer/memory.py` updates them together).
    Read them through `candidates.reference_estimate`, which prefers `reference` and falls back on the mean."""

    last_change_at: datetime | None = None
    reference_quality: float | None = None  # the floor's base as a mean (see above)
    last_alert_at: datetime | None = None
    rollbacks: list[datetime] = Field(default_factory=list)
    rolled_back_models: dict[str, datetime] = Field(default_factory=dict)
    rule_state: RuleState = Field(default_factory=RuleState)
    canary_outcomes: dict[str, tuple[int, int]] = Field(default_factory=dict)  # key -> (promoted, rolled back)
    # The floor's base with its spread: the reference config's quality, pooled while it was live (see above).
    reference: QualityEstimate | None = None
    reference_version: str | None = None
    explored: dict[str, ExploredArm] = Field(default_factory=dict)  # key -> what its last exploration measured


class Guards(BaseModel):
    model_config = ConfigDict(frozen=True)

    change_cooldown: timedelta = timedelta(minutes=30)
    max_rollbacks_per_day: int = 3
    min_live_requests: int = Field(default=30, ge=0)  # the live config's requests a change is judged against
    rolled_back_retry_after: timedelta = timedelta(days=1)
    explore_unobserved: bool = True
    explore_max_arms: int = Field(default=10, ge=1)
    explore_unpriced: bool = True


class CandidateFate(BaseModel):
    """What a decision did with one offered candidate: proposed (canary), exploring, or skipped with the reason."""

    model_config = ConfigDict(frozen=True)

    key: str
    model: str
    fate: Literal["proposed", "exploring", "skipped"]
    reason: str
    cost_per_request: Tidy | None = None
    price_source: str | None = None
    quality_mean: Tidy | None = None
    quality_n: int = 0


class Decision(BaseModel):
    decision_id: str
    service: str
    made_at: datetime
    action: Action
    rationale: str
    confidence: Tidy | None = None
    current_version: str | None = None
    target_version: str | None = None  # rollback target
    candidate: Profile | None = None  # canary candidate
    arms: list[Profile] = Field(default_factory=list)  # experiment: the candidates an exploration measures at once
    exploration: bool = False
    reference_quality: Tidy | None = None
    reference: QualityEstimate | None = None  # the floor's base, for the cycle to keep
    # The largest relative quality drop from the live config that keeps the floor: the canary judge's quality limit.
    floor_margin: Tidy | None = None
    expected_impact: dict[str, Impact] = Field(default_factory=dict)
    checks: list[Check] = Field(default_factory=list)
    candidates: list[CandidateFate] = Field(default_factory=list)  # every offered candidate's fate
    rule_state: RuleState | None = None  # the rules' state after this decision, for the cycle to keep


class DecisionInput(BaseModel):
    service: str
    now: datetime
    current_version: str
    parent_version: str | None = None
    current: Profile
    reference_quality: float | None = None  # quality the floor is relative to (the starting config's)
    reference: QualityEstimate | None = None  # the same with its spread and sample size, when known
    candidates: list[Profile] = Field(default_factory=list)
    critical_findings: list[str] = Field(default_factory=list)  # roll back (or alert), never a backup model
    findings: list[str] = Field(default_factory=list)  # breaches seen on the fast path: a backup model may answer
    alerts: list[str] = Field(default_factory=list)  # alert rules that fired: an alert when nothing else is done
    spent_today_usd: float | None = None
    spent_month_usd: float | None = None
    constraints: Constraints = Constraints()
    objectives: Objectives = Objectives()
    preset: StrategyPreset
    guards: Guards = Guards()
    memory: Memory = Memory()
