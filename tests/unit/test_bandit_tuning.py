"""The Beta posterior the decision engine samples, against scipy; and parameter tuning rules."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from llm_optimizer.bandit import BetaArm
from llm_optimizer.configs import GenerationParams
from llm_optimizer.tuning import OutputStats, tune


def test_beta_posterior_matches_scipy():
    arm = BetaArm()
    arm.update(successes=30, failures=70)
    draws = arm.sample(np.random.default_rng(0), 200_000)
    assert arm.mean == pytest.approx(31 / 102)
    assert np.quantile(draws, 0.9) == pytest.approx(sps.beta(31, 71).ppf(0.9), abs=0.003)


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
