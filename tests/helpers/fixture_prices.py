"""The tests' prices: the fixed list tests/fixtures/pricing.yaml as a price book, so that tests which check figures
do not move when the genai-prices database does (the product's own book: `llm_optimizer.pricing.price_book`)."""

from __future__ import annotations

from pathlib import Path

from llm_optimizer import yamlsafe
from llm_optimizer.pricing import PriceBook, PricingCatalog

PRICE_LIST = Path(__file__).resolve().parents[1] / "fixtures" / "pricing.yaml"


def load_catalog(path: Path = PRICE_LIST) -> PricingCatalog:
    """A static price list in the format of tests/fixtures/pricing.yaml."""
    return PricingCatalog.model_validate(yamlsafe.safe_load(path.read_text(), what=f"pricing catalog {path}"))


def fixture_book() -> PriceBook:
    return PriceBook(catalog=load_catalog(PRICE_LIST), catalog_name=PRICE_LIST.name, genai=False)
