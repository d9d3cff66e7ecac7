"""Rules as data: composite conditions over metrics, a duration they must hold, a cooldown, a daily cap.

    - name: error-rate-rollback
      safety: true                 # safety rules are evaluated first
      priority: 100
      when: {all: [{metric: error_rate, op: ">", value: 0.05}, {not: {metric: requests, op: "<", value: 100}}]}
      for_s: 300                   # the condition must hold this long before the rule fires
      cooldown_s: 1800
      max_per_day: 3
      action: rollback

Metrics are a flat mapping (`error_rate`, `latency_p95_ms`, `trend.latency_p95` = "increasing", ...). `evaluate`
returns what fired and a trace of every rule; with `dry_run` the state is left as it was.
"""

from __future__ import annotations

import operator
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from llm_optimizer import yamlsafe
from llm_optimizer.errors import UnsafeYaml, ValidationFailed
from llm_optimizer.events import describe_validation_error

OPS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class Leaf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    value: float | str | bool

    def holds(self, metrics: dict[str, Any]) -> bool:
        if self.metric not in metrics or metrics[self.metric] is None:
            return False  # an unknown metric never satisfies a comparison
        try:
            return bool(OPS[self.op](metrics[self.metric], self.value))
        except TypeError:
            return False


class All(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    all: list[Condition] = Field(min_length=1)

    def holds(self, metrics: dict[str, Any]) -> bool:
        return all(c.holds(metrics) for c in self.all)


class Any_(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    any: list[Condition] = Field(min_length=1)

    def holds(self, metrics: dict[str, Any]) -> bool:
        return any(c.holds(metrics) for c in self.any)


class Not(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    not_: Condition = Field(alias="not")

    def holds(self, metrics: dict[str, Any]) -> bool:
        return not self.not_.holds(metrics)


Condition = Annotated[Union[Leaf, All, Any_, Not], Field(union_mode="left_to_right")]  # noqa: UP007
for _model in (All, Any_, Not):
    _model.model_rebuild()


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    when: Condition
    action: Literal["rollback", "backup_model", "optimize", "alert", "none"]
    safety: bool = False
    priority: int = 0
    for_s: float = Field(default=0, ge=0)
    cooldown_s: float = Field(default=0, ge=0)
    max_per_day: int | None = Field(default=None, gt=0)
    enabled: bool = True


class RuleState(BaseModel):
    """Per rule: since when its condition holds, and when it fired (carried by the cycle between evaluations)."""

    holding_since: dict[str, datetime] = Field(default_factory=dict)
    fired: dict[str, list[datetime]] = Field(default_factory=dict)


class RuleTrace(BaseModel):
    rule: str
    condition_met: bool
    fired: bool
    reason: str


class RuleEvaluation(BaseModel):
    fired: list[Rule]
    trace: list[RuleTrace]
    state: RuleState


_RULES = TypeAdapter(list[Rule])


def load_rules(text: str) -> list[Rule]:
    """Rules from YAML, or `ValidationFailed` naming the rule index, the field and the value."""
    try:
        return _RULES.validate_python(yamlsafe.safe_load(text, what="rules") or [])
    except UnsafeYaml as exc:  # names `rules` and the problem: not valid YAML, or refused by its limits
        raise ValidationFailed(str(exc)) from None
    except ValidationError as exc:
        raise ValidationFailed("rules: " + describe_validation_error(exc)) from None


def evaluate(
    rules: list[Rule], metrics: dict[str, Any], now: datetime, state: RuleState, *, dry_run: bool = False
) -> RuleEvaluation:
    """Safety rules first, then by priority; a rule fires when its condition has held `for_s`, it is out of its
    cooldown, and it is under its daily cap."""
    holding = dict(state.holding_since)
    fired_log = {name: [t for t in times if now - t < timedelta(days=1)] for name, times in state.fired.items()}
    fired: list[Rule] = []
    trace: list[RuleTrace] = []
    for rule in sorted((r for r in rules if r.enabled), key=lambda r: (not r.safety, -r.priority, r.name)):
        met = rule.when.holds(metrics)
        if not met:
            holding.pop(rule.name, None)
            trace.append(RuleTrace(rule=rule.name, condition_met=False, fired=False, reason="condition not met"))
            continue
        since = holding.setdefault(rule.name, now)
        times = fired_log.get(rule.name, [])
        if (now - since).total_seconds() < rule.for_s:
            reason = f"condition holds since {since.isoformat()}, needs {rule.for_s:g}s"
        elif times and (now - times[-1]).total_seconds() < rule.cooldown_s:
            reason = f"in cooldown since {times[-1].isoformat()}"
        elif rule.max_per_day is not None and len(times) >= rule.max_per_day:
            reason = f"fired {len(times)} times in 24 h (cap {rule.max_per_day})"
        else:
            fired.append(rule)
            fired_log[rule.name] = [*times, now]
            trace.append(RuleTrace(rule=rule.name, condition_met=True, fired=True, reason="fired"))
            continue
        trace.append(RuleTrace(rule=rule.name, condition_met=True, fired=False, reason=reason))
    new_state = state if dry_run else RuleState(holding_since=holding, fired=fired_log)
    return RuleEvaluation(fired=fired, trace=trace, state=new_state)
