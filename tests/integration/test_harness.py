"""The harness's servers are real: Postgres stores and returns data, Temporal skips time, Kafka has groups."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from llm_optimizer.events import LLMEvent, parse_event
from storage.events_repo import EVENT_COLUMNS, land_events


def make_event(**overrides) -> LLMEvent:
    base = {
        "event_id": str(uuid.uuid4()),
        "timestamp": datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
        "service": "chat",
        "endpoint": "/v1/chat",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "config_version": "v1",
        "variant": "baseline",
        "latency_ms": 812.5,
        "ttft_ms": 120.0,
        "tokens_in": 1200,
        "tokens_out": 300,
        "cost_usd": 0.00036,
        "status": "ok",
        "quality_score": 0.91,
        "user_feedback": 1.0,
        "request_key": "user-42",
        "attributes": {"region": "eu", "retry": False, "attempt": 1},
    }
    return parse_event({**base, **overrides})


def read_events(db, service: str, start: datetime, end: datetime) -> list[LLMEvent]:
    """The events of `service` with start <= timestamp < end, back from the events table as LLMEvent."""
    columns = [c for c in EVENT_COLUMNS if c != "source"]
    rows = db.execute(
        f"SELECT {', '.join(columns)} FROM events WHERE service = %s AND ts >= %s AND ts < %s ORDER BY ts, event_id",
        (service, start, end),
    ).fetchall()
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    for record in records:
        record["timestamp"] = record.pop("ts")
    return [LLMEvent.model_validate({k: v for k, v in r.items() if v is not None}) for r in records]


def test_event_round_trips_through_postgres(db):
    sent = [make_event(), make_event(status="error", error_type="rate_limit", quality_score=None)]
    result = land_events(db, sent, source="test")
    db.commit()
    assert result.accepted == 2
    start = datetime(2026, 11, 1, tzinfo=UTC)
    got = list(read_events(db, "chat", start, start + timedelta(days=1)))
    assert sorted(got, key=lambda e: e.event_id) == sorted(sent, key=lambda e: e.event_id)


@workflow.defn(sandboxed=False)
class SleepsOneHour:
    @workflow.run
    async def run(self) -> str:
        started = workflow.now()
        await workflow.sleep(timedelta(hours=1))
        return str(workflow.now() - started)


async def test_one_hour_timer_finishes_at_once_under_time_skipping(time_skipping_env: WorkflowEnvironment):
    client = time_skipping_env.client
    async with Worker(client, task_queue="harness", workflows=[SleepsOneHour]):
        loop = asyncio.get_running_loop()
        wall_start = loop.time()
        elapsed_in_workflow = await client.execute_workflow(
            SleepsOneHour.run, id=f"sleep-{uuid.uuid4()}", task_queue="harness"
        )
        wall = loop.time() - wall_start
    assert elapsed_in_workflow.startswith("1:00:00")
    assert wall < 30, f"an hour of workflow time took {wall:.1f}s of wall time"


async def test_temporal_dev_server_has_the_projects_search_attributes(temporal_client):
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    response = await temporal_client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=temporal_client.namespace)
    )
    assert {"Service", "CycleState", "ConfigVersion"} <= set(response.custom_attributes)


async def test_kafka_produces_and_consumes_with_a_consumer_group(kafka_bootstrap: str):
    topic = f"harness-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"message-{i}".encode(), key=str(i).encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"group-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    received: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(received) < 10:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    received.extend(r.value for r in records)
        await consumer.commit()
        committed = {tp: await consumer.committed(tp) for tp in consumer.assignment()}
    finally:
        await consumer.stop()
    assert sorted(received) == sorted(f"message-{i}".encode() for i in range(10))
    assert sum(committed.values()) == 10, committed
