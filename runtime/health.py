"""The worker's liveness: when the Temporal server last saw this worker poll its task queue, served as `/health`.

A worker process can be up, its metrics served, and still do nothing: its pollers wedged, its connection to Temporal
gone. The server knows: `DescribeTaskQueue` lists each poller of a queue with the time of its last poll. The worker
asks every `every_s` seconds for its own identity's last workflow and activity poll; `/health` answers 503 once either
is older than `metrics.poll_stale_s` (a long poll that finds no task lasts about a minute, so an idle worker polls
at least that often). The same port serves the Prometheus metrics on every other path.

`/health` is liveness only: it stays 200 through a Postgres or Kafka outage (restarting the worker would not bring
them back). Readiness is `/ready` on the same port: Postgres, Temporal and Kafka checked separately
(`runtime/probes.py`), 503 while any of them is down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from llm_optimizer.settings import Settings
from runtime import probes
from runtime.metrics import WORKER_LAST_POLL
from storage.db import Database

log = logging.getLogger(__name__)

# How often the worker checks its dependencies for /ready, and how old a round may be before /ready calls it stale
# (its task is dead or the event loop blocked): a few rounds, each bounded by probes.PROBE_TIMEOUT_S.
READY_EVERY_S = 5.0
READY_STALE_S = 3 * READY_EVERY_S + probes.PROBE_TIMEOUT_S

TYPES = {"workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY}


class PollClock:
    """The last poll of each task type, as the server saw it (unix seconds); the process start until the first."""

    def __init__(self, stale_s: float, started: float | None = None):
        self.stale_s = stale_s
        self.started = time.time() if started is None else started
        self.last: dict[str, float] = {}

    def saw(self, task_type: str, at: float) -> None:
        self.last[task_type] = max(at, self.last.get(task_type, 0.0))
        WORKER_LAST_POLL.labels(task_type).set(self.last[task_type])

    def health(self, now: float | None = None) -> tuple[bool, dict]:
        """(healthy, what to say): unhealthy once a task type's last poll (or the start) is `stale_s` old."""
        now = time.time() if now is None else now
        ages = {t: round(now - self.last.get(t, self.started), 1) for t in TYPES}
        stale = sorted(t for t, age in ages.items() if age > self.stale_s)
        report = {"status": "stale" if stale else "ok", "last_poll_age_s": ages, "stale_after_s": self.stale_s}
        if stale:
            report["reason"] = f"no {' or '.join(stale)} poll seen by the Temporal server for over {self.stale_s:g} s"
        return not stale, report


async def watch_polls(client: Client, task_queue: str, clock: PollClock, every_s: float) -> None:
    """Record this worker's last polls of `task_queue` every `every_s` seconds, until cancelled; a failed look is
    logged and leaves the clock alone (it is stale soon enough if the server stays out of reach)."""
    while True:
        try:
            for name, kind in TYPES.items():
                response = await client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind
                    )
                )
                for poller in response.pollers:
                    if poller.identity == client.identity:
                        clock.saw(name, poller.last_access_time.ToMicroseconds() / 1e6)
        except Exception as exc:  # any failure: the clock goes stale, and /health says so
            log.warning("could not describe task queue %s: %s", task_queue, exc)
        await asyncio.sleep(every_s)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass  # probed every few seconds: no access log


Answer = Callable[[], tuple[bool, dict]]


def app(health: Answer, ready: Answer | None = None):
    """WSGI: `/health` from `health`, `/ready` from `ready` (404 without it), the Prometheus metrics on any other
    path."""
    metrics = prometheus_client.make_wsgi_app()
    answers = {"/health": health} if ready is None else {"/health": health, "/ready": ready}

    def serve(environ: dict, start_response) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == "/ready" and ready is None:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [json.dumps({"detail": "readiness is not served here"}).encode()]
        answer = answers.get(path or "")
        if answer is None:
            return metrics(environ, start_response)
        ok, report = answer()
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
        return [json.dumps(report).encode()]

    return serve


def serve(host: str, port: int, health: Answer, ready: Answer | None = None) -> WSGIServer:
    """Serve `app(health, ready)` on host:port from a daemon thread (as `prometheus_client.start_http_server`
    does)."""
    server = make_server(host, port, app(health, ready), _Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics-and-health").start()
    return server


def worker_readiness() -> probes.Readiness:
    """The worker's readiness: every dependency is required (every activity needs Postgres, the worker's polls need
    Temporal, ingestion needs Kafka)."""
    return probes.Readiness(required={"postgres", "temporal", "kafka"}, stale_after_s=READY_STALE_S)


def probe_database(settings: Settings) -> Database:
    """A pool of one connection for the readiness probe alone: on the activities' pool a worker busy landing
    batches (every connection in use) would look unready, and the probe would queue behind the activities."""
    one = settings.model_copy(update={"database": settings.database.model_copy(update={"pool_size": 1})})
    return Database(one, name="worker-readiness")


async def watch_dependencies(
    readiness: probes.Readiness, db: Database, client: Client, settings: Settings, every_s: float = READY_EVERY_S
) -> None:
    """Check Postgres, Temporal and Kafka concurrently every `every_s` seconds, each within
    `probes.PROBE_TIMEOUT_S`, into `readiness`, until cancelled."""

    async def on_client() -> Client:
        return client

    async def round_() -> list[probes.DependencyCheck]:
        return list(await asyncio.gather(*probes.dependency_checks(settings, db, on_client, probes.PROBE_TIMEOUT_S)))

    await readiness.watch(round_, every_s)
