"""Helpers of the tests on the real servers: settings for the test stack, worker subprocesses, producing, polling."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from devstack import LocalStack
from llm_optimizer.settings import Settings


def settings_for(stack: LocalStack, database_url: str, **sections: dict) -> Settings:
    """Settings that point every client at the test stack, with per-test overrides by section."""
    base = {
        "database": {"url": database_url},
        "kafka": {
            "brokers": [stack.kafka_bootstrap],
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
            "batch_max_wait_ms": 200,
            "partitions": 2,
            # Tansu joins in 3 s here, but a worker's consumers joining again after a restart took over 20 s in one
            # CI run, and each failed join starts the group's rebalance over: the default bound, 60 s.
            "join_timeout_s": 60,
        },
        "temporal": {"address": stack.temporal_address, "task_queue": f"tq-{uuid.uuid4().hex[:8]}"},
        "metrics": {"port": 0, "temporal_port": 0},  # worker subprocesses must not fight over the default ports
    }
    for section, values in sections.items():
        base[section] = {**base.get(section, {}), **values}
    return Settings(**base)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that make a worker subprocess use `settings`."""
    return {
        "OPTIMIZER_DATABASE__URL": settings.database.url or "",
        "OPTIMIZER_KAFKA__BROKERS": ",".join(settings.kafka_brokers),
        "OPTIMIZER_KAFKA__SESSION_TIMEOUT_MS": str(settings.kafka.session_timeout_ms),
        "OPTIMIZER_KAFKA__HEARTBEAT_INTERVAL_MS": str(settings.kafka.heartbeat_interval_ms),
        "OPTIMIZER_KAFKA__BATCH_MAX_WAIT_MS": str(settings.kafka.batch_max_wait_ms),
        "OPTIMIZER_KAFKA__BATCH_MAX_EVENTS": str(settings.kafka.batch_max_events),
        "OPTIMIZER_KAFKA__JOIN_TIMEOUT_S": str(settings.kafka.join_timeout_s),
        "OPTIMIZER_TEMPORAL__ADDRESS": settings.temporal_address,
        "OPTIMIZER_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
        "OPTIMIZER_METRICS__PORT": str(settings.metrics.port),
        "OPTIMIZER_METRICS__TEMPORAL_PORT": str(settings.metrics.temporal_port),
    }


def start_worker_process(settings: Settings, log_path: Path) -> subprocess.Popen:
    """`python worker.py` in its own process group, configured for the test stack."""
    env = {**os.environ, **settings_env(settings)}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve().parents[2] / "worker.py")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


Message = bytes | tuple[bytes, list[tuple[str, bytes]]]


async def produce(bootstrap: str, topic: str, messages: list[Message]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for message in messages:
            value, headers = message if isinstance(message, tuple) else (message, [])
            futures.append(await producer.send(topic, value, headers=headers))
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll `predicate` (sync or async) until it returns something true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
