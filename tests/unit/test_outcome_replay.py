"""Counterfactual replay on any outcomes table with the documented columns, and the savings figures."""

from __future__ import annotations

import polars as pl
import pytest

from benchmarks.savings import replay_figures
from llm_optimizer.errors import ValidationFailed
from simulator.outcomes import OutcomeTable


def table() -> OutcomeTable:
    rows = []
    for prompt in range(4):
        rows.append(("svc", "t", f"p{prompt}", "strong", "x", 1.0, 10, 10, 0.010))
        rows.append(("svc", "t", f"p{prompt}", "cheap", "y", 1.0 if prompt < 3 else 0.0, 10, 10, 0.001))
        rows.append(("svc", "t", f"p{prompt}", "junk", "z", 0.0, 10, 10, 0.0001))
    rows.append(("svc", "t", "p-only-strong", "strong", "x", 1.0, 10, 10, 0.010))  # not answered by all: dropped
    columns = ["service", "task", "prompt_id", "model", "provider", "quality", "tokens_in", "tokens_out", "cost_usd"]
    return OutcomeTable(pl.DataFrame(rows, schema=columns, orient="row"))


def test_any_table_with_the_columns_works_and_incomplete_prompts_are_dropped():
    t = table()
    assert t.services == ["svc"]
    assert t.best_quality_model("svc").model == "strong"
    assert {m.model: m.prompts for m in t.models("svc")} == {"strong": 4, "cheap": 4, "junk": 4}
    assert t.outcome("svc", 3, "cheap").quality == 0.0  # prompts are ordered by id: p3 is index 3
    with pytest.raises(ValidationFailed, match="'gpt-9'"):
        t.outcome("svc", 0, "gpt-9")
    with pytest.raises(ValidationFailed, match="missing columns"):
        OutcomeTable(pl.DataFrame({"service": ["a"]}))


def test_savings_figures_known_answer():
    t = table()
    # First half on the strong model, second half on the cheap one, every prompt once per half.
    served = [("svc", p, "strong", 0.010, 1.0) for p in range(4)]
    served += [("svc", p, "cheap", 0.001, t.outcome("svc", p, "cheap").quality) for p in range(4)]
    figures = replay_figures(t, served, floor=0.75)
    assert figures["cost_reduction"] == pytest.approx(1 - 0.044 / 0.080)
    assert figures["quality_ratio"] == pytest.approx(7 / 8)
    assert figures["steady_cost_reduction"] == pytest.approx(0.9)
    assert figures["steady_quality_ratio"] == pytest.approx(0.75)
    # Hindsight: cheap keeps 0.75 >= 0.75 * 1.0 of the quality at a tenth of the cost.
    assert figures["hindsight_models"] == {"svc": "cheap"}
    assert figures["hindsight_cost_reduction"] == pytest.approx(0.9)
    assert figures["share_of_hindsight"] == pytest.approx(1.0)
    strict = replay_figures(t, served, floor=0.95)
    assert strict["hindsight_models"] == {"svc": "strong"} and strict["share_of_hindsight"] is None
