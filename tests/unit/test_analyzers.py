"""Each analyzer on data with a known answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from llm_optimizer import analyzers

RNG = np.random.default_rng(21)


def test_performance_and_quality_findings():
    base = RNG.lognormal(np.log(800), 0.4, 2000)
    assert analyzers.performance(base, RNG.lognormal(np.log(800), 0.4, 2000)) is None
    slow = analyzers.performance(base, RNG.lognormal(np.log(800), 0.4, 2000) * 1.6)
    assert slow.severity in ("high", "critical") and slow.evidence["p_value"] < 1e-6
    good = RNG.binomial(1, 0.85, 2000).astype(float)
    assert analyzers.quality(good, RNG.binomial(1, 0.84, 2000).astype(float)) is None
    worse = analyzers.quality(good, RNG.binomial(1, 0.6, 2000).astype(float))
    assert worse.metric == "quality" and worse.evidence["ci_high"] < 0


def test_budget_forecast_arithmetic():
    noon = datetime(2026, 11, 15, 12, tzinfo=UTC)
    finding = analyzers.cost(60.0, noon, daily_budget_usd=100.0, spent_month_usd=1400.0, monthly_budget_usd=3000.0)
    assert finding.evidence["burn_rate_usd_per_h"] == pytest.approx(5.0)
    assert finding.evidence["forecast_day_usd"] == pytest.approx(120.0)
    assert finding.evidence["forecast_month_usd"] == pytest.approx(1400 / 14.5 * 30)
    assert finding.severity == "high"
    assert analyzers.cost(10.0, noon, daily_budget_usd=100.0).severity == "info"


def test_drift_anomaly_and_trend():
    base = RNG.normal(500, 50, 3000)
    assert analyzers.drift(base, RNG.normal(500, 50, 3000), "tokens_out") is None
    shifted = analyzers.drift(base, RNG.normal(560, 50, 3000), "tokens_out")
    assert shifted is not None and shifted.evidence["psi"] > 0.1
    series = RNG.normal(100, 5, 500)
    series[[50, 300]] = [400, -200]
    found = analyzers.anomalies(series, "latency_p95_ms", "mad")
    assert {50, 300} <= set(found.evidence["indices"]) and found.evidence["share"] < 0.02
    assert analyzers.anomalies(np.full(100, 7.0), "latency_p95_ms") is None
    assert analyzers.trend(np.full(100, 3.0), "cost") is None
    rising = analyzers.trend(np.arange(100) * 0.2 + RNG.normal(0, 1, 100), "cost")
    assert rising.evidence["direction"] == "increasing"
    assert rising.evidence["slope"] == pytest.approx(0.2, abs=0.02)
    assert rising.evidence["slope_low"] <= rising.evidence["slope"] <= rising.evidence["slope_high"]


def test_baselines_and_the_comparator():
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    hour = timedelta(hours=1)
    started = now - 48 * hour
    assert analyzers.baseline_window("initial", now, hour, started=started) == (started, started + hour)
    assert analyzers.baseline_window("rolling", now, hour, started=started) == (now - 2 * hour, now - hour)
    change = now - 5 * hour
    assert analyzers.baseline_window("pre_change", now, hour, started=started, last_change=change) == (
        change - hour,
        change,
    )
    with pytest.raises(ValueError, match="golden"):
        analyzers.baseline_window("golden", now, hour, started=started)
