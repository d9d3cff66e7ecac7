"""Price resolution: registry > price file > genai-prices > observed cost, each layer over the next, and a model
no layer knows stays unpriced (its events keep no cost) instead of being priced as some other model."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from genai_prices import Usage, calc_price
from helpers.fixture_prices import fixture_book

from llm_optimizer.decoding import Decoder
from llm_optimizer.errors import ValidationFailed
from llm_optimizer.pricing import ModelPrice, PriceBook, genai_prices_version, load_price_file, price_book
from llm_optimizer.settings import Settings
from simulator.samples import sample_events
from storage import prices_repo
from storage.events_repo import event_rows, land_events

MADE_UP = ["acme-reasoner-7b-ft-2026", "my-vllm-qwen-finetune"]
# Names genai-prices' own prefix and substring rules price as another model (checked below): fine-tunes and
# deployments named after their base model, which cost what their owner says, not the base model's list price.
LOOKALIKES = ["claude-3-5-sonnet-custom", "claude-3-5-haiku-latest-acme", "gemini-1.5-flash-my-tune"]


def price(model: str, input_per_1m: float, output_per_1m: float, source: str) -> ModelPrice:
    return ModelPrice(model=model, provider="p", input_per_1m=input_per_1m, output_per_1m=output_per_1m, source=source)


def write(tmp_path, text: str):
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    return path


def test_each_layer_overrides_the_next():
    file_prices = {
        "gpt-4o": price("gpt-4o", 2.0, 2.0, "price_file"),
        "house-7b": price("house-7b", 0.3, 0.3, "price_file"),
    }
    observed = {
        "gpt-4o": price("gpt-4o", 9.0, 9.0, "observed"),
        "house-7b": price("house-7b", 8.0, 8.0, "observed"),
        "acme-reasoner-7b-ft-2026": price("acme-reasoner-7b-ft-2026", 0.5, 0.5, "observed"),
    }
    static = PriceBook(price_file=file_prices, price_file_name="prices.yaml")
    book = static.with_registry({"gpt-4o": price("gpt-4o", 1.0, 1.0, "registry")}).with_observed(observed)

    assert (book.price("gpt-4o").source, book.price("gpt-4o").input_per_1m) == ("registry", 1.0)
    assert (book.price("house-7b").source, book.price("house-7b").input_per_1m) == ("price_file", 0.3)
    without_registry = static.with_observed(observed)
    assert (without_registry.price("gpt-4o").source, without_registry.price("gpt-4o").input_per_1m) == (
        "price_file",
        2.0,
    )
    # genai-prices over observed cost: gpt-4o-mini is in the database, so its (odd) observed price is not used.
    assert book.with_observed({"gpt-4o-mini": price("gpt-4o-mini", 9.0, 9.0, "observed")}).price(
        "gpt-4o-mini"
    ).source == ("genai-prices")
    assert PriceBook().with_observed(observed).price("gpt-4o").source == "genai-prices"
    # Observed cost only where nothing else knows the model.
    assert book.price("acme-reasoner-7b-ft-2026").source == "observed"
    assert static.price("acme-reasoner-7b-ft-2026") is None  # layering returned new books; `static` is unchanged
    assert static.price("gpt-4o").source == "price_file"


def test_describe_names_the_layers_in_order():
    book = (
        PriceBook(price_file={"m": price("m", 1, 1, "price_file")}, price_file_name="prices.yaml")
        .with_registry({f"r{i}": price(f"r{i}", 1, 1, "registry") for i in range(12)})
        .with_observed({f"o{i}": price(f"o{i}", 1, 1, "observed") for i in range(5)})
    )
    assert book.describe() == (
        f"prices: model registry (12 models) > price file prices.yaml (1) > genai-prices {genai_prices_version()}"
        " > observed (5 models)"
    )
    down = PriceBook().with_registry({}, note="HTTP 502 from the model registry")
    assert down.describe() == (
        f"prices: model registry unavailable (HTTP 502 from the model registry) > genai-prices {genai_prices_version()}"
    )
    assert PriceBook(genai=False).describe() == "prices: none"


@pytest.mark.parametrize(
    "model", ["gpt-5", "deepseek-chat", "claude-3-5-haiku-20241022", "claude-sonnet-4-20250514", "gpt-4o-2024-08-06"]
)
def test_a_model_known_to_genai_prices_costs_what_genai_prices_says(model):
    found = PriceBook().price(model)
    assert found is not None and found.source == "genai-prices" and found.model == model
    theirs = calc_price(Usage(input_tokens=12_345, output_tokens=678), model_ref=model)
    assert found.cost(12_345, 678) == pytest.approx(float(theirs.total_price), rel=1e-12)
    assert found.cost(12_345, 678) > 0


def test_dated_snapshots_are_priced_as_their_model():
    book = PriceBook()
    assert book.price("gpt-4o-mini-2024-07-18").input_per_1m == book.price("gpt-4o-mini").input_per_1m
    assert book.price("claude-sonnet-4-20250514").output_per_1m == book.price("claude-sonnet-4").output_per_1m


@pytest.mark.parametrize("model", MADE_UP + LOOKALIKES)
def test_a_model_genai_prices_does_not_know_exactly_is_unpriced(model):
    assert PriceBook().price(model) is None


def test_genai_prices_alone_would_price_the_lookalikes_as_other_models():
    # What the exact-name check in llm_optimizer/pricing.py guards against: without it these would be priced.
    for model in LOOKALIKES:
        assert calc_price(Usage(input_tokens=1000, output_tokens=1000), model_ref=model).total_price > 0


def test_a_price_file_prices_by_token_or_per_request(tmp_path):
    path = write(
        tmp_path,
        "my-vllm-qwen-finetune: {input_per_1m: 0.2, output_per_1m: 0.4, provider: self-hosted}\n"
        "acme-router: {per_request: 0.002}\n"
        "gpt-4o: {input_per_1m: 1, output_per_1m: 3, per_request: 0.01}\n",
    )
    prices = load_price_file(path)
    assert prices["my-vllm-qwen-finetune"] == ModelPrice(
        model="my-vllm-qwen-finetune", provider="self-hosted", input_per_1m=0.2, output_per_1m=0.4, source="price_file"
    )
    assert prices["acme-router"].provider == "unknown" and prices["acme-router"].cost(5000, 5000) == 0.002
    assert prices["gpt-4o"].cost(1_000_000, 1_000_000) == pytest.approx(4.01)


def test_the_price_file_setting_builds_the_book(tmp_path, monkeypatch):
    path = write(tmp_path, "my-vllm-qwen-finetune: {input_per_1m: 0.2, output_per_1m: 0.4}\n")
    monkeypatch.setenv("OPTIMIZER_PRICING__PRICE_FILE", str(path))
    book = price_book(Settings())
    assert book.price("my-vllm-qwen-finetune").source == "price_file"
    assert book.price("gpt-4o").source == "genai-prices"
    assert book.describe() == f"prices: price file prices.yaml (1) > genai-prices {genai_prices_version()}"
    assert price_book(Settings(pricing={"genai_prices": False})).price("gpt-4o") is None


@pytest.mark.parametrize(
    ("text", "message", "field"),
    [
        (
            "m1: {input_per_1m: -1, output_per_1m: 1}\n",
            r"model 'm1': input_per_1m = -1: .*greater than or equal to 0",
            "m1.input_per_1m",
        ),
        (
            "m1: {input_per_1m: cheap, output_per_1m: 1}\n",
            r"model 'm1': input_per_1m = 'cheap': .*valid number",
            "m1.input_per_1m",
        ),
        ("m1: {input_per_1m: .nan, output_per_1m: 1}\n", r"model 'm1': input_per_1m = nan", "m1.input_per_1m"),
        ("m1: {per_request: -0.5}\n", r"model 'm1': per_request = -0.5", "m1.per_request"),
        ("m1: {input_per_1k: 2, output_per_1m: 1}\n", r"model 'm1': input_per_1k = 2: Extra inputs", "m1.input_per_1k"),
        ("m1: {input_per_1m: 2}\n", r"model 'm1': \{'input_per_1m': 2\}: output_per_1m is missing", "m1"),
        ("m1: {provider: x}\n", r"model 'm1': .*needs input_per_1m and output_per_1m, or per_request", "m1"),
        ("m1: 0.5\n", r"model 'm1' = 0.5: expected a mapping", "m1"),
        ("- m1\n", r"expected a mapping of model names to prices, got list", "pricing.price_file"),
    ],
)
def test_a_bad_price_file_names_the_model_field_and_value(tmp_path, text, message, field):
    with pytest.raises(ValidationFailed, match=r"price file .*prices.yaml: " + message) as raised:
        load_price_file(write(tmp_path, text))
    assert raised.value.field == field


def test_a_bad_price_file_stops_the_process_that_reads_it(tmp_path):
    path = write(tmp_path, "m1: {input_per_1m: -1, output_per_1m: 1}\n")
    with pytest.raises(ValidationFailed, match="input_per_1m = -1"):
        price_book(Settings(pricing={"price_file": str(path)}))


def test_ingestion_leaves_an_unpriceable_event_without_cost_and_prices_the_rest():
    events = list(sample_events(80, seed=5))
    for i, event in enumerate(events):
        event.__dict__["cost_usd"] = None
        event.__dict__["model"] = [MADE_UP[0], "gpt-4o-mini", LOOKALIKES[0], "gpt-4o-2024-08-06"][i % 4]
    values = [("p", json.dumps(e.model_dump(mode="json", exclude_none=True)).encode(), []) for e in events]
    book = PriceBook()
    batch = Decoder(book, source="kafka", max_message_bytes=1 << 20).decode(values)
    assert batch.rows.height == 80  # the columnar path took them all
    columnar = event_rows(batch)
    one_by_one = Decoder(book, source="kafka", max_message_bytes=1 << 20, columnar_from=None).decode(values)
    assert columnar.height == len(one_by_one.events) == 80  # every event landed, none refused
    assert columnar["cost_usd"].to_list() == [e.cost_usd for e in one_by_one.events]  # both paths alike
    for event in one_by_one.events:
        expected = book.price(event.model)
        if event.model in (MADE_UP[0], LOOKALIKES[0]):
            assert expected is None and event.cost_usd is None
        else:
            assert event.cost_usd == expected.cost(event.tokens_in, event.tokens_out) and event.cost_usd > 0


def test_the_columnar_path_adds_a_per_request_price_as_model_price_cost_does():
    per_request = {
        "acme-router": ModelPrice(
            model="acme-router",
            provider="p",
            input_per_1m=0.3,
            output_per_1m=1.1,
            per_request=0.0007,
            source="price_file",
        )
    }
    book = PriceBook(price_file=per_request, price_file_name="prices.yaml", genai=False)
    events = list(sample_events(70, seed=6))
    values = []
    for event in events:
        # Nulls left out: a message with a null goes to the per-message path, and this is the columnar one's test.
        document = event.model_dump(mode="json", exclude_none=True)
        document.pop("cost_usd", None)
        document["model"] = "acme-router"
        values.append(("p", json.dumps(document).encode(), []))
    rows = Decoder(book, source="kafka", max_message_bytes=1 << 20).decode(values).rows
    assert rows.height == 70
    expected = [
        per_request["acme-router"].cost(t_in, t_out)
        for t_in, t_out in rows.select("tokens_in", "tokens_out").iter_rows()
    ]
    assert rows["cost_usd"].to_list() == expected
    assert rows.filter(pl.col("cost_usd") < 0.0007).is_empty()


def test_observed_prices_blend_the_reported_cost_per_token_across_services(db):
    now = datetime.now(UTC)
    events = []
    # acme: three events in two services with reported costs and usage; one without cost; one with a cost but no
    # usage; one before the window.
    for i, (service, tokens_in, tokens_out, cost) in enumerate(
        [
            ("chat", 1000, 200, 0.0030),
            ("chat", 3000, 500, 0.0070),
            ("search", 500, 100, 0.0008),
            ("chat", 800, 80, None),
            ("chat", None, None, 0.0050),  # a reported cost without usage: not in the per-token blend
        ]
    ):
        events.append(
            _event(f"a{i}", now - timedelta(hours=1), service, "acme-reasoner-7b-ft-2026", tokens_in, tokens_out, cost)
        )
    events.append(_event("old", now - timedelta(days=30), "chat", "acme-reasoner-7b-ft-2026", 100, 100, 5.0))
    events.append(_event("q1", now - timedelta(hours=2), "chat", "my-vllm-qwen-finetune", 100, 100, 0.001))  # one only
    events.append(_event("g1", now - timedelta(hours=2), "chat", "gpt-4o-mini", 1000, 1000, 1.0))
    events.append(_event("r1", now - timedelta(hours=2), "chat", "acme-router", 0, 0, 0.004))
    events.append(_event("r2", now - timedelta(hours=2), "chat", "acme-router", 0, 0, 0.002))
    land_events(db, events, source="test")

    observed = prices_repo.observed_prices(db, now - timedelta(days=7), now)
    acme = observed["acme-reasoner-7b-ft-2026"]
    blended = (0.0030 + 0.0070 + 0.0008) / (1200 + 3500 + 600) * 1e6
    assert acme.source == "observed" and acme.input_per_1m == pytest.approx(blended) == acme.output_per_1m
    assert acme.provider == "acme" and acme.per_request is None
    assert observed["acme-router"].per_request == pytest.approx(0.003) and observed["acme-router"].input_per_1m == 0
    assert set(prices_repo.observed_prices(db, now - timedelta(days=7), now, min_requests=2)) == {
        "acme-reasoner-7b-ft-2026",
        "acme-router",
    }
    assert set(prices_repo.observed_prices(db, now - timedelta(days=7), now, models=["my-vllm-qwen-finetune"])) == {
        "my-vllm-qwen-finetune"
    }
    assert prices_repo.observed_prices(db, now - timedelta(days=7), now, models=[]) == {}

    # For a decision: observed prices only for what the static layers cannot price (gpt-4o-mini's reported
    # $1 per 2,000 tokens does not replace its list price).
    book = prices_repo.with_observed(
        db, PriceBook(), ["gpt-4o-mini", "acme-reasoner-7b-ft-2026", "never-seen"], since=now - timedelta(days=7)
    )
    assert book.price("gpt-4o-mini").source == "genai-prices"
    assert book.price("acme-reasoner-7b-ft-2026").input_per_1m == pytest.approx(blended)
    assert book.price("never-seen") is None
    assert book.describe().endswith("> observed (1 model)")


def _event(event_id, ts, service, model, tokens_in, tokens_out, cost):
    base = next(sample_events(1, seed=7))
    return base.model_copy(
        update={
            "event_id": event_id,
            "timestamp": ts,
            "service": service,
            "model": model,
            "provider": "acme",
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "cost_usd": cost,
        }
    )


def test_the_fixture_list_is_a_book_of_its_own():
    book = fixture_book()
    assert book.price("llama-3.1-8b-instruct").source == "catalog"  # listed there, unknown to genai-prices
    assert PriceBook().price("llama-3.1-8b-instruct") is None
