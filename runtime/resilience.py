"""A circuit breaker for calls to external services (the LLM judge, the model registry, governance).

CLOSED: calls go through; `failure_threshold` failures in a row open it. OPEN: calls are refused at once for
`reset_after_s`. HALF_OPEN: trial calls go through; `recovery_successes` in a row close it, one failure opens it
again. Defaults (`integrations` in `docs/configuration.md`): 5 failures, a 1-minute timeout, 3 successes to recover.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from llm_optimizer.errors import CircuitOpen


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_after_s: float = 60.0,
        recovery_successes: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self.recovery_successes = recovery_successes
        self._clock = clock
        self._state = BreakerState.closed
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.open and self._clock() - self._opened_at >= self.reset_after_s:
            self._state, self._successes = BreakerState.half_open, 0
        return self._state

    def check(self) -> None:
        """Raise `CircuitOpen` if a call may not go now."""
        if self.state is BreakerState.open:
            wait = self.reset_after_s - (self._clock() - self._opened_at)
            raise CircuitOpen(f"{self.name}: circuit open after {self._failures} failures; next try in {wait:.0f} s")

    def success(self) -> None:
        if self.state is BreakerState.half_open:
            self._successes += 1
            if self._successes >= self.recovery_successes:
                self._state, self._failures = BreakerState.closed, 0
        else:
            self._failures = 0

    def failure(self) -> None:
        self._failures += 1
        if self.state is BreakerState.half_open or self._failures >= self.failure_threshold:
            self._state, self._opened_at = BreakerState.open, self._clock()
