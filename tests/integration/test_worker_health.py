"""The worker's /health: healthy while the Temporal server sees it poll its task queue, 503 once it stops; the same
port serves the metrics, and /ready (tests/integration/test_readiness.py)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from datetime import timedelta

import pytest
from helpers.servers import wait_for
from temporalio import activity, workflow
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from devstack.processes import free_port
from llm_optimizer.settings import Settings
from runtime.health import PollClock, app, serve, watch_polls


@activity.defn(name="health_probe_step")
async def step() -> str:
    return "done"


@workflow.defn(name="HealthProbe")
class HealthProbe:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(step, start_to_close_timeout=timedelta(seconds=10))


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


async def test_health_is_ok_while_the_worker_polls_and_503_once_it_stops(temporal_client):
    queue = f"health-{uuid.uuid4().hex[:8]}"
    clock = PollClock(stale_s=3.0)
    port = free_port()
    server = serve("127.0.0.1", port, clock.health)
    watcher = asyncio.create_task(watch_polls(temporal_client, queue, clock, every_s=0.3))
    try:
        # Unsandboxed: this test module imports urllib, which the sandbox refuses to re-import. Not eager: each
        # activity is to come through an activity poll.
        async with Worker(
            temporal_client,
            task_queue=queue,
            workflows=[HealthProbe],
            activities=[step],
            workflow_runner=UnsandboxedWorkflowRunner(),
            disable_eager_activity_execution=True,
        ):
            await wait_for(lambda: set(clock.last) == {"workflow", "activity"}, 10, "the server to list both pollers")
            # Work keeps the pollers polling: for twice the staleness limit, /health stays 200.
            for _ in range(12):
                run_id = f"hp-{uuid.uuid4().hex[:8]}"
                await temporal_client.execute_workflow(
                    HealthProbe.run, id=run_id, task_queue=queue, execution_timeout=timedelta(seconds=10)
                )
                status, body = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/health")
                assert status == 200, body
                await asyncio.sleep(0.5)
        # The worker is gone; the server still lists its pollers, with their last poll ageing.
        status, body = await wait_for(
            lambda: (r := get(f"http://127.0.0.1:{port}/health"))[0] == 503 and r, 10, "/health to turn 503"
        )
        report = json.loads(body)
        assert report["status"] == "stale" and "poll seen by the Temporal server for over 3 s" in report["reason"]
        # What the reason names is what is old (the other task type may have polled a moment later).
        named = [t for t in ("workflow", "activity") if t in report["reason"]]
        assert named and all(report["last_poll_age_s"][t] > 3.0 for t in named), report
        status, metrics = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b'optimizer_worker_last_poll_timestamp_seconds{task_type="activity"}' in metrics
    finally:
        watcher.cancel()
        server.shutdown()


def test_a_worker_that_never_polled_is_stale_once_the_limit_has_passed_since_it_started():
    clock = PollClock(stale_s=100.0, started=1000.0)
    assert clock.health(now=1050.0)[0]
    ok, report = clock.health(now=1101.0)
    assert not ok and report["last_poll_age_s"] == {"workflow": 101.0, "activity": 101.0}


def test_the_staleness_limit_stays_above_a_long_poll():
    with pytest.raises(ValueError, match="poll_stale_s"):
        Settings(metrics={"poll_stale_s": 30})


def test_ready_is_its_own_answer_not_the_metrics():
    """/ready answers from the readiness it is given, apart from /health; a server given none answers 404 there
    rather than a 200 of metrics that a probe would take for ready."""
    seen: list[str] = []

    def ask(wsgi, path: str) -> bytes:
        return b"".join(wsgi({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, lambda status, headers: seen.append(status)))

    both = app(lambda: (True, {"status": "ok"}), lambda: (False, {"ready": False, "failing": ["postgres"]}))
    assert json.loads(ask(both, "/health")) == {"status": "ok"} and seen.pop() == "200 OK"
    assert json.loads(ask(both, "/ready"))["failing"] == ["postgres"] and seen.pop().startswith("503")
    assert seen == [] and ask(app(lambda: (True, {})), "/ready") and seen.pop().startswith("404")
