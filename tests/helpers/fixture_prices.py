"""The tests' prices: the fixed list tests/fixtures/pricing.yaml as a price book, so that tests which check figures
do not move when the genai-prices database does (the product's own book: `llm_optimizer.pricing.price_book`)."""

from __future__ import annotations

from pathlib import Path

from llm_optimizer.pricing import PriceBook, load_catalog

PRICE_LIST = Path(__file__).resolve().parents[1] / "fixtures" / "pricing.yaml"


def fixture_book() -> PriceBook:
    return PriceBook(catalog=load_catalog(PRICE_LIST), catalog_name=PRICE_LIST.name, genai=False)
