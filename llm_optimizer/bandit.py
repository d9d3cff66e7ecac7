"""The Beta-Bernoulli posterior of a success rate (`BetaArm`), which the decision engine samples to order the
candidates it explores (`llm_optimizer/decision.py`).
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
