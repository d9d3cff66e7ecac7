"""Readiness apart from liveness (issue 28): the worker's and the API's `/ready` check Postgres, Temporal and Kafka
by name, each within its own bound, and fail while a required one is down; `/health` stays liveness.

Postgres is taken away from the process under test alone: it reaches Postgres through a TCP proxy of this test,
which is closed (listener and live connections) and opened again on the same port. The session's Postgres, shared
by every other test, stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers.api_server import running_api
from helpers.servers import settings_for, start_worker_process, wait_for
from psycopg.conninfo import conninfo_to_dict

from devstack.processes import free_port
from runtime import health
from runtime.probes import PROBE_TIMEOUT_S, Readiness

# Put into the database URL of the process under test: Postgres (trust auth here) ignores it, and no answer may
# carry it.
PASSWORD = "pw-never-in-a-body"
DEPENDENCIES = {"postgres", "temporal", "kafka"}


class TcpProxy:
    """127.0.0.1:`port` forwarded to `target`, on an event loop of its own thread (the API's test helper connects
    to Postgres synchronously, from the test's loop). `down()` closes the listener and resets every connection
    through it, as a database that went away; `up()` listens on the same port again."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def up(self) -> None:
        self._call(self._listen())

    def down(self) -> None:
        self._call(self._close())

    def _call(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, as from a host that is gone
        self._writers.clear()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, upstream_writer}
        self._writers |= pair

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._writers -= pair


@contextlib.contextmanager
def proxied_database(database_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy to the test's database, and the database's URL through it (with a password)."""
    parts = conninfo_to_dict(database_url)
    with TcpProxy(parts["host"], int(parts["port"])) as proxy:
        yield proxy, f"postgresql://{parts['user']}:{PASSWORD}@127.0.0.1:{proxy.port}/{parts['dbname']}"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError as err:  # not listening yet
        return 0, str(err)


async def answer(url: str, status: int, saying: str = "") -> dict | None:
    """The JSON body of `url` when it answers `status` (with `saying` in its text), else None (to poll with
    wait_for)."""
    code, text = await asyncio.to_thread(get, url)
    if code != status or saying not in text:
        return None
    assert PASSWORD not in text, text
    return json.loads(text)


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


@pytest.mark.timeout(420)
async def test_the_workers_ready_fails_without_postgres_while_health_stays_ok_and_recovers(
    stack, database_url, tmp_path: Path
):
    with proxied_database(database_url) as (proxy, url):
        port = free_port()
        settings = settings_for(stack, url, metrics={"port": port})
        log = tmp_path / "worker.log"
        worker = start_worker_process(settings, log)
        base = f"http://127.0.0.1:{port}"
        try:
            # Generous bounds throughout: migrations, the Temporal connection and the first rounds of checks take
            # seconds on a busy 2-core machine; the pool reconnects within about 25 s of Postgres coming back.
            ready = await wait_for(lambda: answer(f"{base}/ready", 200), 180, "the worker's /ready to answer 200")
            checks = by_name(ready)
            assert set(checks) == DEPENDENCIES and ready["failing"] == [] and ready["reason"] == ""
            assert all(c["healthy"] and c["required"] for c in checks.values()), checks
            assert checks["postgres"]["detail"].startswith("PostgreSQL ")
            assert checks["kafka"]["detail"] == f"1 broker(s) at {stack.kafka_bootstrap}"
            assert settings.temporal_address in checks["temporal"]["detail"]

            proxy.down()
            # The detail names the dependency, where it is (never the URL's password: `answer` checks every body) and
            # why (the first failing round may instead find the pooled connection broken).
            unready = await wait_for(
                lambda: answer(f"{base}/ready", 503, saying="Connection refused"), 120, "/ready 503: connection refused"
            )
            checks = by_name(unready)
            assert unready["ready"] is False and unready["failing"] == ["postgres"], unready
            assert not checks["postgres"]["healthy"] and checks["temporal"]["healthy"] and checks["kafka"]["healthy"]
            assert checks["postgres"]["detail"].startswith(f"no connection to Postgres at 127.0.0.1:{proxy.port}/")
            assert unready["reason"].startswith("postgres: "), unready["reason"]
            # Each check is bounded on its own: the failing one took at most its bound (and a little scheduling).
            assert checks["postgres"]["elapsed_ms"] < PROBE_TIMEOUT_S * 1000 + 2000, checks["postgres"]
            # Liveness is another question: the worker still polls Temporal, and restarting it would not help.
            alive = await answer(f"{base}/health", 200)
            assert alive is not None and alive["status"] == "ok", alive

            proxy.up()
            back = await wait_for(lambda: answer(f"{base}/ready", 200), 180, "the worker's /ready back at 200")
            assert all(c["healthy"] for c in back["checks"]), back
            assert await answer(f"{base}/health", 200) is not None
        except BaseException:
            print(log.read_text()[-6000:])
            raise
        finally:
            stop(worker)


class TimedReadiness(Readiness):
    """The worker's readiness, timing each round."""

    rounds_s: list[float]

    async def refresh(self, round_) -> None:
        started = time.perf_counter()
        await super().refresh(round_)
        self.rounds_s = [*getattr(self, "rounds_s", []), time.perf_counter() - started]


async def test_the_workers_checks_run_concurrently_each_within_its_own_bound(stack, temporal_client):
    """A Postgres and a Kafka that accept connections and never answer: each check fails at its own bound, naming
    where it looked; the round lasts about one bound, not their sum; Temporal, checked meanwhile, is healthy."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepted, never answered

    silent = [await asyncio.start_server(hold, "127.0.0.1", 0) for _ in range(2)]
    pg_port, kafka_port = (server.sockets[0].getsockname()[1] for server in silent)
    settings = settings_for(
        stack,
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:{pg_port}/optimizer",
        kafka={"brokers": [f"127.0.0.1:{kafka_port}"]},
    )
    readiness = TimedReadiness(required=DEPENDENCIES, stale_after_s=health.READY_STALE_S)
    db = health.probe_database(settings)
    assert not readiness.answer()[0]  # not ready before the first round
    watching = asyncio.create_task(health.watch_dependencies(readiness, db, temporal_client, settings, every_s=0.5))
    try:
        report = await wait_for(lambda: readiness.report().checks and readiness.report(), 60, "a round of checks")
        ready, body = readiness.answer()
        assert not ready and report.failing == ["postgres", "kafka"], report
        assert PASSWORD not in json.dumps(body)
        checks = {c.name: c for c in report.checks}
        assert checks["temporal"].healthy, checks
        assert checks["kafka"].detail == f"no answer from Kafka at 127.0.0.1:{kafka_port} within {PROBE_TIMEOUT_S:g} s"
        # The pool gives up waiting for a connection just inside the check's bound, so that its explanation arrives.
        assert checks["postgres"].detail.startswith(
            f"no connection to Postgres at 127.0.0.1:{pg_port}/optimizer within"
        )
        assert checks["kafka"].elapsed_ms >= PROBE_TIMEOUT_S * 1000 * 0.95, checks["kafka"]
        assert checks["postgres"].elapsed_ms >= PROBE_TIMEOUT_S * 1000 * 0.75, checks["postgres"]
        # One after the other they would take their sum; at the same time, about the longer one.
        [round_s] = readiness.rounds_s[:1]
        assert round_s < 0.85 * (checks["kafka"].elapsed_ms + checks["postgres"].elapsed_ms) / 1000, (round_s, checks)
        assert body["reason"].startswith("postgres: no connection to Postgres"), body["reason"]
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        await asyncio.to_thread(db.close)
        for writer in held:
            writer.close()
        for server in silent:
            server.close()


def test_a_round_too_old_is_not_ready():
    """A refresher that stopped (a dead task, a blocked loop) must not leave /ready answering 200 forever."""
    readiness = health.worker_readiness()
    readiness._latest = (time.monotonic() - health.READY_STALE_S - 5, [])
    ready, body = readiness.answer()
    assert not ready and body["failing"] == [] and "the last round of checks ran" in body["reason"], body


async def test_the_apis_ready_fails_on_postgres_only_and_names_every_check(stack, database_url):
    """Required: Postgres. Temporal and Kafka are reported but do not fail readiness (config resolution and event
    ingestion work without them)."""
    dead_temporal, dead_kafka = free_port(), free_port()  # nothing listens there
    with proxied_database(database_url) as (proxy, url):
        settings = settings_for(stack, url)
        with running_api(settings) as api:
            ready = await wait_for(lambda: answer(f"{api.url}/ready", 200), 60, "the API's /ready to answer 200")
            checks = by_name(ready)
            assert set(checks) == DEPENDENCIES and all(c["healthy"] for c in checks.values()), checks
            assert {n for n, c in checks.items() if c["required"]} == {"postgres"}

            proxy.down()
            unready = await wait_for(
                lambda: answer(f"{api.url}/ready", 503, saying="Connection refused"), 60, "/ready 503: refused"
            )
            checks = by_name(unready)
            assert unready["ready"] is False and unready["failing"] == ["postgres"], unready
            assert checks["postgres"]["detail"].startswith(f"no connection to Postgres at 127.0.0.1:{proxy.port}/")
            assert checks["temporal"]["healthy"] and checks["kafka"]["healthy"], checks
            async with httpx.AsyncClient(base_url=api.url) as http:
                assert (await http.get("/health")).json() == {"status": "ok"}

            proxy.up()
            await wait_for(lambda: answer(f"{api.url}/ready", 200), 120, "the API's /ready back at 200")

    # Temporal and Kafka out of reach: still ready, and both named as down.
    settings = settings_for(
        stack,
        database_url,
        temporal={"address": f"127.0.0.1:{dead_temporal}"},
        kafka={"brokers": [f"127.0.0.1:{dead_kafka}"]},
    )
    with running_api(settings) as api:
        ready = await wait_for(lambda: answer(f"{api.url}/ready", 200), 60, "the API's /ready without Temporal")
        checks = by_name(ready)
        assert ready["failing"] == [] and checks["postgres"]["healthy"], checks
        assert not checks["temporal"]["healthy"] and not checks["kafka"]["healthy"], checks
        assert f"127.0.0.1:{dead_temporal}" in checks["temporal"]["detail"], checks["temporal"]
        assert f"127.0.0.1:{dead_kafka}" in checks["kafka"]["detail"], checks["kafka"]
        assert not checks["temporal"]["required"] and not checks["kafka"]["required"]
