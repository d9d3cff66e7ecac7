"""Concurrent control: the canary judge compares the two arms over the same moments, not only the same window.

Within one stage both arms serve fixed shares, so any moment's traffic is split the same way and a service-wide
incident (a provider's error burst, a slow network) hits both alike. Across stages it does not: the promotion gate
pools the canary's requests since its exploration began, most of them from the last, largest stage, while the
baseline's are spread over the whole window. A burst during that stage then weighs far more on the canary than on
the baseline, and a healthy canary is rolled back for the service's incident.

So the baseline is sampled to the canary's time profile: the window is cut into `BUCKETS` equal spans, and from each
span the baseline keeps `r` requests for every canary request there, `r` as large as every span allows (evenly
spread in time within the span, so the choice is deterministic and a retried judgement sees the same sample). The
two samples then have the same distribution over time, which makes every test of the judge a concurrent comparison
as it stands. Canary requests in a span where the baseline served none cannot be compared and are left out; the
verdict says how many (`Matched.note`). A stage whose profiles already agree keeps nearly all of its baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llm_optimizer.assessment import Samples

BUCKETS = 20


@dataclass(frozen=True)
class Matched:
    baseline: Samples
    canary: Samples
    note: str  # what was kept, for the verdict


def time_matched(baseline: Samples, canary: Samples, start: float, end: float, buckets: int = BUCKETS) -> Matched:
    """The baseline sampled to the canary's distribution over [start, end) (epoch seconds), and the canary less its
    requests in spans without baseline requests."""
    if end <= start:
        raise ValueError(f"time_matched: the window must have a length, got start={start} end={end}")
    if len(canary.ts) == 0 or len(baseline.ts) == 0:
        return Matched(baseline, canary, "")
    edges = np.linspace(start, end, buckets + 1)
    base_span = _spans(baseline.ts, edges)
    canary_span = _spans(canary.ts, edges)
    base_counts = np.bincount(base_span, minlength=buckets)
    canary_counts = np.bincount(canary_span, minlength=buckets)
    comparable = (canary_counts > 0) & (base_counts > 0)
    ratio = float(np.min(base_counts[comparable] / canary_counts[comparable])) if comparable.any() else 0.0
    keep_base = np.zeros(len(baseline.ts), dtype=bool)
    for span in np.flatnonzero(comparable):
        rows = np.flatnonzero(base_span == span)
        wanted = min(len(rows), max(1, round(ratio * canary_counts[span])))
        keep_base[rows[np.unique(np.linspace(0, len(rows) - 1, wanted).round().astype(int))]] = True
    keep_canary = comparable[canary_span]
    dropped = int(len(canary.ts) - keep_canary.sum())
    note = (
        f"baseline sampled to the canary's time profile: {int(keep_base.sum())} of {len(baseline.ts)} requests "
        f"over {buckets} spans"
    )
    if dropped:
        note += f"; {dropped} canary requests in spans the baseline did not serve left out"
    return Matched(_take(baseline, keep_base), _take(canary, keep_canary), note)


def _spans(ts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The span of each timestamp; one at or past the end (a clock a little ahead) counts in the last span."""
    return np.clip(np.searchsorted(edges, ts, side="right") - 1, 0, len(edges) - 2)


def _take(samples: Samples, mask: np.ndarray) -> Samples:
    return Samples(
        ts=samples.ts[mask],
        ok=samples.ok[mask],
        latency_ms=samples.latency_ms[mask],
        quality=samples.quality[mask],
        cost_usd=samples.cost_usd[mask],
    )
