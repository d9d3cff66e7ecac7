"""Rollups equal the raw aggregates and are idempotent; the maintenance workflow runs them (expiry, a partition at a
time: tests/integration/test_partitions.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from helpers.fixture_prices import fixture_book
from helpers.servers import settings_for
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities import LoopActivitySet
from activities.maintenance import MaintenanceActivities
from llm_optimizer.payloads import MaintenanceReport, MaintenanceRequest
from simulator.samples import sample_events
from storage import analysis_repo
from storage.events_repo import land_events
from workflows import StorageMaintenance

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(minutes=100)


@pytest.fixture
def loaded(stack, database_url) -> MaintenanceActivities:
    with psycopg.connect(database_url) as conn:
        # 3,000 requests 0.6 s apart, from 100 to 70 minutes ago: older than any still-open hour bucket.
        events = list(sample_events(3000, start=START, seed=4))
        events = [
            e.model_copy(update={"timestamp": START + timedelta(seconds=0.6 * i), "cost_usd": 0.001})
            for i, e in enumerate(events)
        ]
        land_events(conn, events, source="test")
        conn.commit()
    return LoopActivitySet(settings_for(stack, database_url), fixture_book()).maintenance


def rows(database_url: str, sql: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql).fetchall()


async def test_rollups_match_the_raw_events_and_a_rerun_changes_nothing(loaded, database_url):
    env = ActivityEnvironment()
    report = await env.run(loaded.maintain_storage, MaintenanceRequest(now=NOW, retention_days=7))
    assert report.expired_events == 0 and report.rollup_rows["rollups_1m"] > 30
    raw = rows(
        database_url,
        "SELECT date_trunc('minute', ts), service, count(*), sum(cost_usd), count(quality_score), "
        "count(*) FILTER (WHERE status <> 'ok') FROM events GROUP BY 1, 2 ORDER BY 1, 2",
    )
    minute = rows(
        database_url,
        "SELECT bucket, service, sum(requests), sum(cost_sum_usd), sum(quality_n), sum(errors) FROM rollups_1m "
        "GROUP BY 1, 2 ORDER BY 1, 2",
    )
    assert [(r[0], r[1], r[2], r[4], r[5]) for r in raw] == [(m[0], m[1], m[2], m[4], m[5]) for m in minute]
    assert [r[3] for r in raw] == pytest.approx([m[3] for m in minute])
    hour_total = rows(database_url, "SELECT sum(requests) FROM rollups_1h")[0][0]
    assert hour_total == 3000

    before = rows(database_url, "SELECT * FROM rollups_1m ORDER BY 1, 2, 3, 4, 5")
    await env.run(loaded.maintain_storage, MaintenanceRequest(now=NOW, retention_days=7))
    assert rows(database_url, "SELECT * FROM rollups_1m ORDER BY 1, 2, 3, 4, 5") == before


async def test_the_maintenance_workflow(time_skipping_env, loaded):
    queue = f"maintenance-{uuid.uuid4().hex[:6]}"
    async with Worker(
        time_skipping_env.client, task_queue=queue, workflows=[StorageMaintenance], activities=[loaded.maintain_storage]
    ):
        report = await time_skipping_env.client.execute_workflow(
            StorageMaintenance.run,
            MaintenanceRequest(now=NOW),
            id=f"m-{queue}",
            task_queue=queue,
            result_type=MaintenanceReport,
        )
    assert report.rollup_rows["rollups_1h"] > 0


async def test_spend_reads_the_hourly_rollups_once_raw_events_are_gone(loaded, database_url):
    services = ("chat", "search", "summarize")  # sample_events' services, a third each
    await ActivityEnvironment().run(loaded.maintain_storage, MaintenanceRequest(now=NOW, lateness_s=0))
    with psycopg.connect(database_url) as conn:
        before = {s: analysis_repo.spent_since(conn, s, START.replace(minute=0, second=0), NOW) for s in services}
        conn.execute("DELETE FROM events")  # as if expired: only the rollups know
        after = {s: analysis_repo.spent_since(conn, s, START.replace(minute=0, second=0), NOW) for s in services}
        mark = conn.execute("SELECT complete_until FROM rollup_watermarks WHERE rollup = 'rollups_1h'").fetchone()[0]
    assert before == {s: pytest.approx(1.0) for s in services}  # 1,000 requests at 0.001 USD each
    # Hours the rollup completed are still counted; events after its watermark were raw only.
    complete = sum(1 for i in range(3000) if START + timedelta(seconds=0.6 * i) < mark)
    assert sum(after.values()) == pytest.approx(complete * 0.001)
