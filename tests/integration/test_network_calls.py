"""No transaction is open while an activity waits on another system: the peers here (the model registry, governance,
an LLM judge) look, while they answer, for sessions of the test's database that sit idle in a transaction."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
from helpers.decisions import decide_request
from helpers.fixture_prices import fixture_book
from helpers.registry import live_on_gpt_4o
from helpers.scripted_http import chat_answer
from helpers.servers import settings_for
from temporalio.testing import ActivityEnvironment

from activities import LoopActivitySet
from activities.evaluation import EvaluationActivities
from llm_optimizer.decoding import DecodedBatch
from llm_optimizer.evaluation.texts import TextPolicy
from llm_optimizer.events import LLMEvent
from llm_optimizer.payloads import QualityRequest
from storage.events_repo import land

IDLE_IN_TRANSACTION = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND state LIKE 'idle in transaction%'"
)


@contextmanager
def peer(database_url: str, answer: dict) -> Iterator[tuple[str, list[int]]]:
    """An HTTP server answering `answer` to every request; for each, how many sessions of the database were idle
    in a transaction while it was asked."""
    seen: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:
            pass

        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            with psycopg.connect(database_url, autocommit=True) as conn:
                seen.append(conn.execute(IDLE_IN_TRANSACTION).fetchone()[0])
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


async def test_decide_holds_no_transaction_while_it_asks_the_registry_and_governance(stack, database_url):
    live_on_gpt_4o(database_url, "chat")
    cheap = {"model_id": "house-7b", "provider": "inhouse", "pricing": {"input_per_1m": 0.01, "output_per_1m": 0.02}}
    models = {"models": [cheap]}
    approved = {"approved": True, "violations": [], "decision_rationale": "fine"}
    with peer(database_url, models) as (registry_url, registry), peer(database_url, approved) as (gov_url, governance):
        settings = settings_for(
            stack, database_url, integrations={"model_registry_url": registry_url, "governance_url": gov_url}
        )
        request = decide_request("chat")
        loop = LoopActivitySet(settings, fixture_book())
        try:
            decision = await ActivityEnvironment().run(loop.decisions.decide, request)
        finally:
            loop.close()
    assert [a.model for a in decision.arms] == ["house-7b"]  # explored, approved: both peers were asked
    assert registry and governance
    assert registry + governance == [0] * (len(registry) + len(governance))


async def test_an_llm_judge_is_asked_with_no_transaction_open(stack, database_url):
    events = [
        LLMEvent(
            event_id=f"bot-{i}",
            timestamp=datetime.now(UTC) - timedelta(seconds=30),
            service="bot",
            model="gpt-4o-mini",
            provider="openai",
            config_version="v1",
            latency_ms=300,
            request_text="hi",
            response_text=f"hello {i}",
        )
        for i in range(3)
    ]
    with psycopg.connect(database_url) as conn:
        land(conn, DecodedBatch(events=events), source="test", texts=TextPolicy(store=True))
    good = chat_answer({"correctness": 10, "helpfulness": 10, "safety": 10})
    with peer(database_url, good) as (judge_url, judge):
        options = {"base_url": judge_url, "model": "gpt-4o-mini", "retries": 0}
        settings = settings_for(
            stack, database_url, evaluation={"services": {"bot": {"evaluator": "llm_judge", "options": options}}}
        )
        evaluation = EvaluationActivities(settings)
        try:
            report = await ActivityEnvironment().run(
                evaluation.evaluate_quality, QualityRequest(service="bot", now=datetime.now(UTC), lookback_s=600)
            )
        finally:
            evaluation.close()
    assert (report.evaluated, report.unavailable) == (3, 0)
    assert judge == [0, 0, 0]
    with psycopg.connect(database_url) as conn:
        scored = conn.execute("SELECT count(*) FROM quality_evaluations WHERE overall_score IS NOT NULL").fetchone()
    assert scored == (3,)
