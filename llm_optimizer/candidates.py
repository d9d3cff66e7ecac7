"""What the decision engine is given: the offered candidates (models or whole configs), each with what is known of
it, and the rest of the decision's input. Pure: the `decide` activity reads the registry and the events, then calls
`decision_input`; tests call it directly.

A candidate's cost per request comes, in this order, from its own requests in the window, from its last exploration,
or from a price (the price book's layers, docs/configuration.md "Prices") at the live config's token mix. A config
candidate that changes the prompt or the generation parameters changes the token mix too, so only its own
measurements price it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from llm_optimizer.configs import ConfigSpec, GenerationParams
from llm_optimizer.decision import Constraints, DecisionInput, Guards, Memory, Objectives, Profile
from llm_optimizer.exploration import RETRYABLE, ArmResult, QualityEstimate
from llm_optimizer.settings import ExplorationSettings, OptimizationSettings
from llm_optimizer.strategies import StrategyPreset

CRITICAL_ALERT = "Sentinel: critical"
CandidateName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][\w.:/@+-]*$")]


class CandidateConfig(BaseModel):
    """A config an operator offers: another model, another prompt template, other generation parameters, or any mix
    of them, applied to the live spec. A bare model name is the candidate `{name: model, model: model}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: CandidateName
    model: str | None = Field(default=None, min_length=1, max_length=256)
    provider: str | None = Field(default=None, min_length=1, max_length=128)
    prompt_template: Annotated[str, StringConstraints(max_length=100_000)] | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="generation parameters to change")

    def changes(self) -> dict[str, Any]:
        """The changes to the live spec other than the model (what makes this a config candidate)."""
        out: dict[str, Any] = {}
        if self.prompt_template is not None:
            out["prompt_template"] = self.prompt_template
        if self.params:
            out["params"] = dict(self.params)
        return out


def offered_candidates(models: list[str], configs: list[CandidateConfig]) -> list[CandidateConfig]:
    """Models and configs as one list of candidates, first offer of a name wins."""
    out: dict[str, CandidateConfig] = {}
    for model in models:
        out.setdefault(model, CandidateConfig(name=model, model=model))
    for config in configs:
        out.setdefault(config.name, config)
    return list(out.values())


class Quote(BaseModel):
    """A price of a model, and where it came from (for the decision's checks)."""

    model_config = ConfigDict(frozen=True)

    provider: str | None
    cost_per_request: float
    source: str


def candidate_profiles(
    offered: list[CandidateConfig],
    seen: list[Profile],
    current: Profile,
    memory: Memory,
    price: Callable[[str, float, float], Quote | None],
) -> list[Profile]:
    """One profile per candidate: offered ones (measured, explored or priced), and every other model seen serving
    the service in the window (its best-observed profile)."""
    by_version = {p.config_version: p for p in seen if p.config_version}
    best_of_model: dict[str, Profile] = {}
    for p in seen:
        if (
            p.model != current.model
            and p.requests > best_of_model.get(p.model, Profile(model="", provider="")).requests
        ):
            best_of_model[p.model] = p
    # A price needs the live token mix; without it (no usage reported) a quote would be a guess, so it is measured.
    mix_known = current.tokens_in_mean is not None and current.tokens_out_mean is not None
    profiles: dict[str, Profile] = {}
    for candidate in offered:
        model = candidate.model or current.model
        changes = candidate.changes()
        explored = memory.explored.get(candidate.name)
        qualified = explored is not None and explored.result.fate == "qualified"
        profile: Profile | None = None
        provider = candidate.provider or current.provider
        if explored is not None and explored.result.fate in RETRYABLE:
            # Deferred: measured, not decided. It goes back to exploration, which pools what it already measured.
            profile = _from_exploration(explored.result, model, provider, with_quality=False)
        elif qualified and explored is not None and explored.result.version in by_version:
            profile = by_version[explored.result.version]
        elif not changes and model in best_of_model:
            profile = best_of_model[model]
        elif explored is not None and explored.result.quality is not None:
            profile = _from_exploration(explored.result, model, provider, with_quality=True)
        if profile is None:
            quote = None
            if not changes and current.tokens_in_mean is not None and current.tokens_out_mean is not None:
                quote = price(model, current.tokens_in_mean, current.tokens_out_mean)
            profile = Profile(
                model=model,
                provider=candidate.provider or (quote.provider if quote and quote.provider else current.provider),
                cost_per_request=quote.cost_per_request if quote else None,
                price_source=quote.source if quote else _unpriced_reason(bool(changes), mix_known),
            )
        profiles[candidate.name] = profile.model_copy(update={"key": candidate.name, "changes": changes})
    for model, p in best_of_model.items():
        profiles.setdefault(model, p.model_copy(update={"key": model}))
    return list(profiles.values())


def _unpriced_reason(changes: bool, mix_known: bool) -> str:
    if changes:
        return "to be measured: the change alters the token mix"
    if not mix_known:
        return "to be measured: the live token mix is unknown (no usage reported)"
    return "no price known: to be measured"


def _from_exploration(r: ArmResult, model: str, provider: str, *, with_quality: bool) -> Profile:
    """What an exploration measured of a candidate; its quality only once decided (an undecided arm's quality is
    left unknown, so it goes back to exploration rather than to the measured candidates)."""
    quality = r.quality if with_quality else None
    return Profile(
        model=model,
        provider=provider,
        config_version=r.version,
        requests=r.requests,
        quality_mean=quality.mean if quality else None,
        quality_sd=quality.sd if quality else None,
        quality_n=quality.n if quality else 0,
        cost_per_request=r.cost_per_request,
        tokens_in_mean=r.tokens_in_mean if with_quality else None,
        tokens_out_mean=r.tokens_out_mean if with_quality else None,
        latency_p95_ms=r.latency_p95_ms if with_quality else None,
        price_source="measured by exploration" if with_quality else "measured by exploration (not decided yet)",
    )


def reference_estimate(memory: Memory, current: Profile) -> QualityEstimate | None:
    """The floor's base: the reference config's pooled quality, or the live config's own when none is kept yet."""
    if memory.reference is not None:
        return memory.reference
    if memory.reference_quality is not None:
        return QualityEstimate(mean=memory.reference_quality)
    if current.quality_known:
        return QualityEstimate(mean=current.quality_mean, sd=current.quality_sd or 0.0, n=current.quality_n)
    return None


def decision_input(
    *,
    service: str,
    now: datetime,
    active_version: str,
    parent_version: str | None,
    current: Profile,
    candidates: list[Profile],
    findings: list[str],
    assessment_critical: list[str],
    assessment_high: list[str],
    alerts: list[str],
    spent_today_usd: float | None,
    spent_month_usd: float | None,
    constraints: Constraints,
    objectives: Objectives,
    preset: StrategyPreset,
    guards: Guards,
    memory: Memory,
) -> DecisionInput:
    """The decision's input: Sentinel's critical alerts and the assessment's critical findings are what roll back."""
    reference = reference_estimate(memory, current)
    return DecisionInput(
        service=service,
        now=now,
        current_version=active_version,
        parent_version=parent_version,
        current=current,
        reference_quality=reference.mean if reference is not None else None,
        reference=reference,
        candidates=candidates,
        critical_findings=[f for f in findings if f.startswith(CRITICAL_ALERT)] + assessment_critical,
        findings=[f for f in findings if not f.startswith(CRITICAL_ALERT)] + assessment_high,
        alerts=alerts,
        spent_today_usd=spent_today_usd,
        spent_month_usd=spent_month_usd,
        constraints=constraints,
        objectives=objectives,
        preset=preset,
        guards=guards,
        memory=memory,
    )


def budget_windows(now: datetime) -> tuple[datetime, datetime]:
    """The starts of today and of this month (UTC), over which the budgets are counted."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)


def guards_from(settings: OptimizationSettings, exploration: ExplorationSettings, time_scale: float) -> Guards:
    """The change guards of `OptimizationSettings` and the cycle's exploration switches, scaled like every other
    duration."""
    return Guards(
        change_cooldown=timedelta(seconds=settings.change_cooldown_s * time_scale),
        max_rollbacks_per_day=settings.max_rollbacks_per_day,
        min_live_requests=settings.min_live_requests,
        rolled_back_retry_after=timedelta(seconds=settings.rolled_back_retry_after_s * time_scale),
        explore_unobserved=exploration.enabled,
        explore_unpriced=exploration.unpriced,
        explore_max_arms=exploration.max_arms,
    )


def candidate_spec(base: ConfigSpec, model: str, provider: str, changes: dict[str, Any]) -> ConfigSpec:
    """The live spec with a candidate's model and its prompt/parameter changes (`CandidateConfig.changes`)."""
    update: dict[str, Any] = {"model": model, "provider": provider}
    if "prompt_template" in changes:
        update["prompt_template"] = changes["prompt_template"]
    if "params" in changes:
        update["params"] = GenerationParams.model_validate({**base.params.model_dump(), **changes["params"]})
    return ConfigSpec.model_validate({**base.model_dump(), **update})
