"""The traffic split is pushed to an external orchestrator: real HTTP, idempotency key, retryable and fatal errors."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from helpers.fixture_prices import fixture_book
from helpers.servers import settings_for
from temporalio.testing import ActivityEnvironment

from activities import LoopActivitySet
from activities.rollout import RolloutActivities
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.errors import CircuitOpen, OrchestratorRejected
from llm_optimizer.payloads import TrafficRequest
from llm_optimizer.resolution import Assignment
from storage import configs_repo


class Recorder(BaseHTTPRequestHandler):
    received: list = []
    answers: list = []

    def do_PUT(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Recorder.received.append((self.path, self.headers["Idempotency-Key"], body))
        status = Recorder.answers.pop(0) if Recorder.answers else 200
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def orchestrator():
    Recorder.received, Recorder.answers = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def activities(stack, database_url, orchestrator) -> RolloutActivities:
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, "chat", ConfigSpec(model="gpt-4o", provider="openai", prompt_template="Be brief."))
        configs_repo.register(conn, "chat", ConfigSpec(model="gpt-4o-mini", provider="openai"), parent_version="v1")
        conn.commit()
    settings = settings_for(stack, database_url, integrations={"orchestrator_url": orchestrator})
    return LoopActivitySet(settings, fixture_book()).rollout


REQUEST = TrafficRequest(
    rollout_id="canary/chat/v2@abc", service="chat", active_version="v1", canary_version="v2", percent=25
)


async def test_split_is_written_and_pushed_with_an_idempotency_key(activities, database_url):
    env = ActivityEnvironment()
    await env.run(activities.set_traffic, REQUEST)
    await env.run(activities.set_traffic, REQUEST)  # a retry: same key
    [(path, key, body), (_, key_again, _)] = Recorder.received
    assert path == "/api/v1/configurations/chat"
    assert key == key_again == "canary/chat/v2@abc:v1:v2:25"
    assert body["configuration"]["model"] == "gpt-4o" and body["configuration"]["system_prompt"] == "Be brief."
    assert body["canary_configuration"]["model"] == "gpt-4o-mini"
    assert body["deployment"] == {"strategy": "canary", "rollout_percentage": 25, "rollout_id": "canary/chat/v2@abc"}
    with psycopg.connect(database_url) as conn:
        assert configs_repo.get_assignment(conn, "chat") == Assignment(
            service="chat", active_version="v1", canary_version="v2", canary_percent=25
        )


async def test_server_errors_are_retryable_and_refusals_are_not(activities):
    env = ActivityEnvironment()
    Recorder.answers = [503]
    with pytest.raises(Exception, match="503"):
        await env.run(activities.set_traffic, REQUEST)
    Recorder.answers = [422]
    with pytest.raises(OrchestratorRejected, match="422"):
        await env.run(activities.set_traffic, REQUEST)


async def test_an_orchestrator_that_keeps_failing_opens_the_circuit(activities):
    env = ActivityEnvironment()
    activities.orchestrator_breaker.failure_threshold = 2
    Recorder.answers = [503, 503, 200]
    for _ in range(2):
        with pytest.raises(Exception, match="503"):
            await env.run(activities.set_traffic, REQUEST)
    with pytest.raises(CircuitOpen, match="orchestrator: circuit open"):
        await env.run(activities.set_traffic, REQUEST)
    assert len(Recorder.received) == 2  # the open circuit sent nothing
