"""A fleet of LLM-backed services: one event per request, with the config resolved through the registry.

Quality, tokens and cost come from the outcomes table (counterfactual replay); latency and errors from a
heavy-tailed model per provider; scheduled incidents change behaviour for a while.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from llm_optimizer.events import LLMEvent
from simulator.outcomes import OutcomeTable
from storage.config_client import ConfigClient


@dataclass(frozen=True)
class Incident:
    """Between `start_s` and `end_s` of the run: a provider slows down, a service errs, a model gets worse."""

    kind: Literal["latency_spike", "error_burst", "quality_drop", "price_change", "budget_overrun"]
    start_s: float
    end_s: float
    # provider (latency_spike), service (error_burst, budget_overrun), model (quality_drop, price_change)
    target: str
    # latency multiplier, error rate, quality multiplier, price multiplier, output-length multiplier (longer answers
    # cost more: a budget overrun)
    factor: float

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s

    def describe(self) -> str:
        """What the incident does, in words."""
        return {
            "latency_spike": f"latency spike: {self.target} answers {self.factor:g}x slower",
            "error_burst": f"error burst: {self.factor:.0%} of {self.target}'s requests fail",
            "quality_drop": f"quality drop: {self.target} answers at {self.factor:g}x its quality",
            "price_change": f"price change: {self.target} costs {self.factor:g}x",
            "budget_overrun": f"budget overrun: {self.target}'s answers grow {self.factor:g}x longer",
        }[self.kind]


@dataclass
class LatencyModel:
    """Lognormal time to first token by provider plus a per-output-token time; sigma makes the tail heavy."""

    sigma: float = 0.45
    per_token_ms: float = 8.0

    def base_ms(self, provider: str, model: str) -> float:
        # Stable per model, 250-1000 ms, so models differ the same way in every run.
        digest = hashlib.sha256(f"{provider}/{model}".encode()).digest()
        return 250 + digest[0] / 255 * 750

    def sample(self, rng: np.random.Generator, provider: str, model: str, tokens_out: int) -> tuple[float, float]:
        ttft = self.base_ms(provider, model) * float(rng.lognormal(0, self.sigma))
        return ttft + tokens_out * self.per_token_ms * float(rng.lognormal(0, 0.2)), ttft


@dataclass
class Fleet:
    table: OutcomeTable
    configs: ConfigClient
    seed: int = 0
    error_rate: float = 0.01
    timeout_ms: float = 30_000
    latency: LatencyModel = field(default_factory=LatencyModel)
    incidents: list[Incident] = field(default_factory=list)
    # Services whose events carry the answer and the reference instead of a quality score: an evaluator scores them.
    text_services: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def request(self, service: str, t: float, now: datetime | None = None) -> LLMEvent:
        """The event of one request to `service` at `t` seconds into the run."""
        key = f"user-{int(self.rng.integers(50_000))}"
        resolved = self.configs.resolve(service, key)
        model, provider = resolved.spec.model, resolved.spec.provider
        prompt = self.table.draw_prompt(service, self.rng)
        outcome = self.table.outcome(service, prompt, model)
        active = [i for i in self.incidents if i.active(t)]

        tokens_out = outcome.tokens_out
        latency, ttft = self.latency.sample(self.rng, provider, model, tokens_out)
        if outcome.latency_ms is not None:
            latency = max(outcome.latency_ms, ttft)
        error_rate, quality, cost = self.error_rate, outcome.quality, outcome.cost_usd
        for incident in active:
            if incident.kind == "latency_spike" and incident.target == provider:
                latency, ttft = latency * incident.factor, ttft * incident.factor
            elif incident.kind == "error_burst" and incident.target == service:
                error_rate = incident.factor
            elif incident.kind == "quality_drop" and incident.target == model:
                quality *= incident.factor
            elif incident.kind == "price_change" and incident.target == model:
                cost *= incident.factor
            elif incident.kind == "budget_overrun" and incident.target == service:
                cost *= incident.factor
                tokens_out = int(tokens_out * incident.factor)

        status, error_type = "ok", None
        if latency > self.timeout_ms:
            status, error_type, latency = "timeout", "client_timeout", self.timeout_ms
        elif self.rng.random() < error_rate:
            status, error_type = "error", "provider_error"
        return LLMEvent(
            event_id=str(uuid.UUID(int=int(self.rng.integers(2**62)) << 64 | int(self.rng.integers(2**62)))),
            timestamp=now or datetime.now(UTC),
            service=service,
            model=model,
            provider=provider,
            config_version=resolved.version,
            variant=resolved.variant,
            latency_ms=round(latency, 1),
            ttft_ms=round(min(ttft, latency), 1),
            tokens_in=outcome.tokens_in,
            tokens_out=tokens_out if status == "ok" else 0,
            cost_usd=cost if status == "ok" else 0.0,
            status=status,
            error_type=error_type,
            quality_score=min(max(quality, 0.0), 1.0) if status == "ok" and service not in self.text_services else None,
            request_key=key,
            attributes={"prompt": prompt},
            **(answer_texts(prompt, quality) if status == "ok" and service in self.text_services else {}),
        )


def answer_texts(prompt: object, quality: float) -> dict[str, str]:
    """A worked answer whose final number is right exactly when the real outcome was (quality >= 0.5), and the
    reference number: the outcome table has no texts, so these stand in for them, faithful to its grades."""
    digest = hashlib.sha256(str(prompt).encode()).digest()
    gold = int.from_bytes(digest[:3], "big") % 1000
    given = gold if quality >= 0.5 else gold + 1 + digest[3] % 9
    return {
        "request_text": f"Solve problem {prompt} and end with the final number.",
        "response_text": f"Working through problem {prompt} step by step, the final answer is {given}",
        "reference_text": str(gold),
    }
