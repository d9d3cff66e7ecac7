"""The worker: runs every workflow and activity of the optimizer on one task queue.

`python worker.py` reads the settings (see docs/configuration.md), migrates the database, and serves until
SIGINT/SIGTERM, finishing the activities in flight before it exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities import ActivityRegistry
from llm_optimizer.errors import OptimizerError, PortInUse
from llm_optimizer.ids import watcher_id
from llm_optimizer.payloads import WatchInput
from llm_optimizer.pricing import price_book
from llm_optimizer.settings import Settings, load_settings
from runtime import health
from runtime.logs import configure_logging
from runtime.probes import Readiness
from runtime.search_attributes import SEARCH_ATTRIBUTES
from runtime.temporal import connect_client, ensure_search_attributes
from storage.db import migrate
from workflows import ALL_WORKFLOWS
from workflows.threshold_watcher import ThresholdWatcher

log = logging.getLogger("worker")


@asynccontextmanager
async def serving(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    """A running worker with every workflow and activity, stopped (gracefully) on exit."""
    registry = ActivityRegistry(settings, price_book(settings))
    worker = Worker(
        client,
        task_queue=settings.temporal.task_queue,
        workflows=ALL_WORKFLOWS,
        activities=registry.all(),
        graceful_shutdown_timeout=timedelta(seconds=10),
        # A workflow task waits this long on the queue of the worker that last ran the workflow before any worker may
        # take it (10 s by default): after a crash, every workflow of the dead worker lost that long again.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=2),
        # Eager activities run on the worker of the workflow task that scheduled them: all of an Ingestion's
        # consumers would sit on one worker. Through the task queue, any worker takes them (docs/deployment.md).
        disable_eager_activity_execution=True,
    )
    try:
        async with worker:
            await start_watcher(client, settings)
            yield worker
    finally:
        await registry.close()


async def start_watcher(client: Client, settings: Settings) -> None:
    """The task queue's ThresholdWatcher (the cycles' fast path); idempotent: a running one is kept."""
    queue = settings.temporal.task_queue
    opt = settings.optimization
    await client.start_workflow(
        ThresholdWatcher.run,
        WatchInput(task_queue=queue, list_every_s=min(10.0, opt.fast_path_interval_s * opt.time_scale)),
        id=watcher_id(queue),
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"Threshold watcher: the fast path of every cycle on {queue}",
        static_details="Checks each idle cycle's live config against its hard limits (and its Sentinel alerts) once "
        "per fast-path window and signals `threshold_breached` to a cycle with a breach, so that a quiet cycle's "
        "history stays short (docs/architecture.md).",
    )


def start_metrics(settings: Settings, clock: health.PollClock, readiness: Readiness) -> Runtime | None:
    """Serve the product's metrics, /health (liveness) and /ready (readiness), and return a Temporal runtime that
    serves the SDK's metrics (each off at port 0)."""
    m = settings.metrics
    if m.port:
        try:
            health.serve(m.host, m.port, clock.health, readiness.answer)
        except OSError as exc:
            raise PortInUse(
                f"metrics port {m.host}:{m.port} is not free ({exc.strerror}); set OPTIMIZER_METRICS__PORT"
            ) from None
        log.info("product metrics on http://%s:%s/metrics, liveness on /health, readiness on /ready", m.host, m.port)
    if not m.temporal_port:
        return None
    log.info("Temporal SDK metrics on http://%s:%s/metrics", m.host, m.temporal_port)
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{m.host}:{m.temporal_port}")))


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    migrate(settings.database_url)
    clock = health.PollClock(settings.metrics.poll_stale_s)
    readiness = health.worker_readiness()  # 503 until the first round of checks, once the worker serves
    client = await connect_client(settings, runtime=start_metrics(settings, clock, readiness))
    try:
        await ensure_search_attributes(client)
    except RPCError as err:  # e.g. Temporal Cloud, where a namespace admin registers them instead
        log.warning("could not register the search attributes (%s); register %s", err, ", ".join(SEARCH_ATTRIBUTES))
    async with serving(client, settings):
        log.info("worker serving task queue %s on %s", settings.temporal.task_queue, settings.temporal_address)
        polls = asyncio.create_task(
            health.watch_polls(client, settings.temporal.task_queue, clock, every_s=clock.stale_s / 6)
        )
        # /ready answers from the last round this task ran (every 5 s), never by probing per request: no probe
        # storm, no WSGI thread waiting on the event loop, and a blocked loop shows as a stale round.
        probe_db = health.probe_database(settings)
        dependencies = asyncio.create_task(health.watch_dependencies(readiness, probe_db, client, settings))
        try:
            await stop.wait()
        finally:
            polls.cancel()
            dependencies.cancel()
            await asyncio.gather(dependencies, return_exceptions=True)
            await asyncio.to_thread(probe_db.close)  # waits for the pool's threads


def main() -> int:
    try:
        settings = load_settings()
    except OptimizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    stop = asyncio.Event()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    try:
        asyncio.run(serve())
    except OptimizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
