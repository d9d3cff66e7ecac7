"""The fleet simulator: requests follow the registry's split and each incident changes what it should."""

from __future__ import annotations

import polars as pl
import psycopg
import pytest

from llm_optimizer.configs import ConfigSpec
from llm_optimizer.evaluation import EvaluationInput, build
from llm_optimizer.resolution import Assignment
from llm_optimizer.settings import Settings
from simulator.fleet import Fleet, Incident
from simulator.outcomes import OutcomeTable
from storage import configs_repo
from storage.config_client import ConfigClient
from storage.db import Database

COLUMNS = ["service", "task", "prompt_id", "model", "provider", "quality", "tokens_in", "tokens_out", "cost_usd"]


@pytest.fixture
def fleet(database_url):
    rows = []
    for i in range(50):
        rows.append(("svc", "t", f"p{i}", "a", "pa", 1.0, 100, 50, 0.01))
        rows.append(("svc", "t", f"p{i}", "b", "pb", 0.5, 100, 50, 0.001))
    table = OutcomeTable(pl.DataFrame(rows, schema=COLUMNS, orient="row"))
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, "svc", ConfigSpec(model="a", provider="pa"))
        configs_repo.register(conn, "svc", ConfigSpec(model="b", provider="pb"))
        configs_repo.set_assignment(
            conn, Assignment(service="svc", active_version="v1", canary_version="v2", canary_percent=25), updated_by="t"
        )
        conn.commit()
    pool = Database(Settings(database={"url": database_url}), name="test-fleet")
    yield table, ConfigClient(pool)
    pool.close()


def test_requests_follow_the_split_and_carry_the_real_outcome(fleet):
    table, client = fleet
    simulator = Fleet(table, client, seed=1, error_rate=0)
    events = [simulator.request("svc", 1.0) for _ in range(2000)]
    canary = [e for e in events if e.config_version == "v2"]
    assert 0.22 < len(canary) / len(events) < 0.28
    assert all(e.model == "b" and e.quality_score == 0.5 and e.cost_usd == 0.001 for e in canary)
    assert all(e.variant == "canary" for e in canary)


@pytest.mark.parametrize(
    ("incident", "check"),
    [
        (Incident("latency_spike", 0, 10, "pa", 5.0), lambda base, hit: hit.latency_ms > 2.5 * base.latency_ms),
        (Incident("quality_drop", 0, 10, "a", 0.5), lambda base, hit: hit.quality_score == 0.5),
        (Incident("price_change", 0, 10, "a", 3.0), lambda base, hit: hit.cost_usd == pytest.approx(0.03)),
        (Incident("budget_overrun", 0, 10, "svc", 4.0), lambda base, hit: hit.tokens_out == 200),
    ],
)
def test_each_incident_changes_what_it_targets_while_active(fleet, database_url, incident, check):
    table, _ = fleet
    with psycopg.connect(database_url) as conn:
        configs_repo.set_assignment(conn, Assignment(service="svc", active_version="v1"), updated_by="t")
        conn.commit()
    pool = Database(Settings(database={"url": database_url}), name="test-fleet")
    client = ConfigClient(pool)  # a fresh cache: everything on v1 (model a)
    base = Fleet(table, client, seed=2, error_rate=0).request("svc", 5.0)
    hit = Fleet(table, client, seed=2, error_rate=0, incidents=[incident]).request("svc", 5.0)
    after = Fleet(table, client, seed=2, error_rate=0, incidents=[incident]).request("svc", 50.0)
    assert check(base, hit)
    assert after.model_dump(exclude={"timestamp"}) == base.model_dump(exclude={"timestamp"})
    pool.close()


def test_error_burst(fleet):
    table, client = fleet
    fleet_ = Fleet(table, client, seed=3, error_rate=0, incidents=[Incident("error_burst", 0, 10, "svc", 0.5)])
    errors = sum(fleet_.request("svc", 1.0).status != "ok" for _ in range(400))
    assert 150 < errors < 250


def test_text_services_send_answers_that_the_reference_evaluator_grades_like_the_outcomes(fleet):
    table, client = fleet
    graded_table = OutcomeTable(table.frame.with_columns(pl.col("quality").floor()))  # a: 1 (right), b: 0 (wrong)
    simulator = Fleet(graded_table, client, seed=4, error_rate=0, text_services=frozenset({"svc"}))
    events = [simulator.request("svc", 1.0) for _ in range(300)]
    grader = build("reference", {"metrics": ["exact_match"], "extract": r"-?\d+(?:\.\d+)?"})
    for event in events:
        assert event.quality_score is None and event.response_text and event.reference_text
        graded = grader.evaluate(EvaluationInput(response=event.response_text, reference=event.reference_text))
        assert graded.overall == (1.0 if event.model == "a" else 0.0)  # the real grade, from the texts alone
