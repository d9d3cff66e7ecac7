"""A/B experiments: the evaluation against known answers, and the ABExperiment workflow on the real stack."""

from __future__ import annotations

import psycopg
import pytest
from helpers.servers import settings_for
from helpers.traffic import ModelBehaviour, Traffic

from llm_optimizer.configs import ConfigSpec
from llm_optimizer.experiments import ABPolicy, ArmCounts, evaluate_ab
from llm_optimizer.payloads import ExperimentInput, ExperimentOutcome
from llm_optimizer.resolution import Assignment
from llm_optimizer.stats import two_proportion_z
from storage import configs_repo
from worker import serving

POLICY = ABPolicy(min_samples=1000, max_duration_s=3600)


def test_running_until_the_minimum_sample_then_a_winner():
    assert (
        evaluate_ab(ArmCounts(requests=500, successes=300), ArmCounts(requests=500, successes=400), POLICY, 60).status
        == "running"
    )
    control, treatment = ArmCounts(requests=2000, successes=1200), ArmCounts(requests=2000, successes=1300)
    result = evaluate_ab(control, treatment, POLICY, 60)
    assert result.status == "treatment_wins"
    assert result.p_value == pytest.approx(two_proportion_z(1200, 2000, 1300, 2000).p_value)
    assert evaluate_ab(treatment, control, POLICY, 60).status == "control_wins"


def test_no_difference_by_the_maximum_duration():
    same = ArmCounts(requests=2000, successes=1200)
    assert evaluate_ab(same, same, POLICY, 60).status == "running"
    assert evaluate_ab(same, same, POLICY, 3600).status == "no_difference"
    small = ArmCounts(requests=10, successes=5)
    assert evaluate_ab(small, small, POLICY, 3600).status == "no_difference"


def test_a_broken_split_is_a_sample_ratio_mismatch():
    result = evaluate_ab(ArmCounts(requests=6000, successes=3000), ArmCounts(requests=4000, successes=2600), POLICY, 60)
    assert result.status == "sample_ratio_mismatch" and result.srm_p_value < 0.001


async def test_the_better_prompt_wins_and_serves_all_traffic(stack, database_url, temporal_client):
    service = "ab-chat"
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, service, ConfigSpec(model="gpt-4o", provider="openai", prompt_template="A: {q}"))
        configs_repo.register(conn, service, ConfigSpec(model="gpt-4o", provider="openai", prompt_template="B: {q}"))
        configs_repo.set_assignment(conn, Assignment(service=service, active_version="v1"), updated_by="test")
        conn.commit()
    settings = settings_for(stack, database_url)
    behaviours = {"v1": ModelBehaviour(quality=0.60), "v2": ModelBehaviour(quality=0.75)}
    async with serving(temporal_client, settings):
        with Traffic(database_url, service, behaviours, rate=800):
            outcome = await temporal_client.execute_workflow(
                "ABExperiment",
                ExperimentInput(
                    experiment_id=f"ab/{service}/v1-v2",
                    service=service,
                    control_version="v1",
                    treatment_version="v2",
                    policy=ABPolicy(min_samples=300, max_duration_s=120),
                    check_every_s=2,
                ),
                id=f"ab/{service}/v1-v2",
                task_queue=settings.temporal.task_queue,
                result_type=ExperimentOutcome,
            )
    assert outcome.result.status == "treatment_wins", outcome
    assert outcome.live_version == "v2"
    with psycopg.connect(database_url) as conn:
        assert configs_repo.get_assignment(conn, service) == Assignment(service=service, active_version="v2")
        assert conn.execute("SELECT status FROM experiments").fetchone() == ("treatment_wins",)
