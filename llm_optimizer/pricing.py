"""Model prices, resolved through layers in a documented order (docs/configuration.md, "Prices").

Highest first: the model registry integration, the user's price file (`pricing.price_file`), a static price list
(the tests' fixture), the genai-prices database, and observed cost (what events of the model reported themselves).
The first layer that knows a model prices it, and the price says which layer it came from (`ModelPrice.source`).
A model no layer knows has no price: its events stay without cost and nothing fails.

`price_book(settings)` builds the static layers once per process; a decision adds its own registry and observed
prices with `with_registry` / `with_observed`, which return a new book and leave the shared one as it was.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llm_optimizer import yamlsafe
from llm_optimizer.errors import ValidationFailed
from llm_optimizer.events import LLMEvent, describe_validation_error

if TYPE_CHECKING:
    from llm_optimizer.settings import Settings

Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PriceSource = Literal["registry", "price_file", "catalog", "genai-prices", "observed"]


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    input_per_1m: Price = 0.0
    output_per_1m: Price = 0.0
    per_request: Price | None = None  # a flat amount per request, on top of the token prices
    source: PriceSource = "catalog"

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        # The token part is computed exactly as before per_request existed, so that columnar costing (which adds
        # per_request as a separate step) and this agree to the last bit.
        tokens = (tokens_in * self.input_per_1m + tokens_out * self.output_per_1m) / 1_000_000
        return tokens if self.per_request is None else tokens + self.per_request


class Prices(Protocol):
    """What ingestion and the loop need of a price source: a `PriceBook`, or a bare `PricingCatalog`."""

    def price(self, model: str) -> ModelPrice | None: ...

    def with_cost(self, event: LLMEvent) -> LLMEvent: ...

    def fill_cost(self, event: LLMEvent) -> LLMEvent: ...


class _Costing:
    """`with_cost` and `fill_cost` on top of a `price` method."""

    def price(self, model: str) -> ModelPrice | None:
        raise NotImplementedError

    def with_cost(self, event: LLMEvent) -> LLMEvent:
        """`event` with `cost_usd` filled when the event has none and the model can be priced."""
        return event if event.cost_usd is not None else self.fill_cost(event.model_copy())

    def fill_cost(self, event: LLMEvent) -> LLMEvent:
        """`with_cost` for an event the caller has just validated and not shared: filled in place, because a copy
        per event was a third of decoding."""
        if event.tokens_in is None or event.tokens_out is None:  # unknown usage: the cost is unknown, not zero
            return event
        if event.cost_usd is None and (entry := self.price(event.model)) is not None:
            event.__dict__["cost_usd"] = entry.cost(event.tokens_in, event.tokens_out)
            event.model_fields_set.add("cost_usd")
        return event


class PricingCatalog(_Costing, BaseModel):
    """A static price list (the format of tests/fixtures/pricing.yaml): `as_of`, `currency`, `models`."""

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


# --- the user's price file ---------------------------------------------------------------------------------------


class _PriceFileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_per_1m: Price | None = None
    output_per_1m: Price | None = None
    per_request: Price | None = None
    provider: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _priced(self) -> _PriceFileEntry:
        tokens = (self.input_per_1m is not None, self.output_per_1m is not None)
        if tokens == (False, False) and self.per_request is None:
            raise ValueError("needs input_per_1m and output_per_1m, or per_request")
        if tokens in ((True, False), (False, True)):
            missing = "output_per_1m" if tokens[0] else "input_per_1m"
            raise ValueError(f"{missing} is missing: token prices come in pairs (input_per_1m and output_per_1m)")
        return self


def load_price_file(path: Path | str) -> dict[str, ModelPrice]:
    """The user's price file: a YAML mapping model -> {input_per_1m, output_per_1m} or {per_request}, `provider`
    optional. A bad entry raises `ValidationFailed` naming the file, the model, the field and the value."""
    path = Path(path)
    try:
        data = yamlsafe.safe_load(path.read_text(), what=f"price file {path}")
    except OSError as exc:
        raise ValidationFailed(
            f"price file {path}: cannot be read ({exc.strerror})", field="pricing.price_file"
        ) from None
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"price file {path}: not YAML ({exc})", field="pricing.price_file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationFailed(
            f"price file {path}: expected a mapping of model names to prices, got {type(data).__name__}",
            field="pricing.price_file",
        )
    prices: dict[str, ModelPrice] = {}
    for model, entry in data.items():
        if not isinstance(model, str) or not model.strip():
            raise ValidationFailed(f"price file {path}: model name {model!r} is not a name", field="model", value=model)
        if not isinstance(entry, dict):
            raise ValidationFailed(
                f"price file {path}: model {model!r} = {entry!r}: expected a mapping such as "
                "{input_per_1m: 0.5, output_per_1m: 1.5} or {per_request: 0.002}",
                field=model,
                value=entry,
            )
        try:
            parsed = _PriceFileEntry.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            if first["loc"]:  # one field's value is wrong: say which and what it was
                field = ".".join(str(p) for p in first["loc"])
                problem, value = describe_validation_error(exc), first.get("input")
            else:  # the entry as a whole (a missing price): the message names the fields
                field, value = None, entry
                problem = f"{entry!r}: {first['msg'].removeprefix('Value error, ')}"
            raise ValidationFailed(
                f"price file {path}: model {model!r}: {problem}",
                field=f"{model}.{field}" if field else model,
                value=value,
            ) from None
        prices[model] = ModelPrice(
            model=model,
            provider=parsed.provider or "unknown",
            input_per_1m=parsed.input_per_1m or 0.0,
            output_per_1m=parsed.output_per_1m or 0.0,
            per_request=parsed.per_request,
            source="price_file",
        )
    return prices


# --- genai-prices ------------------------------------------------------------------------------------------------

# What may follow a known model name and still name the same model: dated snapshots (-20241022, -2024-10-22,
# @20250514), numbered revisions (-001, -0125), -latest, -preview, -instruct and -vN.N tags. Anything else (a
# fine-tune's or a deployment's own suffix) makes a different model, which genai-prices' prefix and substring
# patterns would otherwise price as its base model.
_SAME_MODEL_TAIL = re.compile(
    r"(?:[-@](?:\d{8}|\d{4}-\d{2}-\d{2}|\d{2,4}|latest|preview|instruct|v\d+(?:\.\d+)*(?::\d+)?))+$"
)


def _literal_names(clause: Any) -> set[str]:
    """Every literal string a genai-prices match clause compares with (equals, starts_with, ...)."""
    names = set()
    for attr in ("equals", "starts_with", "ends_with", "contains"):
        if isinstance(value := getattr(clause, attr, None), str):
            names.add(value.lower())
    for attr in ("or_", "and_"):
        for sub in getattr(clause, attr, None) or ():
            names |= _literal_names(sub)
    return names


def _flat(price: Any) -> Decimal | None:
    """A genai-prices price as one figure: tiered prices (long prompts cost more) at their base tier."""
    if price is None:
        return None
    return price if isinstance(price, Decimal) else getattr(price, "base", None)


def genai_price(model: str, when: datetime | None = None) -> ModelPrice | None:
    """`model`'s price in the genai-prices database on `when` (default now), or None when the database does not
    know this exact model (see `_SAME_MODEL_TAIL`) or prices it by something other than tokens or requests."""
    from genai_prices.data_snapshot import get_snapshot

    ref = model.strip().lower()
    try:
        provider, info = get_snapshot().find_provider_model(ref, None, None, None)
    except (LookupError, ValueError):
        return None
    names = _literal_names(info.match) | {info.id.lower()}
    if ref not in names and _SAME_MODEL_TAIL.sub("", ref) not in names:
        return None
    prices = info.get_prices(when or datetime.now(UTC))
    tokens_in, tokens_out = _flat(prices.input_mtok), _flat(prices.output_mtok)
    per_thousand = _flat(prices.requests_kcount)
    if tokens_in is None and tokens_out is None and per_thousand is None:
        return None
    return ModelPrice(
        model=model,
        provider=provider.id,
        input_per_1m=float(tokens_in or 0),
        output_per_1m=float(tokens_out or 0),
        per_request=float(per_thousand / 1000) if per_thousand is not None else None,
        source="genai-prices",
    )


def genai_prices_version() -> str:
    from genai_prices import __version__

    return __version__


# --- the book ----------------------------------------------------------------------------------------------------

_MEMO_SIZE = 10_000  # distinct models remembered; events name few, but their names come from outside
_MEMO_TTL_S = 3_600.0  # genai-prices prices are dated: look again at least hourly


class PriceBook(_Costing):
    """Prices resolved through the layers, highest first: registry > price file > catalog > genai-prices >
    observed. Immutable: `with_registry` and `with_observed` return a new book."""

    def __init__(
        self,
        *,
        registry: Mapping[str, ModelPrice] | None = None,
        registry_note: str | None = None,
        price_file: Mapping[str, ModelPrice] | None = None,
        price_file_name: str | None = None,
        catalog: PricingCatalog | None = None,
        catalog_name: str | None = None,
        genai: bool = True,
        observed: Mapping[str, ModelPrice] | None = None,
    ):
        self.registry = dict(registry or {})
        self.registry_note = registry_note  # why the registry gave nothing (unavailable), for describe()
        self.price_file = dict(price_file or {})
        self.price_file_name = price_file_name
        self.catalog = catalog
        self.catalog_name = catalog_name
        self.genai = genai
        self.observed = dict(observed or {})
        self._memo: dict[str, ModelPrice | None] = {}
        self._memo_at = time.monotonic()

    def _replace(self, **changes: Any) -> PriceBook:
        fields = dict(
            registry=self.registry,
            registry_note=self.registry_note,
            price_file=self.price_file,
            price_file_name=self.price_file_name,
            catalog=self.catalog,
            catalog_name=self.catalog_name,
            genai=self.genai,
            observed=self.observed,
        )
        return PriceBook(**(fields | changes))

    def with_registry(self, prices: Mapping[str, ModelPrice], *, note: str | None = None) -> PriceBook:
        """This book under the model registry's prices (the highest layer); `note` says why there are none."""
        return self._replace(registry=prices, registry_note=note)

    def with_observed(self, prices: Mapping[str, ModelPrice]) -> PriceBook:
        """This book over observed prices (the lowest layer: used only where nothing else prices a model)."""
        return self._replace(observed=prices)

    def price(self, model: str) -> ModelPrice | None:
        now = time.monotonic()
        if now - self._memo_at > _MEMO_TTL_S or len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
            self._memo_at = now
        try:
            return self._memo[model]
        except KeyError:
            found = self._memo[model] = self._resolve(model)
            return found

    def _resolve(self, model: str) -> ModelPrice | None:
        if (found := self.registry.get(model)) is not None:
            return found
        if (found := self.price_file.get(model)) is not None:
            return found
        if self.catalog is not None and (found := self.catalog.price(model)) is not None:
            return found
        if self.genai and (found := genai_price(model)) is not None:
            return found
        return self.observed.get(model)

    def describe(self) -> str:
        """The layers in words, highest first, for a decision's checks."""
        layers = []
        if self.registry:
            layers.append(f"model registry ({_models(len(self.registry))})")
        elif self.registry_note:
            layers.append(f"model registry unavailable ({self.registry_note})")
        if self.price_file_name is not None:
            layers.append(f"price file {self.price_file_name} ({len(self.price_file)})")
        if self.catalog is not None:
            layers.append(f"price list {self.catalog_name or 'catalog'} ({len(self.catalog.models)})")
        if self.genai:
            layers.append(f"genai-prices {genai_prices_version()}")
        if self.observed:
            layers.append(f"observed ({_models(len(self.observed))})")
        return "prices: " + (" > ".join(layers) if layers else "none")


def _models(count: int) -> str:
    return f"{count} model" if count == 1 else f"{count} models"


def as_book(prices: PriceBook | PricingCatalog) -> PriceBook:
    """`prices` as a book: a bare static list becomes a book with that list as its only layer."""
    return prices if isinstance(prices, PriceBook) else PriceBook(catalog=prices, genai=False)


def price_book(settings: Settings | None = None) -> PriceBook:
    """The process's price book from `settings.pricing`: the one place where workers, the API and backfill get
    their prices. Raises `ValidationFailed` naming the model, field and value if the price file is wrong."""
    if settings is None:
        from llm_optimizer.settings import Settings

        settings = Settings()
    pricing = settings.pricing
    path = pricing.price_file
    return PriceBook(
        price_file=load_price_file(path) if path is not None else None,
        price_file_name=path.name if path is not None else None,
        genai=pricing.genai_prices,
    )
