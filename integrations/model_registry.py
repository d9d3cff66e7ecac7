"""The model registry: model profiles, capabilities and prices (`GET /api/v1/models`, seed 001).

Its prices take precedence over the local catalog and its models join the candidates. When it cannot be reached,
the local catalog applies (the documented fallback) and `source` says so, for the decision to record.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from integrations.http import Unavailable, call_json
from llm_optimizer.pricing import ModelPrice, PricingCatalog
from llm_optimizer.resilience import CircuitBreaker
from llm_optimizer.settings import IntegrationSettings


class RegistryPricing(BaseModel):
    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)


class RegistryModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model_id: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    pricing: RegistryPricing
    capabilities: list[str] = Field(default_factory=list)
    region: str | None = None  # where it is hosted (for constraints' approved_regions)
    status: str = "active"  # deprecated or retired models are not offered as candidates


class CatalogView(BaseModel):
    catalog: PricingCatalog
    source: str  # where the prices came from, in words
    registry_models: list[str] = Field(default_factory=list)  # active models the registry offers
    regions: dict[str, str] = Field(default_factory=dict)  # model -> region, where the registry says


class ModelRegistryClient:
    def __init__(
        self,
        settings: IntegrationSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ):
        self.settings = settings
        self._http = httpx.Client(base_url=settings.model_registry_url, timeout=settings.timeout_s, transport=transport)
        self.breaker = CircuitBreaker(
            "model registry", failure_threshold=settings.failure_threshold, reset_after_s=settings.reset_after_s
        )
        self._clock = clock
        self._cached: tuple[float, list[RegistryModel]] | None = None

    def models(self) -> list[RegistryModel]:
        """The registry's models, fetched at most every `model_registry_refresh_s`."""
        if self._cached and self._clock() - self._cached[0] < self.settings.model_registry_refresh_s:
            return self._cached[1]
        answer = call_json(self._http, self.breaker, "GET", "/api/v1/models", retries=self.settings.retries)
        try:
            models = [RegistryModel.model_validate(m) for m in answer["models"]]
        except (KeyError, TypeError, ValidationError) as exc:
            raise Unavailable(f"the model registry's answer is not a model list ({exc})") from None
        self._cached = (self._clock(), models)
        return models

    def catalog(self, local: PricingCatalog) -> CatalogView:
        """The local catalog with the registry's prices on top; the local one alone if the registry is down."""
        try:
            models = self.models()
        except Unavailable as exc:
            return CatalogView(catalog=local, source=f"local catalog (model registry unavailable: {exc})")
        priced = {p.model: p for p in local.models}
        for m in models:
            priced[m.model_id] = ModelPrice(
                model=m.model_id,
                provider=m.provider,
                input_per_1m=m.pricing.input_per_1m,
                output_per_1m=m.pricing.output_per_1m,
            )
        return CatalogView(
            catalog=local.model_copy(update={"models": list(priced.values())}),
            source=f"model registry ({len(models)} models) over the local catalog",
            registry_models=[m.model_id for m in models if m.status == "active"],
            regions={m.model_id: m.region for m in models if m.region},
        )

    def close(self) -> None:
        self._http.close()
