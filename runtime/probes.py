"""Dependency probes shared by the worker's and the API's readiness (`/ready`) and the API's `/health/detailed`.

Each probe is cheap (a readiness probe runs every few seconds): `SHOW server_version` on a pooled Postgres
connection, `DescribeNamespace` on the Temporal frontend, a Kafka metadata bootstrap. `check` runs one under its own
timeout and turns any failure into a `DependencyCheck` whose detail names what failed and why; the details are
redacted and never carry the database URL, only its host, port and database. `Readiness` holds the last round of
checks and answers from it, so that a probe storm cannot come from `/ready` requests (see its docstring).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import timedelta

from aiokafka import AIOKafkaClient
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import PoolTimeout
from pydantic import BaseModel
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from llm_optimizer.errors import Unhealthy
from llm_optimizer.redaction import redact
from llm_optimizer.settings import Settings
from storage import status_repo
from storage.db import Database, psycopg_url

# Each readiness check's own bound: longer than a healthy answer on a busy machine (milliseconds), shorter than the
# probes' timeoutSeconds (5 s in docs/k8s/ and docker-compose.yml), so that the 503 and its body arrive in time.
PROBE_TIMEOUT_S = 3.0


class _PoolErrors(logging.Handler):
    """The last connection error of each pool, by name: psycopg_pool logs why a connect failed, and its PoolTimeout
    says only that none came in time."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: dict[str, tuple[float, str]] = {}  # pool name -> (time.monotonic(), the error)

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if str(record.msg).startswith("error connecting in") and isinstance(args, tuple) and len(args) == 2:
            self.last[str(args[0])] = (time.monotonic(), str(args[1]))

    def recent(self, pool: str, within_s: float) -> str | None:
        at, error = self.last.get(pool, (0.0, ""))
        return error if error and time.monotonic() - at <= within_s else None


_POOL_ERRORS = _PoolErrors()
logging.getLogger("psycopg.pool").addHandler(_POOL_ERRORS)
# Only a connection error this recent explains a pool timeout (an older one may have been cured since).
POOL_ERROR_RECENT_S = 60.0


class DependencyCheck(BaseModel):
    """One dependency (Postgres, Temporal, Kafka) checked: healthy or not, why, and how long the check took."""

    name: str
    healthy: bool
    detail: str
    elapsed_ms: float


class ReadyCheck(DependencyCheck):
    required: bool  # whether this check being down makes the process unready


class ReadinessReport(BaseModel):
    ready: bool
    failing: list[str]  # the names of the required checks that are down
    reason: str  # why not ready ("" when ready): each failing check with its detail, or a missing or stale round
    checks: list[ReadyCheck]
    checked_s_ago: float | None  # how old this round of checks is (None: none has finished yet)


async def check(name: str, probe: Awaitable[str], timeout_s: float, target: str, bound_by: str = "") -> DependencyCheck:
    """Run `probe` (its detail when healthy) within `timeout_s`; a failure's detail names `target` (an address,
    never a password) and, for a timeout, `bound_by`, the setting of the bound."""
    started = time.perf_counter()
    try:
        detail, healthy = await asyncio.wait_for(probe, timeout_s), True
    except TimeoutError:
        detail, healthy = f"no answer from {target} within {timeout_s:g} s{f' ({bound_by})' if bound_by else ''}", False
    except Unhealthy as exc:
        detail, healthy = str(exc), False
    except Exception as exc:
        detail, healthy = f"{target}: {type(exc).__name__}: {exc}", False
    elapsed_ms = round((time.perf_counter() - started) * 1e3, 2)
    # One line (libpq's errors span several), redacted.
    return DependencyCheck(name=name, healthy=healthy, detail=redact(" ".join(detail.split())), elapsed_ms=elapsed_ms)


def postgres_where(database_url: str) -> str:
    """host:port/database of a URL, without its user or password (for details and logs)."""
    parts = conninfo_to_dict(psycopg_url(database_url))
    return f"{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"


async def postgres(db: Database, where: str, timeout_s: float) -> str:
    """A pooled connection (checked by the pool before it is handed out) answers a query. A pool already waits a
    bounded time for a connection: a hung query holds at most the pool's connections, never an unbounded number of
    threads."""
    # Within the check's own bound, so that this explanation arrives rather than a timeout, and no longer than the
    # pool's own wait (database.connect_timeout_s) when that bound is long (/health/detailed's).
    wait_s = min(0.8 * timeout_s, db.pool.timeout)

    def ask() -> str:
        db.pool.open()  # a no-op once open
        with db.pool.connection(timeout=wait_s) as conn:
            return status_repo.server_version(conn)

    try:
        version = await asyncio.to_thread(ask)
    except PoolTimeout:
        error = _POOL_ERRORS.recent(db.pool.name, POOL_ERROR_RECENT_S)
        why = (
            f"the pool's last connect failed: {error}"
            if error
            else "no connect failed either: the server is slow to answer, or every pooled connection is busy"
        )
        raise Unhealthy(f"no connection to Postgres at {where} within {wait_s:g} s ({why})") from None
    return f"PostgreSQL {version} at {where}"


async def temporal(client: Client, address: str, timeout_s: float) -> str:
    """The frontend answers for the client's namespace (a missing namespace fails too)."""
    await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace), timeout=timedelta(seconds=timeout_s)
    )
    return f"{address} namespace {client.namespace}"


async def kafka(brokers: Sequence[str]) -> str:
    """A broker of `brokers` answers a metadata request (a fresh connection each time, closed at once)."""
    # aiokafka's own request timeout (40 s) is longer than any check's bound: a broker that accepts and never answers
    # is cut off by `check`, with the bound in the detail.
    client = AIOKafkaClient(bootstrap_servers=list(brokers))
    try:
        try:
            await client.bootstrap()
        except Exception as exc:
            error = str(exc) if str(exc).startswith(type(exc).__name__) else f"{type(exc).__name__}: {exc}"
            raise Unhealthy(f"no broker of {','.join(brokers)} answered: {error}") from None
        return f"{len(client.cluster.brokers())} broker(s) at {','.join(brokers)}"
    finally:
        await client.close()


def dependency_checks(
    settings: Settings,
    db: Database,
    temporal_client: Callable[[], Awaitable[Client]],
    timeout_s: float,
    bound_by: str = "",
) -> list[Awaitable[DependencyCheck]]:
    """The checks of Postgres (on `db`), Temporal (on the client `temporal_client` gives, inside the check's bound: the
    API connects on first use) and Kafka, as the settings point at them; to be run concurrently."""
    where = postgres_where(settings.database_url)
    address = settings.temporal_address
    brokers = settings.kafka_brokers

    async def on_temporal() -> str:
        return await temporal(await temporal_client(), address, timeout_s)

    return [
        check("postgres", postgres(db, where, timeout_s), timeout_s, f"Postgres at {where}", bound_by),
        check("temporal", on_temporal(), timeout_s, f"Temporal at {address}", bound_by),
        check("kafka", kafka(brokers), timeout_s, f"Kafka at {','.join(brokers)}", bound_by),
    ]


class Readiness:
    """The last round of checks, and the answer `/ready` gives from it: ready while every required check passed in a
    round younger than `stale_after_s`.

    A round runs the checks concurrently, each within its own timeout, so a round lasts about one timeout at worst.
    The worker refreshes it from a task on its event loop (`watch`) and its WSGI thread only reads it (`answer`):
    the probes run on the loop that owns the clients, a request never waits for them, and a loop too blocked to
    refresh shows as a stale round, hence unready. The API refreshes on demand (`fresh`), at most once per
    `max_age_s` whatever the request rate: its `/ready` is open to anyone.
    """

    def __init__(self, required: Collection[str], stale_after_s: float):
        self.required = frozenset(required)
        self.stale_after_s = stale_after_s
        self._latest: tuple[float, list[DependencyCheck]] | None = None  # (time.monotonic(), checks), replaced whole
        self._lock = asyncio.Lock()

    async def refresh(self, round_: Callable[[], Awaitable[Sequence[DependencyCheck]]]) -> None:
        self._latest = (time.monotonic(), list(await round_()))

    async def fresh(
        self, round_: Callable[[], Awaitable[Sequence[DependencyCheck]]], max_age_s: float
    ) -> ReadinessReport:
        """The report of a round at most `max_age_s` old, running one if needed (one at a time: requests that
        arrive meanwhile wait for it and share it)."""
        async with self._lock:
            if self._latest is None or time.monotonic() - self._latest[0] > max_age_s:
                await self.refresh(round_)
        return self.report()

    async def watch(self, round_: Callable[[], Awaitable[Sequence[DependencyCheck]]], every_s: float) -> None:
        """Refresh every `every_s` seconds until cancelled."""
        while True:
            await self.refresh(round_)
            await asyncio.sleep(every_s)

    def report(self, now: float | None = None) -> ReadinessReport:
        latest = self._latest  # one read: the refresher replaces it whole, from another thread in the worker
        if latest is None:
            reason = "no round of checks has finished yet"
            return ReadinessReport(ready=False, failing=[], reason=reason, checks=[], checked_s_ago=None)
        at, checks = latest
        age = round((time.monotonic() if now is None else now) - at, 1)
        marked = [ReadyCheck(**c.model_dump(), required=c.name in self.required) for c in checks]
        down = [c for c in marked if c.required and not c.healthy]
        reasons = [f"{c.name}: {c.detail}" for c in down]
        if age > self.stale_after_s:
            reasons.append(f"the last round of checks ran {age:g} s ago (stale after {self.stale_after_s:g} s)")
        failing = [c.name for c in down]
        return ReadinessReport(
            ready=not reasons, failing=failing, reason="; ".join(reasons), checks=marked, checked_s_ago=age
        )

    def answer(self) -> tuple[bool, dict]:
        """(ready, the JSON body): for the worker's WSGI thread."""
        report = self.report()
        return report.ready, report.model_dump()
