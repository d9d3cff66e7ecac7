"""prepare_canary: the candidate becomes a version derived from the live one; with a declared task type its
generation parameters are tuned from the live version's recent answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from helpers.fixture_prices import fixture_book
from helpers.servers import settings_for
from temporalio.testing import ActivityEnvironment

from activities import LoopActivitySet
from llm_optimizer.configs import ConfigSpec, GenerationParams
from llm_optimizer.events import Status
from llm_optimizer.payloads import PrepareCanaryRequest
from simulator.samples import sample_events
from storage import configs_repo
from storage.events_repo import land_events


def live(database_url: str, extra: dict) -> None:
    with psycopg.connect(database_url) as conn:
        spec = ConfigSpec(
            model="gpt-4o", provider="openai", params=GenerationParams(temperature=0.7, max_tokens=100), extra=extra
        )
        configs_repo.register(conn, "extract", spec)
        now = datetime.now(UTC)
        events = [
            e.model_copy(
                update={
                    "service": "extract",
                    "config_version": "v1",
                    "status": Status.ok,
                    "error_type": None,
                    "timestamp": now - timedelta(seconds=i),
                    "tokens_out": 100 if i % 10 == 0 else 60,  # a tenth stop at max_tokens
                }
            )
            for i, e in enumerate(sample_events(200, services=("extract",)))
        ]
        land_events(conn, events, source="test")


async def prepare(stack, database_url) -> tuple:
    loop = LoopActivitySet(settings_for(stack, database_url), fixture_book())
    request = PrepareCanaryRequest(
        service="extract", decision_id="d1", base_version="v1", model="gpt-4o-mini", provider="openai"
    )
    prepared = await ActivityEnvironment().run(loop.rollout.prepare_canary, request)
    with psycopg.connect(database_url) as conn:
        version = configs_repo.get_version(conn, "extract", prepared.version)
    return prepared, version


async def test_a_declared_task_type_tunes_the_canary(stack, database_url):
    live(database_url, {"task_type": "extraction"})
    prepared, version = await prepare(stack, database_url)
    assert prepared.spec.model == "gpt-4o-mini" and version.parent_version == "v1"
    assert prepared.spec.params.temperature == 0.0  # extraction is deterministic
    assert prepared.spec.params.max_tokens == 150  # 10% cut at 100: raised by half
    assert "10.0% of answers were cut at max_tokens 100" in version.description


async def test_without_a_task_type_only_the_model_changes(stack, database_url):
    live(database_url, {})
    prepared, _ = await prepare(stack, database_url)
    assert prepared.spec.params == GenerationParams(temperature=0.7, max_tokens=100)
