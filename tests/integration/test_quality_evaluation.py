"""The QualityEvaluation workflow on the real stack: events without a quality score get one from the service's
evaluator; texts are stored only when allowed, redacted; a judge outage opens its circuit and leaves the events for
a later round, which scores them once the judge is back."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from helpers.scripted_http import Answer, chat_answer, scripted_server
from helpers.servers import settings_for

from llm_optimizer.decoding import DecodedBatch
from llm_optimizer.evaluation.texts import TextPolicy
from llm_optimizer.events import LLMEvent
from llm_optimizer.payloads import EvaluationRound, QualityReport
from storage.events_repo import land
from worker import serving


def event(service: str, i: int, **fields) -> LLMEvent:
    return LLMEvent(
        event_id=f"{service}-{i}",
        timestamp=datetime.now(UTC) - timedelta(seconds=30),
        service=service,
        model="gpt-4o-mini",
        provider="openai",
        config_version="v1",
        latency_ms=300,
        **fields,
    )


def land_events(database_url: str, events: list[LLMEvent], store_text: bool) -> None:
    with psycopg.connect(database_url) as conn:
        land(conn, DecodedBatch(events=events), source="test", texts=TextPolicy(store=store_text))


async def run_round(client, settings, services: list[str]) -> list[QualityReport]:
    return await client.execute_workflow(
        "QualityEvaluation",
        EvaluationRound(services=services),
        id=f"quality-evaluation/{uuid.uuid4().hex[:8]}",
        task_queue=settings.temporal.task_queue,
        result_type=list[QualityReport],
    )


async def test_events_get_scores_from_the_configured_evaluator(stack, database_url, temporal_client):
    qa = [
        event("qa", i, request_text=f"ask me@example.com question {i}", response_text=answer, reference_text="B")
        for i, answer in enumerate(["B", "b.", "C", "The answer is B"])
    ]
    scored_by_app = event("qa", 9, response_text="B", reference_text="B", quality_score=0.3)
    feedback = [event("chat", i, user_feedback=f) for i, f in enumerate([1.0, -1.0])]
    feedback.append(event("chat", 5, attributes={"rating": 4}))
    land_events(database_url, [*qa, scored_by_app, *feedback], store_text=True)
    settings = settings_for(
        stack,
        database_url,
        evaluation={
            "services": {
                "qa": {"evaluator": "reference", "options": {"metrics": ["exact_match"]}},
                "chat": {"evaluator": "feedback"},
            }
        },
    )
    async with serving(temporal_client, settings):
        reports = await run_round(temporal_client, settings, ["qa", "chat"])
        again = await run_round(temporal_client, settings, ["qa", "chat"])
    assert [(r.service, r.evaluated, r.skipped) for r in reports] == [("qa", 4, 0), ("chat", 3, 0)]
    assert [(r.evaluated, r.skipped) for r in again] == [(0, 0), (0, 0)]  # nothing is scored twice
    with psycopg.connect(database_url) as conn:
        scores = dict(conn.execute("SELECT event_id, quality_score FROM events").fetchall())
        stored = conn.execute("SELECT request_text FROM event_texts WHERE event_id = 'qa-0'").fetchone()[0]
        methods = conn.execute("SELECT DISTINCT evaluation_method FROM quality_evaluations").fetchall()
    assert [scores[f"qa-{i}"] for i in range(4)] == [1.0, 1.0, 0.0, 0.0]
    assert scores["qa-9"] == 0.3  # the application's own score is never overwritten
    assert (scores["chat-0"], scores["chat-1"], scores["chat-5"]) == (1.0, 0.0, 0.75)
    assert stored == "ask [REDACTED] question 0"
    assert sorted(m for (m,) in methods) == ["feedback", "reference"]


async def test_texts_are_not_kept_unless_allowed(database_url):
    land_events(database_url, [event("qa", 1, response_text="B", reference_text="B")], store_text=False)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM event_texts").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1


async def test_a_judge_outage_opens_the_circuit_and_the_next_round_catches_up(stack, database_url, temporal_client):
    land_events(
        database_url,
        [event("bot", i, request_text="hi", response_text=f"hello {i}") for i in range(6)],
        store_text=True,
    )
    good = chat_answer({"correctness": 10, "helpfulness": 10, "safety": 10})
    with scripted_server([Answer(503, {"error": "overloaded"})]) as judge:
        options = {
            "base_url": judge.url,
            "model": "gpt-4o-mini",
            "retries": 0,
            "failure_threshold": 2,
            "reset_after_s": 0.5,
        }
        settings = settings_for(
            stack, database_url, evaluation={"services": {"bot": {"evaluator": "llm_judge", "options": options}}}
        )
        async with serving(temporal_client, settings):
            outage = (await run_round(temporal_client, settings, ["bot"]))[0]
            assert (outage.evaluated, outage.unavailable) == (0, 6)
            assert "HTTP 503" in outage.note
            assert len(judge.requests) == 1  # the round stops at the first unavailable answer
            await run_round(temporal_client, settings, ["bot"])  # the second failure opens the circuit
            refused = (await run_round(temporal_client, settings, ["bot"]))[0]
            assert "circuit open" in refused.note and refused.unavailable == 6
            assert len(judge.requests) == 2  # an open circuit calls nobody
            judge.answers[:] = [Answer(body=good)]
            await asyncio.sleep(0.6)  # past reset_after_s: half open, trial calls go through
            recovered = (await run_round(temporal_client, settings, ["bot"]))[0]
    assert (recovered.evaluated, recovered.unavailable) == (6, 0)
    assert recovered.cost_usd > 0
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT min(quality_score), count(*) FROM events WHERE service = 'bot'").fetchone() == (
            1.0,
            6,
        )
