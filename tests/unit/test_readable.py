"""Figures in payloads read as people write them: what the Temporal UI shows is the data converter's JSON."""

from __future__ import annotations

import json
import math

from temporalio.contrib.pydantic import pydantic_data_converter

from llm_optimizer.canary_judge import MetricCheck
from llm_optimizer.decision import Impact, Profile
from llm_optimizer.exploration import QualityEstimate
from llm_optimizer.readable import tidy


def _shown(value) -> dict:
    """The JSON the Temporal UI shows for `value`, as the worker's data converter writes it."""
    (payload,) = pydantic_data_converter.payload_converter.to_payloads([value])
    return json.loads(payload.data)


def test_binary_noise_goes_and_the_figure_stays():
    assert tidy(1858.4199999999996) == 1858.42
    assert tidy(0.00008329999999999999) == 8.33e-05
    assert tidy(-0.19999999999999996) == -0.2
    assert tidy(1 / 3) == 0.333333333333  # twelve significant digits: far finer than any estimate here
    assert tidy(math.inf) == math.inf and math.isnan(tidy(math.nan))


def test_payloads_show_tidy_figures_and_python_keeps_the_exact_ones():
    check = MetricCheck(
        metric="latency_p95",
        baseline=1858.4199999999996,
        canary=1209.1249999999998,
        relative_change=-0.19999999999999996,
        threshold=0.2,
        test="mann_whitney",
        p_value=0.5,
        degraded=False,
    )
    assert _shown(check)["baseline"] == 1858.42 and _shown(check)["canary"] == 1209.125
    assert _shown(check)["relative_change"] == -0.2
    assert check.baseline == 1858.4199999999996  # only the JSON is tidied
    profile = Profile(model="m", provider="p", cost_per_request=0.00008329999999999999, quality_mean=None)
    assert _shown(profile)["cost_per_request"] == 8.33e-05 and _shown(profile)["quality_mean"] is None
    assert _shown(Impact(estimate=0.1 + 0.2))["estimate"] == 0.3
    assert _shown(QualityEstimate(mean=0.7000000000000001, sd=0.1, n=3))["mean"] == 0.7
