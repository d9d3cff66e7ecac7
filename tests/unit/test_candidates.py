"""The decision's input as pure functions: what each offered candidate is known by (its own requests, its last
exploration, a price) and which findings roll back; no Temporal, no Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llm_optimizer.candidates import (
    CandidateConfig,
    Quote,
    candidate_profiles,
    decision_input,
    guards_from,
    offered_candidates,
    reference_estimate,
)
from llm_optimizer.decision import Constraints, ExploredArm, Memory, Objectives, Profile
from llm_optimizer.exploration import ArmResult, QualityEstimate
from llm_optimizer.settings import ExplorationSettings, OptimizationSettings
from llm_optimizer.strategies import PRESETS, Strategy

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
CURRENT = Profile(
    model="big",
    provider="p",
    config_version="v1",
    requests=3000,
    quality_mean=0.8,
    quality_sd=0.4,
    quality_n=3000,
    cost_per_request=0.01,
    tokens_in_mean=1000,
    tokens_out_mean=200,
)


def quote(model: str, tokens_in: float, tokens_out: float) -> Quote | None:
    prices = {"listed": (1.0, 2.0)}  # per 1M tokens in/out
    if model not in prices:
        return None
    per_in, per_out = prices[model]
    return Quote(provider="vendor", cost_per_request=(tokens_in * per_in + tokens_out * per_out) / 1e6, source="file")


def by_key(profiles: list[Profile]) -> dict[str, Profile]:
    return {p.key: p for p in profiles}


def test_each_candidate_is_known_by_what_there_is_first_its_requests_then_its_exploration_then_a_price():
    seen = [
        CURRENT,
        Profile(
            model="observed",
            provider="q",
            config_version="v7",
            requests=400,
            quality_mean=0.78,
            quality_n=380,
            cost_per_request=0.002,
        ),
    ]
    explored = ArmResult(
        key="explored",
        version="v9",
        fate="qualified",
        reason="",
        requests=2000,
        quality=QualityEstimate(mean=0.79, sd=0.4, n=1900),
        cost_per_request=0.003,
    )
    deferred = explored.model_copy(update={"key": "deferred", "version": "v10", "fate": "deferred"})
    memory = Memory(
        explored={
            "explored": ExploredArm(at=NOW, result=explored),
            "deferred": ExploredArm(at=NOW, result=deferred),
        }
    )
    offered = offered_candidates(
        ["observed", "explored", "deferred", "listed", "unknown-ft"],
        [CandidateConfig(name="short", prompt_template="x")],
    )
    profiles = by_key(candidate_profiles(offered, seen, CURRENT, memory, quote))
    assert profiles["observed"].quality_n == 380 and profiles["observed"].config_version == "v7"
    assert profiles["explored"].quality_known and profiles["explored"].price_source == "measured by exploration"
    # Deferred: its cost is known, its quality is not decided: it goes back to exploration.
    assert not profiles["deferred"].quality_known and profiles["deferred"].cost_per_request == 0.003
    # Priced at the live config's token mix: 1000 x 1.0 + 200 x 2.0 per 1M tokens.
    assert profiles["listed"].cost_per_request == 1400 / 1e6 and profiles["listed"].price_source == "file"
    assert profiles["unknown-ft"].cost_per_request is None and "no price known" in profiles["unknown-ft"].price_source
    # A prompt change changes the token mix: only measurements price it.
    assert profiles["short"].cost_per_request is None and profiles["short"].changes == {"prompt_template": "x"}
    assert profiles["short"].model == "big"


def test_a_listed_price_is_not_quoted_when_the_live_config_reported_no_usage():
    # Streams without usage: the token means are unknown, so a listed price cannot be turned into a cost (a quote
    # at zero tokens would make every listed model look free); the candidate is measured instead.
    silent = CURRENT.model_copy(update={"tokens_in_mean": None, "tokens_out_mean": None})
    offered = offered_candidates(["listed"], [])
    listed = by_key(candidate_profiles(offered, [silent], silent, Memory(), quote))["listed"]
    assert listed.cost_per_request is None
    assert listed.price_source == "to be measured: the live token mix is unknown (no usage reported)"


def test_the_floor_s_base_is_the_kept_reference_then_the_live_config():
    assert reference_estimate(Memory(), CURRENT).mean == 0.8
    kept = QualityEstimate(mean=0.85, sd=0.35, n=9000)
    assert reference_estimate(Memory(reference=kept), CURRENT) == kept
    assert reference_estimate(Memory(), CURRENT.model_copy(update={"quality_n": 3})) is None


def test_decision_input_splits_critical_findings_and_scales_the_guards():
    guards = guards_from(
        OptimizationSettings(change_cooldown_s=1000), ExplorationSettings(max_arms=3, unpriced=False), 0.5
    )
    assert guards.change_cooldown == timedelta(seconds=500) and guards.explore_max_arms == 3
    assert not guards.explore_unpriced
    inp = decision_input(
        service="s",
        now=NOW,
        active_version="v1",
        parent_version=None,
        current=CURRENT,
        candidates=[],
        findings=["Sentinel: critical cost_spike", "error rate 9% > 5%"],
        assessment_critical=["drift"],
        assessment_high=[],
        alerts=[],
        spent_today_usd=None,
        spent_month_usd=None,
        constraints=Constraints(),
        objectives=Objectives(),
        preset=PRESETS[Strategy.balanced],
        guards=guards,
        memory=Memory(),
    )
    assert inp.critical_findings == ["Sentinel: critical cost_spike", "drift"]
    assert inp.findings == ["error rate 9% > 5%"] and inp.reference_quality == 0.8


def test_candidate_configs_file_is_read_safely_and_errors_name_the_field(tmp_path):
    import pytest

    from llm_optimizer.errors import OptimizerError
    from starter.cycle import load_candidate_configs

    good = tmp_path / "ok.yaml"
    good.write_text(
        "- {name: short-prompt, prompt_template: 'Answer: {q}', params: {temperature: 0.2}}\n- {name: m2, model: m2}\n"
    )
    loaded = load_candidate_configs(str(good))
    assert [c.name for c in loaded] == ["short-prompt", "m2"] and loaded[0].params == {"temperature": 0.2}
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: x, promt_template: typo}\n")
    with pytest.raises(OptimizerError, match="promt_template"):
        load_candidate_configs(str(bad))
    with pytest.raises(OptimizerError, match="expected a list"):
        load_candidate_configs(_write(tmp_path, "name: x\n"))


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "doc.yaml"
    path.write_text(text)
    return str(path)
