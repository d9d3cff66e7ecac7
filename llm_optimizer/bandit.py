"""Thompson sampling over candidate configs: traffic goes to each arm in proportion to its chance of being best.

Two reward models: Beta-Bernoulli for success/failure rewards, and Normal-Inverse-Gamma (conjugate, unknown mean
and variance) for continuous rewards such as `reward()`, which combines quality, cost and latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BetaArm:
    """Beta(alpha, beta) posterior of a success rate; the uniform prior is Beta(1, 1)."""

    alpha: float = 1.0
    beta: float = 1.0

    def update(self, successes: int, failures: int) -> None:
        self.alpha += successes
        self.beta += failures

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.beta(self.alpha, self.beta, size)

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


@dataclass
class NormalArm:
    """Normal-Inverse-Gamma posterior of the mean of a continuous reward (weak prior centred on `mu0`)."""

    mu0: float = 0.0
    kappa: float = 1e-3
    a: float = 1.0
    b: float = 1.0

    def update(self, rewards: np.ndarray) -> None:
        rewards = np.asarray(rewards, dtype=float)
        n = len(rewards)
        if n == 0:
            return
        mean = float(rewards.mean())
        ss = float(((rewards - mean) ** 2).sum())
        kappa_n = self.kappa + n
        self.b += 0.5 * ss + self.kappa * n * (mean - self.mu0) ** 2 / (2 * kappa_n)
        self.mu0 = (self.kappa * self.mu0 + n * mean) / kappa_n
        self.kappa = kappa_n
        self.a += n / 2

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        variance = self.b / rng.gamma(self.a, 1.0, size)  # inverse-gamma draws
        return rng.normal(self.mu0, np.sqrt(variance / self.kappa))

    @property
    def mean(self) -> float:
        return self.mu0


def allocate(arms: dict[str, BetaArm | NormalArm], rng: np.random.Generator, draws: int = 4000) -> dict[str, float]:
    """Traffic shares: the probability, under the posteriors, that each arm is the best."""
    names = list(arms)
    samples = np.vstack([arms[name].sample(rng, draws) for name in names])
    wins = np.bincount(samples.argmax(axis=0), minlength=len(names))
    return {name: float(w / draws) for name, w in zip(names, wins, strict=True)}


def reward(
    quality: float,
    cost_usd: float,
    latency_ms: float,
    *,
    cost_scale: float,
    latency_scale: float,
    weights: tuple[float, float, float] = (1.0, 0.5, 0.2),
) -> float:
    """One request's reward: quality, minus cost and latency relative to their reference scales."""
    wq, wc, wl = weights
    return wq * quality - wc * cost_usd / cost_scale - wl * latency_ms / latency_scale
