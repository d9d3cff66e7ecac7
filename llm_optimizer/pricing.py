"""The model pricing catalog: per-1M-token list prices, used to cost events that report none."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_optimizer.errors import ValidationFailed
from llm_optimizer.events import LLMEvent, describe_validation_error

Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    input_per_1m: Price
    output_per_1m: Price

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_1m + tokens_out * self.output_per_1m) / 1_000_000


class PricingCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: str
    currency: str = "USD"
    models: list[ModelPrice]

    def price(self, model: str) -> ModelPrice | None:
        return self._by_model.get(model)

    @property
    def _by_model(self) -> dict[str, ModelPrice]:
        # Cached on the instance: the catalog is frozen, so the index never goes stale.
        index = self.__dict__.get("_index")
        if index is None:
            index = {entry.model: entry for entry in self.models}
            self.__dict__["_index"] = index
        return index

    def with_cost(self, event: LLMEvent) -> LLMEvent:
        """`event` with `cost_usd` filled from the catalog when the event has none and the model is known."""
        return event if event.cost_usd is not None else self.fill_cost(event.model_copy())

    def fill_cost(self, event: LLMEvent) -> LLMEvent:
        """`with_cost` for an event the caller has just validated and not shared: filled in place, because a copy
        per event was a third of decoding."""
        if event.cost_usd is None and (entry := self.price(event.model)) is not None:
            event.__dict__["cost_usd"] = entry.cost(event.tokens_in, event.tokens_out)
            event.model_fields_set.add("cost_usd")
        return event


def load_catalog(path: Path | str | None = None) -> PricingCatalog:
    """The catalog at `path`, or the one shipped with the package."""
    if path is None:
        text = resources.files("llm_optimizer").joinpath("data/pricing.yaml").read_text()
        where = "llm_optimizer/data/pricing.yaml"
    else:
        text, where = Path(path).read_text(), str(path)
    try:
        return PricingCatalog.model_validate(yaml.safe_load(text))
    except ValidationError as exc:
        raise ValidationFailed(f"pricing catalog {where}: {describe_validation_error(exc)}") from None
