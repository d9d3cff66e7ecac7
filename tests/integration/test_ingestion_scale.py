"""Ingestion spread over workers: one Ingestion runs several consumers of one group on two worker processes; one
worker is killed mid-stream and the other takes its consumers over (Temporal's heartbeat timeout, Kafka's group
rebalance) with every event landed exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from helpers.servers import settings_for, start_worker_process, wait_for
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.ingestion import ensure_topic
from llm_optimizer.payloads import ConsumeReport, ConsumeRequest, IngestionInput, IngestionStatus
from simulator.samples import sample_events
from workflows.ingestion import IngestionWorkflow

PARTITIONS = 4
CONSUMERS = 4
RATE = 1000  # events/s, produced until the test has seen ingestion go on after the kill
CHUNK = 150


def landed(database_url: str) -> tuple[int, int]:
    """(rows, distinct event ids) in `events`."""
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()


async def produce_steadily(
    bootstrap: str, topic: str, messages: list[bytes], produced: list[int], stop: asyncio.Event
) -> None:
    """Send `messages` at RATE per second until `stop`, counting what the broker acknowledged in `produced[0]`."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        started = time.monotonic()
        for i in range(0, len(messages), CHUNK):
            if stop.is_set():
                return
            futures = [await producer.send(topic, m) for m in messages[i : i + CHUNK]]
            await asyncio.gather(*futures)
            produced[0] += len(futures)
            await asyncio.sleep(max(started + (i + CHUNK) / RATE - time.monotonic(), 0))
    finally:
        await producer.stop()


async def consumer_workers(handle) -> dict[str, int]:
    """Running consume_topic activities per worker identity (`pid@host`)."""
    description = await handle.describe()
    placed: dict[str, int] = {}
    for pending in description.raw_description.pending_activities:
        if pending.last_worker_identity and pending.heartbeat_details.payloads:  # started, and heartbeating
            placed[pending.last_worker_identity] = placed.get(pending.last_worker_identity, 0) + 1
    return placed


@pytest.mark.timeout(120)
async def test_a_killed_worker_hands_its_consumers_to_the_other_and_every_event_lands_once(
    stack, database_url, temporal_client, tmp_path
):
    topic = f"events-{uuid.uuid4().hex[:8]}"
    settings = settings_for(
        stack,
        database_url,
        kafka={"topic": topic, "partitions": PARTITIONS, "batch_max_events": 300, "consume_run_s": 3},
    )
    await ensure_topic(settings, topic)
    events = list(sample_events(60 * RATE, seed=17))
    messages = [e.model_dump_json().encode() for e in events]
    workers = [start_worker_process(settings, tmp_path / f"worker-{i}.log") for i in range(2)]
    produced, stop = [0], asyncio.Event()
    producing = asyncio.create_task(produce_steadily(stack.kafka_bootstrap, topic, messages, produced, stop))
    try:
        handle = await temporal_client.start_workflow(
            "Ingestion",
            {
                "topic": topic,
                "group_id": settings.kafka.group_id,
                "run_s": 3,
                "heartbeat_timeout_s": 3,
                "consumers": CONSUMERS,
            },
            id=f"ingestion/{topic}",
            task_queue=settings.temporal.task_queue,
        )
        # Both workers run consumers (Temporal places each run on any poller) and rows are landing.
        placed = await wait_for(
            lambda: _both_placed(handle, workers, database_url), 40, "consumers running on both workers"
        )
        victim = workers[0]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        at_kill = landed(database_url)[0]
        produced_at_kill = produced[0]
        assert not producing.done(), "the producer finished before the kill: raise the event count"

        # The survivor takes the dead worker's consumers over and goes on with what is produced after the kill.
        survivor = f"{workers[1].pid}@"
        await wait_for(lambda: _all_on(handle, survivor), 30, "every consumer on the surviving worker", interval=0.5)
        await wait_for(lambda: landed(database_url)[0] > produced_at_kill, 30, "events produced after the kill")
        await asyncio.sleep(1)
        stop.set()
        await producing
        total = produced[0]
        await wait_for(lambda: landed(database_url)[0] >= total, 40, f"{total} events")
        await asyncio.sleep(1.5)  # a batch still in flight would show up as an extra row now
        rows, distinct = landed(database_url)
        assert (rows, distinct) == (total, total)
        with psycopg.connect(database_url) as conn:
            ids = {r[0] for r in conn.execute("SELECT event_id FROM events")}
            dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
            marks = dict(
                conn.execute("SELECT partition, committed_offset FROM ingestion_watermarks WHERE topic = %s", (topic,))
            )
        assert ids == {e.event_id for e in events[:total]} and dead == 0
        # Every partition's watermark is at its end: all consumers' batches moved them, none went backwards.
        assert sorted(marks) == list(range(PARTITIONS))
        assert sum(marks.values()) == total

        status = await handle.query("status", result_type=IngestionStatus)
        # Totals sum every consumer's runs; the dead worker's last beats may lag behind what it had committed.
        assert 0 < status.totals.accepted <= total
        await handle.cancel()
    finally:
        stop.set()
        producing.cancel()
        for proc in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    print(f"killed a worker running {placed} consumers with {at_kill} events landed, {produced_at_kill} produced")


async def _both_placed(handle, workers, database_url: str) -> dict[str, int] | None:
    placed = await consumer_workers(handle)
    pids = {identity.split("@")[0] for identity in placed}
    if {str(w.pid) for w in workers} <= pids and landed(database_url)[0] > 0:
        return placed
    return None


async def _all_on(handle, survivor: str) -> bool:
    placed = await consumer_workers(handle)
    return sum(placed.values()) == CONSUMERS and all(identity.startswith(survivor) for identity in placed)


async def test_consumers_run_side_by_side_and_one_failing_backs_off_alone(time_skipping_env):
    """The workflow's side of several consumers, with a scripted `consume_topic`: consumer 1 always fails, 0 and 2
    succeed. Totals add up every run, the lag is the sum of the consumers', the failing one turns the ingestion
    stuck without stopping the others."""
    calls: dict[int, int] = {}

    @activity.defn(name="consume_topic")
    async def consume_topic(request: ConsumeRequest) -> ConsumeReport:
        calls[request.consumer] = calls.get(request.consumer, 0) + 1
        await asyncio.sleep(0.05)
        if request.consumer == 1:
            raise ApplicationError("broker unreachable", {"accepted": 0}, type="KafkaConnectionError")
        return ConsumeReport(accepted=10, batches=1, lag=2 * (request.consumer + 1))

    queue = f"tq-{uuid.uuid4().hex[:8]}"
    client = time_skipping_env.client
    async with Worker(client, task_queue=queue, workflows=[IngestionWorkflow], activities=[consume_topic]):
        handle = await client.start_workflow(
            "Ingestion",
            IngestionInput(topic="t", group_id="g", run_s=1, consumers=3),
            id=f"ingestion/{queue}",
            task_queue=queue,
        )

        async def stuck() -> IngestionStatus | None:
            status = await handle.query("status", result_type=IngestionStatus)
            return status if status.stuck and status.consecutive_failures >= 3 else None

        status = await wait_for(stuck, 30, "consumer 1 failing three times in a row")
        assert "KafkaConnectionError: broker unreachable" in (status.last_error or "")
        assert status.lag == 2 + 6  # consumers 0 and 2; consumer 1 never reported one
        assert status.totals.accepted == 10 * status.totals.batches > 0
        # The healthy consumers went on meanwhile: many more runs than the failing one's.
        assert set(calls) == {0, 1, 2} and min(calls[0], calls[2]) > calls[1]
        await handle.cancel()
