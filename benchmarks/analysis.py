"""Analysis and decision speed: 1,000,000 events over 100 services in Postgres.

    python -m benchmarks.analysis [--events 1000000] [--services 100]      (make bench-analysis)

Loads the events (not timed), then times (1) the analysis of every service at once: 5-minute windowed aggregates
per service x model x config version x variant in Postgres (count, error rate, p95 latency, quality, cost), the
query the loop's profiles come from; (2) one decision per service by the `decide` activity itself, run with
temporalio's ActivityEnvironment (registry reads, per-model profiles, the engine, the audit write), each timed alone.
Baseline in the same run: a plain `SELECT count(*)` over the same rows. Last line: RESULT {...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
from temporalio.testing import ActivityEnvironment

from activities import LoopActivitySet
from devstack import LocalStack
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.decision import Constraints, Memory, Objectives
from llm_optimizer.payloads import DecideRequest
from llm_optimizer.pricing import price_book
from llm_optimizer.resolution import Assignment
from llm_optimizer.settings import Settings
from llm_optimizer.strategies import Strategy
from simulator.samples import sample_events
from storage import configs_repo
from storage.db import migrate
from storage.events_repo import EVENT_COLUMNS, event_row

ANALYSIS_SQL = """
SELECT service, model, config_version, variant, date_bin('5 minutes', ts, %s) AS bucket,
       count(*), avg((status <> 'ok')::int), percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms),
       avg(quality_score), sum(cost_usd)
FROM events WHERE ts >= %s AND ts < %s
GROUP BY service, model, config_version, variant, bucket
"""


def load(url: str, events: int, services: list[str], start: datetime) -> None:
    catalog = price_book()
    with psycopg.connect(url) as conn:
        for name in services:
            configs_repo.register(conn, name, ConfigSpec(model="gpt-4o", provider="openai"))
            configs_repo.set_assignment(conn, Assignment(service=name, active_version="v1"), updated_by="bench")
        with conn.cursor() as cur, cur.copy(f"COPY events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
            for event in sample_events(events, services=tuple(services), start=start, seed=9):
                copy.write_row((*event_row(catalog.with_cost(event)), "bench"))
        conn.commit()
        # What autovacuum does after every 50,000 inserts (migration 0004): statistics, and the visibility map
        # that lets the loop's reads be index-only scans.
        conn.autocommit = True
        conn.execute("VACUUM (ANALYZE) events")


def run(total: int, service_count: int) -> dict:
    services = [f"svc-{i:03d}" for i in range(service_count)]
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        stack = LocalStack.on_free_ports(Path(tmp))
        stack.up()
        try:
            url = stack.database_url
            migrate(url)
            start = datetime.now(UTC) - timedelta(milliseconds=10 * total)
            end = datetime.now(UTC) + timedelta(seconds=1)
            loaded = time.perf_counter()
            load(url, total, services, start)
            print(f"loaded {total:,} events in {time.perf_counter() - loaded:.1f}s (not timed)", flush=True)

            with psycopg.connect(url) as conn:
                began = time.perf_counter()
                conn.execute("SELECT count(*) FROM events WHERE ts >= %s AND ts < %s", (start, end)).fetchone()
                scan_s = time.perf_counter() - began
                began = time.perf_counter()
                rows = conn.execute(ANALYSIS_SQL, (start, start, end)).fetchall()
                analysis_s = time.perf_counter() - began
            print(f"analysis: {len(rows):,} window aggregates in {analysis_s:.2f}s (count(*) scan {scan_s:.2f}s)")

            activities = LoopActivitySet(Settings(database={"url": url}), price_book())
            timings = []
            for name in services:
                request = DecideRequest(
                    service=name,
                    cycle_id=f"bench/{name}",
                    now=end,
                    window_start=start,
                    strategy=Strategy.balanced,
                    objectives=Objectives(),
                    constraints=Constraints(),
                    memory=Memory(),
                    candidate_models=["gpt-4o-mini", "claude-3-5-haiku-20241022", "gemini-2.0-flash-001"],
                )
                began = time.perf_counter()
                asyncio.run(ActivityEnvironment().run(activities.decisions.decide, request))  # the activity itself
                timings.append((time.perf_counter() - began) * 1000)
            p99 = float(np.percentile(timings, 99))
            print(f"decisions: p50 {np.percentile(timings, 50):.1f} ms, p99 {p99:.1f} ms over {len(timings)} services")
        finally:
            stack.down()
    return {
        "events": total,
        "services": service_count,
        "analysis_s": round(analysis_s, 3),
        "decision_p99_ms": round(p99, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.analysis", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--services", type=int, default=100)
    args = parser.parse_args()
    print("RESULT " + json.dumps(run(args.events, args.services)))


if __name__ == "__main__":
    main()
