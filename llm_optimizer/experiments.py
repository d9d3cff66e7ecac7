"""A/B evaluation of two variants (for example two prompt templates) on a success rate.

Fixed split until significance: a two-proportion z-test once both arms have the minimum sample, a
sample-ratio-mismatch check (chi-square) that stops an experiment whose traffic split is broken, and a maximum
duration after which the experiment ends without a winner.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llm_optimizer.stats import chi_square_srm, two_proportion_z


class ArmCounts(BaseModel):
    model_config = ConfigDict(frozen=True)

    requests: int = Field(ge=0)
    successes: int = Field(ge=0)

    @property
    def rate(self) -> float:
        return self.successes / self.requests if self.requests else 0.0


class ABPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    treatment_share: float = Field(default=0.5, gt=0, lt=1)
    min_samples: int = Field(default=1000, gt=0)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    srm_alpha: float = Field(default=0.001, gt=0, lt=0.5)
    max_duration_s: float = Field(default=7 * 86400, gt=0)


class ABResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["running", "treatment_wins", "control_wins", "no_difference", "sample_ratio_mismatch"]
    control_rate: float
    treatment_rate: float
    p_value: float | None = None
    srm_p_value: float | None = None
    reason: str


def evaluate_ab(control: ArmCounts, treatment: ArmCounts, policy: ABPolicy, elapsed_s: float) -> ABResult:
    rates = {"control_rate": control.rate, "treatment_rate": treatment.rate}
    total = control.requests + treatment.requests
    srm_p = None
    if total >= 100:
        srm = chi_square_srm(
            [control.requests, treatment.requests], [1 - policy.treatment_share, policy.treatment_share]
        )
        srm_p = srm.p_value
        if srm_p < policy.srm_alpha:
            return ABResult(
                status="sample_ratio_mismatch",
                srm_p_value=srm_p,
                reason=f"traffic split {treatment.requests}/{total} does not match {policy.treatment_share:.0%} "
                f"(chi-square p={srm_p:.2g}): the experiment is not trustworthy",
                **rates,
            )
    if min(control.requests, treatment.requests) < policy.min_samples:
        if elapsed_s >= policy.max_duration_s:
            return ABResult(
                status="no_difference",
                srm_p_value=srm_p,
                reason="maximum duration reached before the minimum sample",
                **rates,
            )
        return ABResult(
            status="running", srm_p_value=srm_p, reason=f"waiting for {policy.min_samples} requests per arm", **rates
        )
    test = two_proportion_z(control.successes, control.requests, treatment.successes, treatment.requests)
    if test.p_value < policy.alpha:
        winner = "treatment_wins" if treatment.rate > control.rate else "control_wins"
        return ABResult(
            status=winner,
            p_value=test.p_value,
            srm_p_value=srm_p,
            reason=f"success rate {control.rate:.3f} (control) vs {treatment.rate:.3f} (treatment), "
            f"p={test.p_value:.2g}",
            **rates,
        )
    if elapsed_s >= policy.max_duration_s:
        return ABResult(
            status="no_difference",
            p_value=test.p_value,
            srm_p_value=srm_p,
            reason=f"no significant difference by the maximum duration (p={test.p_value:.2g})",
            **rates,
        )
    return ABResult(status="running", p_value=test.p_value, srm_p_value=srm_p, reason="not significant yet", **rates)
