"""HTTP API load: config resolution and batch ingestion, from this process against `python -m api` in another.

    python -m benchmarks.api [--seconds 15] [--concurrency 4]      (make bench-api)

Starts its own embedded stack on free ports and the API as a subprocess (one uvicorn worker), then on loopback:
1. `GET /health` (no auth, no database): the floor of the framework and server, as the in-run baseline;
2. `GET /api/v1/config/{service}?key=...` with random keys (authenticated, rate-limited, cached assignment);
3. `POST /api/v1/metrics` with batches of 500 events;
4. the typed client's cached `resolve`, in this process (no network).
Each request is timed on its own. Last line: RESULT {...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg

from devstack import LocalStack
from devstack.processes import free_port
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.resolution import Assignment
from optimizer_client import OptimizerClient
from simulator.samples import sample_events
from storage import apikeys_repo, configs_repo
from storage.db import migrate

SERVICE = "chat"


def prepare(url: str) -> str:
    migrate(url)
    with psycopg.connect(url) as conn:
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o-mini", provider="openai"), parent_version="v1")
        assignment = Assignment(service=SERVICE, active_version="v1", canary_version="v2", canary_percent=10)
        configs_repo.set_assignment(conn, assignment, updated_by="bench")
        return apikeys_repo.create(conn, "bench", "viewer", rate_limit_per_s=1e9).key


def start_api(stack: LocalStack, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "OPTIMIZER_DATABASE__URL": stack.database_url,
        "OPTIMIZER_TEMPORAL__ADDRESS": stack.temporal_address,
        "OPTIMIZER_KAFKA__BROKERS": stack.kafka_bootstrap,
        "OPTIMIZER_SERVER__PORT": str(port),
        "OPTIMIZER_LOGGING__LEVEL": "warning",
    }
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "api"], env=env, stdout=out, stderr=subprocess.STDOUT)


async def wait_ready(url: str, process: subprocess.Popen) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(200):
            if process.poll() is not None:
                raise RuntimeError("the API exited; see its log")
            try:
                if (await http.get("/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the API did not become ready")


async def load(url: str, headers: dict, seconds: float, concurrency: int, request) -> tuple[np.ndarray, float, int]:
    """Run `request(http, i)` from `concurrency` tasks for `seconds`: per-request latencies, elapsed, requests."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as http:
        await request(http, -1)  # warm the connection and the server's caches

        async def worker(offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await request(http, i)
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
                i += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    return np.array(latencies), elapsed, len(latencies)


def cached_resolve_us(url: str, key: str, calls: int = 100_000) -> np.ndarray:
    client = OptimizerClient(url, key)
    client.resolve(SERVICE, "warm")
    timings = np.empty(calls)
    clock = time.perf_counter
    for i in range(calls):
        started = clock()
        client.resolve(SERVICE, f"user-{i}")
        timings[i] = clock() - started
    client.close()
    return timings * 1e6


def pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q))


async def run(seconds: float, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        stack = LocalStack.on_free_ports(Path(tmp))
        stack.up()
        port = free_port()
        api = None
        try:
            key = prepare(stack.database_url)
            api = start_api(stack, port, Path(tmp) / "api.log")
            url = f"http://127.0.0.1:{port}"
            await wait_ready(url, api)
            headers = {"Authorization": f"Bearer {key}"}

            health, health_s, health_n = await load(url, {}, seconds, concurrency, lambda http, i: http.get("/health"))
            resolve, resolve_s, resolve_n = await load(
                url,
                headers,
                seconds,
                concurrency,
                lambda http, i: http.get(f"/api/v1/config/{SERVICE}", params={"key": f"user-{i}"}),
            )
            batches = [
                [e.model_dump(mode="json", exclude_none=True) for e in sample_events(500, seed=s)] for s in range(200)
            ]
            ingest, ingest_s, ingest_n = await load(
                url,
                headers,
                seconds,
                max(1, concurrency // 2),
                lambda http, i: http.post("/api/v1/metrics", json={"metrics": batches[i % len(batches)]}),
            )
            cached = cached_resolve_us(url, key)
        finally:
            if api is not None:
                api.terminate()
                api.wait(timeout=20)
            stack.down()

    def report(name: str, values: np.ndarray, elapsed: float, n: int) -> None:
        print(
            f"{name:<22} {n:>7,} requests  {n / elapsed:>8,.0f} req/s  "
            f"p50 {pct(values, 50) * 1e3:6.2f} ms  p99 {pct(values, 99) * 1e3:6.2f} ms",
            flush=True,
        )

    report("GET /health", health, health_s, health_n)
    report("GET /api/v1/config", resolve, resolve_s, resolve_n)
    report("POST /api/v1/metrics", ingest, ingest_s, ingest_n)
    print(f"client cached resolve  p50 {pct(cached, 50):.1f} us  p99 {pct(cached, 99):.1f} us", flush=True)
    return {
        "resolve_http_p99_ms": round(pct(resolve, 99) * 1e3, 2),
        "resolve_cached_p99_us": round(pct(cached, 99), 1),
        "resolve_http_rps": round(resolve_n / resolve_s),
        "ingest_http_events_per_s": round(ingest_n * 500 / ingest_s),
        "health_http_p99_ms": round(pct(health, 99) * 1e3, 2),
        "resolve_vs_health_p99_ratio": round(pct(resolve, 99) / pct(health, 99), 2),
        "concurrency": concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.api", description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    result = asyncio.run(run(args.seconds, args.concurrency))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
