"""The model registry: model profiles, capabilities and prices (`GET /api/v1/models`, docs/integrations.md).

Its prices are the highest layer of the price book (docs/configuration.md, "Prices") and its models join the
candidates. When it cannot be reached, the rest of the book applies (the documented fallback) and the book's
`describe()` says so, for the decision to record.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from integrations.http import call_json
from llm_optimizer.errors import Unavailable
from llm_optimizer.pricing import ModelPrice, PriceBook, PricingCatalog, as_book
from llm_optimizer.settings import IntegrationSettings
from runtime.resilience import CircuitBreaker


class RegistryPricing(BaseModel):
    input_per_1m: float = Field(ge=0, allow_inf_nan=False)
    output_per_1m: float = Field(ge=0, allow_inf_nan=False)


class RegistryModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model_id: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    pricing: RegistryPricing
    capabilities: list[str] = Field(default_factory=list)
    region: str | None = None  # where it is hosted (for constraints' approved_regions)
    status: str = "active"  # deprecated or retired models are not offered as candidates


class RegistryPrices(BaseModel):
    """What the registry says for one decision: its prices as a layer of the price book, and its models."""

    prices: dict[str, ModelPrice] = Field(default_factory=dict)  # source "registry"
    unavailable: str | None = None  # why there is nothing (the registry could not be reached)
    registry_models: list[str] = Field(default_factory=list)  # active models the registry offers
    regions: dict[str, str] = Field(default_factory=dict)  # model -> region, where the registry says

    def over(self, book: PriceBook | PricingCatalog) -> PriceBook:
        """`book` with these prices on top (or a note that the registry was unavailable)."""
        return as_book(book).with_registry(self.prices, note=self.unavailable)


class CatalogView(BaseModel):
    """`catalog()`'s answer, kept for callers written before `prices()`: the book with the registry on top."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    catalog: PriceBook
    source: str  # the book's layers in words (`PriceBook.describe()`)
    registry_models: list[str] = Field(default_factory=list)
    regions: dict[str, str] = Field(default_factory=dict)


class ModelRegistryClient:
    def __init__(
        self,
        settings: IntegrationSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ):
        self.settings = settings
        self._http = httpx.Client(
            base_url=settings.model_registry_url or "", timeout=settings.timeout_s, transport=transport
        )
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

    def prices(self) -> RegistryPrices:
        """The registry's prices and models; empty, with the reason, if the registry is down."""
        try:
            models = self.models()
        except Unavailable as exc:
            return RegistryPrices(unavailable=str(exc))
        return RegistryPrices(
            prices={
                m.model_id: ModelPrice(
                    model=m.model_id,
                    provider=m.provider,
                    input_per_1m=m.pricing.input_per_1m,
                    output_per_1m=m.pricing.output_per_1m,
                    source="registry",
                )
                for m in models
            },
            registry_models=[m.model_id for m in models if m.status == "active"],
            regions={m.model_id: m.region for m in models if m.region},
        )

    def catalog(self, local: PriceBook | PricingCatalog) -> CatalogView:
        """`local` with the registry's prices on top; `local` alone if the registry is down."""
        answer = self.prices()
        book = answer.over(local)
        return CatalogView(
            catalog=book, source=book.describe(), registry_models=answer.registry_models, regions=answer.regions
        )

    def close(self) -> None:
        self._http.close()
