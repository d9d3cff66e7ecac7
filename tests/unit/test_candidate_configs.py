"""Candidates are configs, not only models: prompt variants go through exploration, the floor and the canary like
models do (the design's prompt A/B testing), on the real dev server and Postgres."""

from __future__ import annotations

import asyncio
import time

import psycopg
from helpers.cycles import EXPENSIVE, cycle_input
from helpers.servers import settings_for
from helpers.traffic import ModelBehaviour, Traffic

from llm_optimizer.candidates import CandidateConfig, candidate_spec, offered_candidates
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.payloads import CycleRecord, CycleStatus
from llm_optimizer.resolution import Assignment
from starter.cycle import start_cycle
from storage import configs_repo
from worker import serving


def test_a_config_candidate_changes_the_live_spec_and_bad_parameters_name_the_field():
    base = ConfigSpec(model="m", provider="p", prompt_template="long few-shot {q}")
    short = CandidateConfig(name="short", prompt_template="{q}", params={"temperature": 0.2})
    spec = candidate_spec(base, "m", "p", short.changes())
    assert spec.prompt_template == "{q}" and spec.params.temperature == 0.2 and spec.model == "m"
    try:
        candidate_spec(base, "m", "p", {"params": {"temperature": 9}})
    except ValueError as err:
        assert "temperature" in str(err) and "9" in str(err)
    else:
        raise AssertionError("a temperature of 9 was accepted")
    # Models and configs are one list of candidates; a model offered twice is one candidate.
    offered = offered_candidates(["a", "a", "b"], [short])
    assert [c.name for c in offered] == ["a", "b", "short"] and offered[0].changes() == {}


async def wait_for_rollout(handle, timeout: float = 150) -> tuple[CycleRecord, list[CycleRecord]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = await handle.query("history", result_type=list[CycleRecord])
        for record in records:
            if record.outcome and (record.rollout_id or "").startswith("canary/"):
                return record, records
        await asyncio.sleep(0.5)
    status = await handle.query("status", result_type=CycleStatus)
    raise AssertionError(f"no canary finished in {timeout}s; status: {status}")


async def test_prompt_variants_are_explored_and_the_one_that_keeps_the_floor_is_promoted(
    stack, database_url, temporal_client
):
    service = "chat-prompts"
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, service, ConfigSpec(model="gpt-4o", provider="openai", prompt_template="long"))
        configs_repo.set_assignment(conn, Assignment(service=service, active_version="v1"), updated_by="test")
        conn.commit()
    settings = settings_for(stack, database_url)
    behaviours = {
        "gpt-4o": EXPENSIVE,  # the live long prompt: quality 0.90 at 0.010 per request
        "prompt:short": ModelBehaviour(quality=0.90, cost_usd=0.005, latency_ms=800),  # fewer tokens, same quality
        "prompt:terse": ModelBehaviour(quality=0.55, cost_usd=0.003, latency_ms=700),  # cheaper still, much worse
    }
    candidates = [
        CandidateConfig(name="short-prompt", prompt_template="short"),
        CandidateConfig(name="terse-prompt", prompt_template="terse"),
    ]
    async with serving(temporal_client, settings):
        with Traffic(database_url, service, behaviours, rate=600):
            handle = await start_cycle(
                temporal_client,
                settings.temporal.task_queue,
                cycle_input(service, candidate_models=[], candidate_configs=candidates),
            )
            record, records = await wait_for_rollout(handle)
            await handle.terminate("test over")
    assert record.outcome.startswith("promoted"), records
    assert "short-prompt" in record.rationale
    explored = next(r for r in records if (r.rollout_id or "").startswith("exploration/"))
    assert explored.action == "experiment" and "qualified: short-prompt" in explored.outcome
    with psycopg.connect(database_url) as conn:
        live = configs_repo.get_assignment(conn, service)
        spec = configs_repo.get_version(conn, service, live.active_version).spec
        fates = dict(
            conn.execute(
                "SELECT arm->>'key', arm->>'fate' FROM optimization_events, jsonb_array_elements(details->'arms') arm "
                "WHERE event_type = 'exploration_round' ORDER BY ts"
            ).fetchall()
        )
        first = conn.execute("SELECT action, candidates FROM decisions ORDER BY made_at LIMIT 1").fetchone()
    assert spec.prompt_template == "short" and spec.model == "gpt-4o" and live.explore == {}
    assert fates == {"short-prompt": "qualified", "terse-prompt": "below_floor"}
    assert first[0] == "experiment" and {c["key"]: c["fate"] for c in first[1]} == {
        "short-prompt": "exploring",
        "terse-prompt": "exploring",
    }
