"""Thompson sampling against known posteriors, and parameter tuning rules."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from llm_optimizer.bandit import BetaArm, NormalArm, allocate, reward
from llm_optimizer.configs import GenerationParams
from llm_optimizer.tuning import OutputStats, tune


def test_beta_posterior_matches_scipy():
    arm = BetaArm()
    arm.update(successes=30, failures=70)
    draws = arm.sample(np.random.default_rng(0), 200_000)
    assert arm.mean == pytest.approx(31 / 102)
    assert np.quantile(draws, 0.9) == pytest.approx(sps.beta(31, 71).ppf(0.9), abs=0.003)


def test_normal_posterior_concentrates_on_the_sample_mean():
    rng = np.random.default_rng(1)
    arm = NormalArm()
    data = rng.normal(0.42, 0.1, 5000)
    arm.update(data[:2500])
    arm.update(data[2500:])  # two updates equal one over all the data
    assert arm.mean == pytest.approx(data.mean(), abs=1e-4)
    draws = arm.sample(rng, 20_000)
    # Posterior sd of the mean ~ sigma / sqrt(n)
    assert draws.std() == pytest.approx(0.1 / np.sqrt(5000), rel=0.1)


def test_allocation_follows_the_evidence():
    rng = np.random.default_rng(2)
    equal = allocate({"a": BetaArm(), "b": BetaArm()}, rng)
    assert equal["a"] == pytest.approx(0.5, abs=0.05)
    good, bad = BetaArm(), BetaArm()
    good.update(900, 100)
    bad.update(800, 200)
    shares = allocate({"good": good, "bad": bad}, rng)
    assert shares["good"] > 0.99 and sum(shares.values()) == pytest.approx(1)


def test_thompson_sampling_converges_on_the_best_arm_in_simulation():
    rng = np.random.default_rng(3)
    truth = {"cheap": 0.80, "mid": 0.84, "big": 0.90}
    arms = {name: BetaArm() for name in truth}
    served = dict.fromkeys(truth, 0)
    for _ in range(200):
        shares = allocate(arms, rng, draws=500)
        for name, share in shares.items():
            n = round(share * 50)
            successes = int(rng.binomial(n, truth[name]))
            arms[name].update(successes, n - successes)
            served[name] += n
    assert served["big"] > 0.8 * sum(served.values())


def test_reward_prefers_quality_and_penalises_cost_and_latency():
    base = reward(0.9, 0.01, 1000, cost_scale=0.01, latency_scale=1000)
    assert reward(0.9, 0.005, 1000, cost_scale=0.01, latency_scale=1000) > base
    assert reward(0.8, 0.01, 1000, cost_scale=0.01, latency_scale=1000) < base


def test_tuning_rules():
    params = GenerationParams(temperature=0.7, max_tokens=256)
    truncated = tune("chat", params, OutputStats(requests=1000, truncated=80, tokens_out_p99=256))
    assert truncated.params.max_tokens == 384 and "8.0% of answers were cut" in truncated.reasons[-1]
    extraction = tune(
        "extraction",
        GenerationParams(temperature=0.7, max_tokens=4096),
        OutputStats(requests=1000, truncated=0, tokens_out_p99=100),
    )
    assert extraction.params.temperature == 0.0 and extraction.params.max_tokens == 130
    creative = tune(
        "creative",
        GenerationParams(temperature=0.9, top_p=1.0),
        OutputStats(requests=10, truncated=0, tokens_out_p99=900),
    )
    assert creative.params.top_p == 0.95 and creative.params.temperature == 0.9
    unchanged = tune(
        "chat",
        GenerationParams(temperature=0.7, top_p=0.9, max_tokens=512),
        OutputStats(requests=100, truncated=0, tokens_out_p99=300),
    )
    assert unchanged.reasons == []
