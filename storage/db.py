"""Database access: the process's pooled connections, engines, and the migrations that run on start."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from psycopg_pool import ConnectionPool

from llm_optimizer.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
RECONNECT_TIMEOUT_S = 10.0
T = TypeVar("T")


def one(cursor: psycopg.Cursor) -> tuple[Any, ...]:
    """The row a query always answers (an aggregate's, an upsert's RETURNING): its absence is a bug, said so."""
    row = cursor.fetchone()
    if row is None:
        raise LookupError("the query answered no row, where it always answers one")
    return row


def sqlalchemy_url(url: str) -> str:
    """Any postgres URL, with the psycopg 3 driver that this project installs."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"database url {url!r}: must start with postgresql://")


def psycopg_url(url: str) -> str:
    """The same database as a libpq URL, for psycopg's own connections (COPY, LISTEN)."""
    return "postgresql://" + sqlalchemy_url(url).removeprefix("postgresql+psycopg://")


def connect(url: str, **kwargs) -> psycopg.Connection:
    return psycopg.connect(psycopg_url(url), **kwargs)


class Database:
    """The one way a worker's activities (and the API's routes) get a Postgres connection: a pool of
    `database.pool_size` connections, opened on first use, made once per process by its owner (the worker's
    `activities.ActivityRegistry`, the API's `Backend`), which closes it.

    Each use is one short transaction. Keep network calls (HTTP, Kafka, Temporal) out of it: read, close, call,
    then write, so that a slow service never holds a connection or a lock."""

    def __init__(self, settings: Settings, *, name: str = "optimizer"):
        db = settings.database
        self.pool = ConnectionPool(
            psycopg_url(settings.database_url),
            min_size=1,
            max_size=db.pool_size,
            timeout=db.connect_timeout_s,  # waiting for a free connection, as for a new one
            kwargs={"connect_timeout": max(1, int(db.connect_timeout_s))},
            # A connection that died with its server (a restart, a failover) is found out and replaced before it is
            # handed to anyone, instead of failing the batch or request that gets it.
            check=ConnectionPool.check_connection,
            # The pool retries a failed connect with a doubling delay until this timeout, then gives up and starts
            # afresh at the next request: bounded, a database back after an outage is used within seconds, not
            # after a delay grown to minutes.
            reconnect_timeout=RECONNECT_TIMEOUT_S,
            open=False,
            name=name,
        )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in one transaction, committed when the block ends (rolled back if it raises);
        blocking: for code that runs in a thread."""
        self.pool.open()  # a no-op once open
        # An explicit block, not the connection's implicit transaction: a repository's own `conn.transaction()`
        # inside it is then a savepoint, never a commit of half the work.
        with self.pool.connection() as conn, conn.transaction():
            yield conn

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(conn, *args)` in a thread, in one transaction on a pooled connection."""

        def call() -> T:
            with self.connection() as conn:
                return work(conn, *args)

        return await asyncio.to_thread(call)

    def close(self) -> None:
        self.pool.close()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = sqlalchemy_url(url)
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database to `revision` (idempotent; concurrent starters serialize on Alembic's version table)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
