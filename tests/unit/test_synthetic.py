"""The synthetic fleet (simulator/synthetic.py): its roles hold on the generated table itself, it replays through
OutcomeTable, its hindsight model is a good one, and no price source knows its models."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from simulator.outcomes import REQUIRED, OutcomeTable
from simulator.synthetic import main, synthetic_fleet, synthetic_outcomes

SEEDS = (0, 1, 2, 5, 11)
FLOORS = (0.9, 0.95)
COLUMNS = ["service", "task", "prompt_id", "model", "provider", "quality", "tokens_in", "tokens_out", "cost_usd"]
COLUMNS += ["latency_ms", "source"]
TOL = 1e-9


def _per_model(frame: pl.DataFrame) -> pl.DataFrame:
    """Mean quality and cost per (service, model), computed from the rows, not from the generator's summary."""
    return frame.group_by("service", "model").agg(
        pl.col("quality").mean().alias("quality"), pl.col("cost_usd").mean().alias("cost"), pl.len().alias("rows")
    )


@pytest.mark.parametrize(("seed", "floor"), list(itertools.product(SEEDS, FLOORS)))
def test_roles_hold_on_the_table(seed, floor):
    fleet = synthetic_fleet(seed, floor=floor, prompts=2000)
    stats = _per_model(fleet.frame)
    assert sorted(stats["service"].unique()) == sorted(fleet.services)
    assert len(fleet.services) == 3
    for service in fleet.services:
        rows = stats.filter(pl.col("service") == service)
        roles = fleet.roles(service)
        assert set(rows["model"]) == set(roles)
        assert rows.height >= 10
        quality = dict(zip(rows["model"], rows["quality"], strict=True))
        cost = dict(zip(rows["model"], rows["cost"], strict=True))
        by_role = {role: [m for m, r in roles.items() if r == role] for role in ("start", "good", "trap", "bad")}
        by_role["dominated"] = [m for m, r in roles.items() if r == "dominated"]
        assert len(by_role["start"]) == 1
        assert len(by_role["good"]) >= 3 and len(by_role["trap"]) >= 2
        assert by_role["bad"] and by_role["dominated"]
        (start,) = by_role["start"]
        # The start is the only highest-quality model, and the dearest but for dominated ones.
        assert all(quality[m] < quality[start] for m in roles if m != start)
        ratio = {m: quality[m] / quality[start] for m in roles}
        cheapest_good = min(cost[m] for m in by_role["good"])
        for m in by_role["good"]:
            assert floor + 0.03 - TOL <= ratio[m] <= floor + 0.05 + TOL, (m, ratio[m])
            assert cost[m] < cost[start]
        for m in by_role["trap"]:
            assert floor - 0.01 - TOL <= ratio[m] <= floor - 0.005 + TOL, (m, ratio[m])
            assert cost[m] < cheapest_good, "a trap must be tempting: cheaper than every good model"
        for m in by_role["bad"]:
            assert ratio[m] <= floor - 0.1 and cost[m] < cheapest_good
        for m in by_role["dominated"]:
            assert cost[m] > cheapest_good
            assert any(cost[o] <= cost[m] and quality[o] > quality[m] for o in roles if o != m), m
        assert max(cost.values()) / min(cost.values()) >= 100
        # The generator's own summary says the same as the rows.
        for summary in (s for s in fleet.models if s.service == service):
            assert summary.quality == pytest.approx(quality[summary.model])
            assert summary.quality_ratio == pytest.approx(ratio[summary.model])
            assert summary.cost_per_request == pytest.approx(cost[summary.model])


def test_rows_look_like_real_outcomes():
    frame = synthetic_outcomes(3, prompts=1500)
    assert frame.columns == COLUMNS
    assert frame.null_count().sum_horizontal().item() == 0, "cost, tokens and latency are reported in every row"
    assert set(frame["quality"].unique()) == {0.0, 1.0}
    assert (frame["cost_usd"] > 0).all() and (frame["latency_ms"] > 0).all() and (frame["tokens_out"] >= 1).all()
    for (service, model), rows in frame.group_by("service", "model"):
        assert rows["prompt_id"].n_unique() == 1500
        # Per-request cost follows the tokens (a model's prices), not a constant.
        tokens = rows["tokens_in"].to_numpy() + rows["tokens_out"].to_numpy()
        assert np.corrcoef(tokens, rows["cost_usd"].to_numpy())[0, 1] > 0.5, (service, model)
    # A latent per-prompt difficulty: models tend to fail the same prompts (independent answers would give ~0).
    for service in frame["service"].unique():
        wide = frame.filter(pl.col("service") == service).pivot(on="model", index="prompt_id", values="quality")
        correlations = np.corrcoef(wide.drop("prompt_id").to_numpy().T)
        pairs = correlations[np.triu_indices_from(correlations, 1)]
        assert pairs.mean() > 0.15, service


def test_deterministic_per_seed():
    assert synthetic_outcomes(7, prompts=800).equals(synthetic_outcomes(7, prompts=800))
    other = synthetic_outcomes(8, prompts=800)
    assert not synthetic_outcomes(7, prompts=800).equals(other)
    assert set(synthetic_outcomes(7, prompts=800)["model"]).isdisjoint(set(other["model"]))


def test_more_models_and_services():
    fleet = synthetic_fleet(4, services=5, models_per_service=16, prompts=1000)
    assert len(fleet.services) == 5
    for service in fleet.services:
        assert len(fleet.roles(service)) == 16
    assert fleet.frame["model"].n_unique() == 5 * 16, "model names are unique across the fleet"


def test_refuses_what_it_cannot_lay_out():
    with pytest.raises(ValueError, match="at least 10"):
        synthetic_fleet(0, models_per_service=9)
    with pytest.raises(ValueError, match="floor"):
        synthetic_fleet(0, floor=0.98)
    with pytest.raises(ValueError, match="too few prompts"):
        synthetic_fleet(0, prompts=50)


@pytest.mark.parametrize("floor", FLOORS)
def test_outcome_table_replays_it_and_hindsight_is_good(floor, tmp_path: Path):
    fleet = synthetic_fleet(2, floor=floor, prompts=1200)
    path = tmp_path / "fleet.parquet"
    fleet.frame.write_parquet(path)
    table = OutcomeTable.read(path)
    assert set(REQUIRED) <= set(fleet.frame.columns)
    assert table.services == fleet.services
    rng = np.random.default_rng(0)
    for service in table.services:
        roles = fleet.roles(service)
        start = table.best_quality_model(service)
        assert roles[start.model] == "start"
        assert all(m.prompts == 1200 for m in table.models(service))
        # benchmarks/savings.py's hindsight: the cheapest model whose quality is at least floor x the start's.
        eligible = [m for m in table.models(service) if m.quality >= floor * start.quality]
        hindsight = min(eligible, key=lambda m: m.cost_per_request)
        assert roles[hindsight.model] == "good"
        assert fleet.hindsight(service).model == hindsight.model
        prompt = table.draw_prompt(service, rng)
        outcome = table.outcome(service, prompt, hindsight.model)
        assert outcome.quality in (0.0, 1.0) and outcome.cost_usd > 0 and outcome.latency_ms > 0


def test_savings_benchmark_hindsight_is_good():
    from benchmarks import savings  # part of the repository: an import error fails, never skips

    fleet = synthetic_fleet(6, floor=0.9, prompts=1000)
    table = OutcomeTable(fleet.frame)
    served = [(s, 0, table.best_quality_model(s).model, 0.01, 1.0) for s in table.services]
    hindsight = savings.replay_figures(table, served, 0.9)["hindsight_models"]
    assert {s: fleet.roles(s)[m] for s, m in hindsight.items()} == dict.fromkeys(table.services, "good")


def test_cli_writes_the_table_and_a_summary(tmp_path: Path, capsys):
    out = tmp_path / "sub" / "synthetic.parquet"
    main(["--out", str(out), "--seed", "3", "--floor", "0.95", "--prompts", "1000", "--models", "12"])
    printed = capsys.readouterr().out
    assert pl.read_parquet(out).equals(synthetic_outcomes(3, models_per_service=12, prompts=1000, floor=0.95))
    fleet = synthetic_fleet(3, models_per_service=12, prompts=1000, floor=0.95)
    for model in fleet.models:
        line = next(line for line in printed.splitlines() if model.model in line)
        assert line.split()[-1] == model.role
    assert printed.count("hindsight:") == 3


def _generated_names() -> tuple[set[str], set[str]]:
    models, providers = set(), set()
    for seed, floor in itertools.product(SEEDS, FLOORS):
        fleet = synthetic_fleet(seed, floor=floor, prompts=1000)
        models |= {m.model for m in fleet.models}
        providers |= {m.provider for m in fleet.models}
    return models, providers


def test_no_price_source_knows_the_models():
    """genai-prices and the product's lookup in it are dependencies (pyproject.toml): checked unconditionally, so a
    missing one fails instead of passing on the other sources."""
    from genai_prices import Usage, calc_price
    from genai_prices.data_snapshot import get_snapshot

    from llm_optimizer import pricing

    models, providers = _generated_names()
    snapshot = get_snapshot()
    known_providers = {p.id for p in snapshot.providers}
    assert providers.isdisjoint(known_providers)
    for model in models:
        for provider in snapshot.providers:
            assert provider.find_model(model, all_providers=snapshot.providers) is None, (model, provider.id)
        with pytest.raises(LookupError):
            calc_price(Usage(input_tokens=100, output_tokens=100), model_ref=model)
    assert [m for m in models if pricing.genai_price(m) is not None] == []
    # The hand-kept catalog: the tests' fixture (and the package's data, if it ships one again).
    root = Path(__file__).resolve().parents[2]
    catalogs = [
        c
        for c in (root / "llm_optimizer" / "data" / "pricing.yaml", root / "tests" / "fixtures" / "pricing.yaml")
        if c.exists()
    ]
    assert catalogs, "no hand-kept price catalog found to check against"
    import yaml

    for catalog in catalogs:
        entries = yaml.safe_load(catalog.read_text()).get("models", [])
        listed = {str(e.get("model", "")).lower() for e in entries}
        assert listed and {m.lower() for m in models}.isdisjoint(listed), catalog


@pytest.mark.parametrize("goods", [0, 1, 5])
def test_the_number_of_good_models_is_a_setting_and_zero_leaves_only_the_start(goods):
    fleet = synthetic_fleet(9, models_per_service=12, prompts=1500, floor=0.9, goods=goods)
    stats = _per_model(fleet.frame)
    for service in fleet.services:
        roles = fleet.roles(service)
        assert len(roles) == 12
        assert sum(role == "good" for role in roles.values()) == goods
        assert sum(role == "trap" for role in roles.values()) >= 1
        rows = stats.filter(pl.col("service") == service)
        quality = dict(zip(rows["model"], rows["quality"], strict=True))
        (start,) = [m for m, r in roles.items() if r == "start"]
        keep_floor = {m for m in roles if quality[m] / quality[start] >= 0.9 - TOL}
        goods_and_start = {m for m, r in roles.items() if r in ("start", "good")}
        if goods == 0:  # not even a dominated model keeps it
            assert keep_floor == goods_and_start == {start}
        else:  # dominated ones may: every good one is cheaper and better
            assert goods_and_start <= keep_floor <= goods_and_start | {m for m, r in roles.items() if r == "dominated"}
        hindsight = fleet.hindsight(service)
        assert hindsight.role == ("start" if goods == 0 else "good")


def test_refuses_more_good_models_than_fit():
    with pytest.raises(ValueError, match="goods must be in"):
        synthetic_fleet(0, models_per_service=10, goods=5)
