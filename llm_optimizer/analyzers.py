"""Orient: the analyzers that turn a service's requests into findings with evidence.

Every finding carries its severity and the evidence behind it (values, baseline, test, p-value, effect size), so a
decision can say why. The analyzers are pure functions over arrays and polars frames.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from llm_optimizer import stats

Severity = Literal["info", "low", "medium", "high", "critical"]


class Finding(BaseModel):
    analyzer: str
    severity: Severity
    metric: str
    message: str
    evidence: dict[str, Any]


def _severity(ratio: float, steps: tuple[float, float, float]) -> Severity:
    low, high, critical = steps
    if ratio >= critical:
        return "critical"
    if ratio >= high:
        return "high"
    if ratio >= low:
        return "medium"
    return "low"


def performance(
    baseline_ms: np.ndarray, current_ms: np.ndarray, threshold: float = 0.2, alpha: float = 0.01
) -> Finding | None:
    """Latency degradation: the current p95 against the baseline's, confirmed by Mann-Whitney U."""
    if len(baseline_ms) < 20 or len(current_ms) < 20:
        return None
    test = stats.mann_whitney(baseline_ms, current_ms, "greater")
    base, now = float(np.percentile(baseline_ms, 95)), float(np.percentile(current_ms, 95))
    change = now / base - 1 if base else 0.0
    if test.p_value >= alpha or change <= threshold:
        return None
    return Finding(
        analyzer="performance",
        severity=_severity(change / threshold, (1, 2, 4)),
        metric="latency_p95_ms",
        message=f"p95 latency {base:.0f} -> {now:.0f} ms ({change:+.0%})",
        evidence={"baseline": base, "current": now, "relative_change": change, **test.as_dict()},
    )


def quality(baseline: np.ndarray, current: np.ndarray, threshold: float = 0.1, alpha: float = 0.01) -> Finding | None:
    """Quality drop: Welch's t (one-sided) and the relative drop of the mean, with its interval."""
    if len(baseline) < 30 or len(current) < 30:
        return None
    test = stats.welch_t(baseline, current, "less")
    base, now = float(np.mean(baseline)), float(np.mean(current))
    drop = 1 - now / base if base else 0.0
    if test.p_value >= alpha or drop <= threshold:
        return None
    diff, low, high = stats.diff_ci(baseline, current)
    return Finding(
        analyzer="quality",
        severity=_severity(drop / threshold, (1, 1.5, 3)),
        metric="quality",
        message=f"quality {base:.3f} -> {now:.3f} ({-drop:+.0%})",
        evidence={
            "baseline": base,
            "current": now,
            "difference": diff,
            "ci_low": low,
            "ci_high": high,
            **test.as_dict(),
        },
    )


def cost(
    spent_today_usd: float,
    now: datetime,
    daily_budget_usd: float | None,
    spent_month_usd: float | None = None,
    monthly_budget_usd: float | None = None,
) -> Finding:
    """Budget burn: the spend rate so far today, forecast linearly to the end of the day (and month), against the
    budgets given; severity by the larger forecast/budget ratio."""
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed_h = max((now - day_start).total_seconds() / 3600, 1 / 60)
    rate = spent_today_usd / elapsed_h
    forecast_day = rate * 24
    evidence: dict[str, Any] = {
        "spent_today_usd": spent_today_usd,
        "burn_rate_usd_per_h": rate,
        "forecast_day_usd": forecast_day,
        "daily_budget_usd": daily_budget_usd,
    }
    ratios = [forecast_day / daily_budget_usd] if daily_budget_usd else []
    message = f"forecast {forecast_day:.2f} USD today" + (
        f" against a budget of {daily_budget_usd:.2f}" if daily_budget_usd else ""
    )
    if spent_month_usd is not None and monthly_budget_usd:
        days = calendar.monthrange(now.year, now.month)[1]
        elapsed_days = (now - now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)).total_seconds() / 86400
        forecast_month = spent_month_usd / max(elapsed_days, 1 / 1440) * days
        evidence |= {"forecast_month_usd": forecast_month, "monthly_budget_usd": monthly_budget_usd}
        ratios.append(forecast_month / monthly_budget_usd)
        message += f"; {forecast_month:.2f} USD this month against {monthly_budget_usd:.2f}"
    ratio = max(ratios, default=0.0)
    evidence["budget_ratio"] = ratio
    severity: Severity = "info" if ratio < 0.8 else _severity(ratio, (0.8, 1.0, 1.5))
    return Finding(analyzer="cost", severity=severity, metric="budget", message=message, evidence=evidence)


def drift(baseline: np.ndarray, current: np.ndarray, metric: str, alpha: float = 0.01) -> Finding | None:
    """Distribution shift: two-sample Kolmogorov-Smirnov, and PSI (> 0.25 significant, > 0.1 moderate)."""
    if len(baseline) < 50 or len(current) < 50:
        return None
    test = stats.ks_2samp(baseline, current)
    index = stats.psi(baseline, current)
    if test.p_value >= alpha and index < 0.1:
        return None
    severity: Severity = "high" if index > 0.25 else ("medium" if index > 0.1 else "low")
    return Finding(
        analyzer="drift",
        severity=severity,
        metric=metric,
        message=f"{metric} distribution shifted (KS D={test.statistic:.3f}, PSI={index:.3f})",
        evidence={"psi": index, **test.as_dict()},
    )


def anomalies(values: np.ndarray, metric: str, method: Literal["zscore", "mad", "iqr"] = "mad") -> Finding | None:
    """Outlying points of a series (z-score, MAD or IQR rule)."""
    if len(values) < 10:
        return None  # too few points to call any of them an outlier
    rule = {"zscore": stats.zscore_outliers, "mad": stats.mad_outliers, "iqr": stats.iqr_outliers}[method]
    flags = rule(values)
    if not flags.any():
        return None
    share = float(flags.mean())
    return Finding(
        analyzer="anomaly",
        severity="high" if share > 0.05 else "medium",
        metric=metric,
        message=f"{int(flags.sum())} anomalous {metric} points ({method})",
        evidence={"method": method, "indices": np.flatnonzero(flags).tolist()[:50], "share": share},
    )


def trend(values: np.ndarray, metric: str, alpha: float = 0.05) -> Finding | None:
    """A monotonic trend (Mann-Kendall, Theil-Sen slope) and CUSUM change points."""
    if len(values) < 3:
        return None
    result = stats.mann_kendall(values, alpha)
    points = stats.cusum_change_points(values)
    if result.direction == "none" and not points:
        return None
    return Finding(
        analyzer="trend",
        severity="medium" if result.direction != "none" else "low",
        metric=metric,
        message=f"{metric} is {result.direction} (slope {result.slope:+.4g} per step); change points {points[:5]}",
        evidence={
            "direction": result.direction,
            "p_value": result.p_value,
            "slope": result.slope,
            "slope_low": result.slope_low,
            "slope_high": result.slope_high,
            "change_points": points,
        },
    )


Baseline = Literal["initial", "rolling", "pre_change", "golden"]


def baseline_window(
    kind: Baseline,
    now: datetime,
    length: timedelta,
    *,
    started: datetime,
    last_change: datetime | None = None,
    golden: tuple[datetime, datetime] | None = None,
) -> tuple[datetime, datetime]:
    """Which period a baseline covers: the first `length` of the service, the `length` before the current window,
    the `length` before the last change, or an operator-chosen golden period."""
    if kind == "initial":
        return started, started + length
    if kind == "rolling":
        return now - 2 * length, now - length
    if kind == "pre_change":
        anchor = last_change or now - length
        return anchor - length, anchor
    if golden is None:
        raise ValueError("a golden baseline needs its period")
    return golden
