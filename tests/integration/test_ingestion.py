"""Ingestion on the real servers: Kafka (Tansu) -> Temporal worker -> Postgres, exactly once, nothing lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import psycopg
import pytest
from helpers.fixture_prices import fixture_book
from helpers.kafka import committed_offsets, count, unique_topic
from helpers.servers import Message, produce, settings_for, start_worker_process, wait_for
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import ingestion as ingestion_module
from activities.ingestion import IngestionActivities, ensure_topic
from llm_optimizer.events import SENTINEL_ANOMALY_EVENT_TYPE, to_cloudevent
from llm_optimizer.payloads import ConsumeRequest, IngestionStatus
from simulator.samples import sample_events
from starter.ingest import ingestion_status, start_ingestion
from worker import serving


async def test_good_events_land_once_and_everything_else_is_dead_lettered(stack, database_url, temporal_client):
    topic = unique_topic()
    settings = settings_for(stack, database_url, kafka={"topic": topic, "max_message_bytes": 8192, "consume_run_s": 2})
    await ensure_topic(settings, topic)

    events = list(sample_events(300, seed=1))
    structured = [json.dumps(to_cloudevent(e)).encode() for e in events[:100]]
    binary = []
    for e in events[100:200]:
        envelope = to_cloudevent(e)
        headers = [(f"ce_{k}", str(v).encode()) for k, v in envelope.items() if k != "data"]
        binary.append((json.dumps(envelope["data"]).encode(), headers))
    bare = [e.model_dump_json().encode() for e in events[200:]]
    poison = [
        b"\xff\xfe not utf-8",
        b"{not json",
        json.dumps({**json.loads(events[0].model_dump_json()), "event_id": "bad", "tokens_in": -1}).encode(),
        b"x" * 9000,
    ]
    anomaly = json.dumps(
        {
            "specversion": "1.0",
            "type": SENTINEL_ANOMALY_EVENT_TYPE,
            "source": "llm-sentinel",
            "id": "alert-1",
            "time": "2026-11-09T12:05:30Z",
            "data": {"anomaly_type": "latency_spike", "severity": "high", "affected_services": ["chat"]},
        }
    ).encode()
    duplicates = structured[:20]  # the same messages delivered twice
    messages: list[Message] = [*structured[:50], *poison[:2], *structured[50:], *binary, anomaly, *poison[2:], *bare]
    await produce(stack.kafka_bootstrap, topic, [*messages, *duplicates])

    async with serving(temporal_client, settings):
        handle = await start_ingestion(temporal_client, settings, topic)
        await wait_for(lambda: count(database_url, "events") == 300, 60, "300 events in Postgres")
        await wait_for(lambda: count(database_url, "dead_letters") == 4, 30, "4 dead letters")

        async def totals_complete() -> IngestionStatus | None:
            status = await ingestion_status(temporal_client, topic)
            return status if status.totals.accepted == 300 else None

        status = await wait_for(totals_complete, 30, "the workflow's totals")
        assert status.totals.duplicates == 20
        assert status.totals.dead_lettered == 4
        assert status.totals.anomalies == 1
        # The Temporal UI's User Metadata tab says the same in words.
        shown = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert f"**Consuming** `{topic}`" in shown.current_details, shown.current_details
        assert "Landed 300 events" in shown.current_details and "4 dead-lettered" in shown.current_details

        await handle.cancel()
        await wait_for(
            lambda: _status_is(handle, WorkflowExecutionStatus.CANCELED), 60, "the workflow to stop when cancelled"
        )

    with psycopg.connect(database_url) as conn:
        reasons = conn.execute("SELECT position, code, reason, raw FROM dead_letters ORDER BY id").fetchall()
        anomalies = conn.execute("SELECT service, severity FROM anomalies").fetchall()
        ids = {r[0] for r in conn.execute("SELECT event_id FROM events")}
    assert ids == {e.event_id for e in events}
    assert anomalies == [("chat", "high")]
    by_raw = {bytes(raw): (position, code, reason) for position, code, reason, raw in reasons}
    assert by_raw[poison[0]][1] == "not_utf8" and "not UTF-8" in by_raw[poison[0]][2]
    assert by_raw[poison[1]][1] == "not_json" and "not valid JSON" in by_raw[poison[1]][2]
    assert by_raw[poison[2]][1] == "invalid_event" and "tokens_in = -1" in by_raw[poison[2]][2]
    assert by_raw[poison[3]][1] == "too_large" and "larger than kafka.max_message_bytes" in by_raw[poison[3]][2]
    for position, _, _ in by_raw.values():
        name, partition, offset = position.rsplit("/", 2)
        assert name == topic and partition.isdigit() and offset.isdigit()


async def _status_is(handle, expected) -> bool:
    return (await handle.describe()).status == expected


async def test_worker_killed_mid_batch_then_every_event_is_present_exactly_once(
    stack, database_url, temporal_client, repo_root, tmp_path
):
    total = 40_000
    topic = unique_topic()
    settings = settings_for(stack, database_url, kafka={"topic": topic, "batch_max_events": 500, "consume_run_s": 5})
    await ensure_topic(settings, topic)
    await produce(stack.kafka_bootstrap, topic, [e.model_dump_json().encode() for e in sample_events(total, seed=2)])

    log_path = tmp_path / "worker.log"
    first = start_worker_process(settings, log_path)
    second = None
    try:
        handle = await temporal_client.start_workflow(
            "Ingestion",
            {"topic": topic, "group_id": settings.kafka.group_id, "run_s": 5, "heartbeat_timeout_s": 3},
            id=f"ingestion/{topic}",
            task_queue=settings.temporal.task_queue,
        )
        await wait_for(lambda: count(database_url, "events") > 0, 60, "the first batch", interval=0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        landed_when_killed = count(database_url, "events")
        assert landed_when_killed < total, "the worker finished before it could be killed: raise `total`"

        second = start_worker_process(settings, log_path)
        await wait_for(lambda: count(database_url, "events") >= total, 120, f"{total} events after the restart")
        await asyncio.sleep(1)  # anything still in flight would show up as an extra row now
        assert count(database_url, "events") == total
        assert count(database_url, "dead_letters") == 0
        await handle.cancel()
    finally:
        for proc in (first, second):
            if proc and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    print(f"killed the worker with {landed_when_killed} of {total} events landed")


@pytest.mark.timeout(300)
async def test_postgres_down_for_a_while_loses_nothing_and_commits_no_offsets(stack, database_url, temporal_client):
    topic = unique_topic()
    settings = settings_for(stack, database_url, kafka={"topic": topic, "consume_run_s": 2})
    await ensure_topic(settings, topic)
    before = [e.model_dump_json().encode() for e in sample_events(1000, seed=3)]
    during = [e.model_dump_json().encode() for e in sample_events(1000, seed=4)]

    async with serving(temporal_client, settings):
        await produce(stack.kafka_bootstrap, topic, before)
        handle = await start_ingestion(temporal_client, settings, topic)
        await wait_for(lambda: count(database_url, "events") == 1000, 60, "the first 1000 events")

        async def all_committed() -> bool:  # rows land before their batch's offsets are committed
            return await committed_offsets(stack.kafka_bootstrap, topic, settings.kafka.group_id) == 1000

        await wait_for(all_committed, 30, "all 1000 offsets committed")

        stack.postgres.down()
        try:
            await produce(stack.kafka_bootstrap, topic, during)
            await asyncio.sleep(8)  # the activity fails and is retried while the database is gone
            assert await committed_offsets(stack.kafka_bootstrap, topic, settings.kafka.group_id) == 1000

            async def failing() -> IngestionStatus | None:  # the workflow sees each failed run, with its error
                status = await ingestion_status(temporal_client, topic)
                return status if status.consecutive_failures >= 1 else None

            status = await wait_for(failing, 30, "a failed run in the status")
            assert status.last_error.startswith(("OperationalError: ", "AdminShutdown: ", "PoolTimeout: ")), (
                status.last_error
            )
            assert status.last_error_at is not None
        finally:
            stack.postgres.up()

        await wait_for(lambda: count(database_url, "events") == 2000, 120, "all 2000 events after Postgres is back")

        async def recovered() -> IngestionStatus | None:
            status = await ingestion_status(temporal_client, topic)
            return status if status.consecutive_failures == 0 and status.totals.accepted == 2000 else None

        assert not (await wait_for(recovered, 60, "a successful run after the outage")).stuck
        await handle.cancel()
    assert count(database_url, "dead_letters") == 0


async def test_a_group_join_that_does_not_settle_fails_the_run_with_its_reason(stack, database_url):
    """Tansu assigns partitions half a session timeout after a join (3 s here): with a 1 s bound the run fails at
    once with KafkaJoinTimeout, naming the setting, instead of hanging until its start-to-close timeout."""
    topic = unique_topic()
    settings = settings_for(stack, database_url, kafka={"topic": topic, "join_timeout_s": 1})
    await ensure_topic(settings, topic)
    activities = IngestionActivities(settings, fixture_book())
    request = ConsumeRequest(topic=topic, group_id=settings.kafka.group_id, run_s=5)
    started = asyncio.get_running_loop().time()
    try:
        with pytest.raises(ApplicationError) as failure:
            await ActivityEnvironment().run(activities.consume_topic, request)
    finally:
        await activities.close()
    assert failure.value.type == "KafkaJoinTimeout"
    assert "kafka.join_timeout_s = 1 s" in str(failure.value)
    # Failed soon after the bound (leaving the group takes a few seconds more on a busy machine), not after the
    # activity's start-to-close timeout of minutes.
    assert asyncio.get_running_loop().time() - started < 30


def _events(n: int, seed: int) -> list[Message]:
    return [e.model_dump_json().encode() for e in sample_events(n, seed=seed)]


def _key(request: ConsumeRequest) -> tuple[str, str, int]:
    return (request.topic, request.group_id, request.consumer)


async def _a_run_landed(stack, database_url: str, seed: int):
    """A fresh topic and consumer whose first run landed 300 events: (activities, request, env, its consumer)."""
    topic = unique_topic()
    settings = settings_for(stack, database_url, kafka={"topic": topic})
    await ensure_topic(settings, topic)
    ingestion = IngestionActivities(settings, fixture_book())
    request = ConsumeRequest(topic=topic, group_id=f"g-{topic}", run_s=3)
    env = ActivityEnvironment()
    await produce(stack.kafka_bootstrap, topic, _events(300, seed=seed))
    assert (await env.run(ingestion.consume_topic, request)).accepted == 300
    return ingestion, request, env, ingestion._consumers[_key(request)]


async def test_a_postgres_outage_inside_a_run_costs_neither_the_run_nor_the_group_membership(stack, database_url):
    """Postgres goes away while a run has a batch to land and comes back within `LANDING_RETRY_S`: the run retries
    the landing and succeeds, with the same consumer (no rejoin of the group), and every event lands once."""
    ingestion, request, env, member = await _a_run_landed(stack, database_url, seed=5)
    topic, key = request.topic, _key(request)
    try:
        # The next run follows at once (as the workflow's does) and finds Postgres gone with a batch to land.
        run = asyncio.create_task(env.run(ingestion.consume_topic, request.model_copy(update={"run_s": 20})))
        stack.postgres.down()
        try:
            await produce(stack.kafka_bootstrap, topic, _events(300, seed=6))
            await asyncio.sleep(4)  # the landing fails and is tried again meanwhile
            assert not run.done()
        finally:
            stack.postgres.up()
        report = await run
        assert report.accepted == 300
        assert ingestion._consumers[key] is member, "the consumer was kept: no rejoin"
    finally:
        await ingestion.close()
    assert count(database_url, "events") == 600
    assert await committed_offsets(stack.kafka_bootstrap, topic, request.group_id) == 600


async def test_a_run_failed_by_postgres_keeps_its_consumer_rewound_to_the_committed_offsets(
    stack, database_url, monkeypatch
):
    """An outage longer than the landing's retries fails the run (the workflow sees it); the consumer stays in the
    group, rewound, and the next run lands what the failed one had fetched, once."""
    monkeypatch.setattr(ingestion_module, "LANDING_RETRY_S", 2.0)
    ingestion, request, env, member = await _a_run_landed(stack, database_url, seed=7)
    topic, key = request.topic, _key(request)
    try:
        stack.postgres.down()
        try:
            await produce(stack.kafka_bootstrap, topic, _events(300, seed=8))
            with pytest.raises(ApplicationError) as failure:
                await env.run(ingestion.consume_topic, request.model_copy(update={"run_s": 10}))
            assert failure.value.type in ("OperationalError", "PoolTimeout"), failure.value.type
            assert ingestion._consumers[key] is member, "a failure of Postgres keeps the consumer"
        finally:
            stack.postgres.up()
        assert (await env.run(ingestion.consume_topic, request)).accepted == 300
        assert ingestion._consumers[key] is member
    finally:
        await ingestion.close()
    assert count(database_url, "events") == 600
    assert await committed_offsets(stack.kafka_bootstrap, topic, request.group_id) == 600


async def test_a_run_ends_with_its_batches_committed_when_its_worker_shuts_down(stack, database_url):
    """A deploy or a restart (SIGTERM): the run returns at once with what it landed, instead of being cancelled
    after the worker's graceful timeout and retried after a heartbeat timeout."""
    topic = unique_topic()
    settings = settings_for(stack, database_url, kafka={"topic": topic})
    await ensure_topic(settings, topic)
    ingestion = IngestionActivities(settings, fixture_book())
    env = ActivityEnvironment()
    request = ConsumeRequest(topic=topic, group_id=f"g-{topic}", run_s=300)
    try:
        await produce(stack.kafka_bootstrap, topic, _events(300, seed=9))
        run = asyncio.create_task(env.run(ingestion.consume_topic, request))
        await wait_for(lambda: count(database_url, "events") == 300, 60, "the events landed")
        started = asyncio.get_running_loop().time()
        env.worker_shutdown()
        report = await asyncio.wait_for(run, 120)
        # Far sooner than the 300 s run (one fetch wait and a commit; generous on a busy machine).
        assert asyncio.get_running_loop().time() - started < 60
    finally:
        await ingestion.close()
    assert report.accepted == 300 and report.lag == 0
    assert await committed_offsets(stack.kafka_bootstrap, topic, request.group_id) == 300
