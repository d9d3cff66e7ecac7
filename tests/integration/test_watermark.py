"""Complete windows: ingestion watermarks, and a canary stage never judged on a window still arriving.

The end-to-end test pauses ingestion (its worker stops) during a bake while traffic keeps flowing into Kafka, and
resumes it while the judge waits: the verdict is on the whole window, as it stands once everything has landed.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from aiokafka import AIOKafkaProducer
from helpers.fixture_prices import fixture_book
from helpers.servers import produce, settings_for, wait_for
from temporalio.testing import ActivityEnvironment

from activities import LoopActivitySet
from activities.ingestion import IngestionActivities, ensure_topic
from llm_optimizer.canary_judge import JudgeThresholds
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.events import LLMEvent
from llm_optimizer.payloads import (
    ConsumeRequest,
    JudgeRequest,
    ObserveRequest,
    RolloutInput,
    RolloutOutcome,
    RolloutRecord,
    RolloutStatus,
)
from llm_optimizer.resolution import Assignment
from llm_optimizer.strategies import RolloutStage
from simulator.samples import sample_events
from starter.ingest import start_ingestion
from storage import audit_repo, configs_repo, watermarks_repo
from storage.events_repo import land_events
from worker import serving
from workflows import CanaryRollout


def test_a_service_waits_only_for_the_topics_that_carry_it(db):
    assert watermarks_repo.for_service(db, "http-only").covers(datetime.now(UTC) + timedelta(days=1))
    now = datetime.now(UTC)
    watermarks_repo.landed(db, "t1", {0: (10, now - timedelta(seconds=30)), 1: (4, now - timedelta(seconds=5))}, {})
    watermarks_repo.landed(db, "t1", {}, {"chat": now})
    watermarks_repo.landed(db, "t2", {0: (3, now - timedelta(seconds=60))}, {"old": now - timedelta(days=2)})
    chat = watermarks_repo.for_service(db, "chat")
    assert chat.topic == "t1" and chat.complete_until == now - timedelta(seconds=30), "the slowest partition"
    assert not chat.covers(now) and chat.behind(now) == 30
    # A topic that has not carried the service's events within the horizon holds nothing back.
    assert watermarks_repo.for_service(db, "old").complete_until is None
    # Watermarks only move forward: a redelivery of older records leaves them.
    watermarks_repo.landed(db, "t1", {0: (8, now - timedelta(minutes=5))}, {})
    assert watermarks_repo.for_service(db, "chat").complete_until == now - timedelta(seconds=30)
    watermarks_repo.caught_up(db, "t1", {0: now, 1: now})
    assert watermarks_repo.for_service(db, "chat").covers(now)
    offsets = db.execute("SELECT committed_offset FROM ingestion_watermarks WHERE topic = 't1' ORDER BY 1").fetchall()
    assert offsets == [(4,), (10,)]


SERVICE = "latecomer"


def _event(version: str, rng: np.random.Generator) -> bytes:
    event = LLMEvent(
        event_id=str(uuid.uuid4()),
        timestamp=datetime.now(UTC),
        service=SERVICE,
        endpoint="/v1/chat/completions",
        model="gpt-4o" if version == "v1" else "gpt-4o-mini",
        provider="openai",
        config_version=version,
        latency_ms=float(rng.normal(800, 40)),
        tokens_in=500,
        tokens_out=100,
        cost_usd=0.002,
        status="ok",
        quality_score=float(np.clip(rng.normal(0.85, 0.02), 0, 1)),
    )
    return event.model_dump_json().encode()


async def _traffic(bootstrap: str, topic: str, stop: asyncio.Event, sent: list[datetime]) -> None:
    """Ten events every 0.1 s, half on each version, into Kafka (none over HTTP)."""
    rng = np.random.default_rng(3)
    while not stop.is_set():
        await produce(bootstrap, topic, [_event("v1" if i % 2 else "v2", rng) for i in range(10)])
        sent.append(datetime.now(UTC))
        await asyncio.sleep(0.1)


def _landed(database_url: str, since: datetime, until: datetime, version: str | None = None) -> int:
    """Events of the service landed in [since, until): of one config version, or of all."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM events WHERE service = %s AND ts >= %s AND ts < %s "
            "AND (%s::text IS NULL OR config_version = %s)",
            (SERVICE, since, until, version, version),
        ).fetchone()[0]


async def test_a_stage_whose_window_is_still_arriving_is_judged_only_once_it_has_landed(
    stack, database_url, temporal_client
):
    topic = f"late-{uuid.uuid4().hex[:8]}"
    kafka = {"topic": topic, "consume_run_s": 1}
    ingest = settings_for(stack, database_url, kafka=kafka)
    loop = settings_for(stack, database_url, kafka=kafka)
    await ensure_topic(ingest, topic)
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o-mini", provider="openai"))
        configs_repo.set_assignment(conn, Assignment(service=SERVICE, active_version="v1"), updated_by="test")
        conn.commit()

    stop, sent = asyncio.Event(), []
    traffic = asyncio.create_task(_traffic(stack.kafka_bootstrap, topic, stop, sent))
    try:
        async with serving(temporal_client, loop):
            async with serving(temporal_client, ingest):
                await start_ingestion(temporal_client, ingest, topic)

                def flowing():
                    with psycopg.connect(database_url) as conn:
                        landed = watermarks_repo.for_service(conn, SERVICE)
                    # The topic carries the service (a watermark of its own), up to a few seconds ago.
                    return landed.complete_until is not None and landed.covers(datetime.now(UTC) - timedelta(seconds=3))

                await wait_for(flowing, 30, "events landing with a watermark")
                handle = await temporal_client.start_workflow(
                    CanaryRollout.run,
                    RolloutInput(
                        rollout_id=f"canary/{SERVICE}/v2@late",
                        service=SERVICE,
                        from_version="v1",
                        to_version="v2",
                        stages=[RolloutStage(percent=50, bake_s=4), RolloutStage(percent=100, bake_s=0)],
                        thresholds=JudgeThresholds(min_samples=20),
                        data_wait_s=60,
                    ),
                    id=f"canary/{SERVICE}/v2/{uuid.uuid4().hex[:6]}",
                    task_queue=loop.temporal.task_queue,
                )
                await asyncio.sleep(1)
            # Ingestion is paused (its worker has stopped); the traffic goes on into Kafka.

            async def judging() -> RolloutStatus | None:
                status = await handle.query(CanaryRollout.status)
                return status if status.state == "judging" else None

            await wait_for(judging, 30, "the stage's judge")
            await asyncio.sleep(2)
            status = await handle.query(CanaryRollout.status)
            assert status.state == "judging" and not status.verdicts, "the judge waits for the window to land"
            missing_at_judge = len(sent) * 10 - _landed(
                database_url, datetime.min.replace(tzinfo=UTC), datetime.now(UTC)
            )
            assert missing_at_judge > 50, "the window was still arriving when the bake ended"

            async with serving(temporal_client, ingest):  # resumed
                outcome: RolloutOutcome = await asyncio.wait_for(handle.result(), 60)
        stop.set()
        await traffic
    finally:
        stop.set()
        traffic.cancel()

    judged = next(v.verdict for v in outcome.verdicts if v.stage == 0)
    assert not judged.data_late
    request = await _judge_request(handle, temporal_client)
    baseline = _landed(database_url, request.window_start, request.window_end, "v1")
    canary = _landed(database_url, request.window_start, request.window_end, "v2")
    # Judged on the whole window: every canary request, and the baseline's (all of them, before the baseline is
    # sampled to the canary's time profile: llm_optimizer/concurrent_control.py).
    assert judged.canary_requests == canary, "judged on the whole window"
    assert f"{judged.baseline_requests} of {baseline} requests" in judged.comparison, judged.comparison
    assert judged.baseline_requests > 100 and judged.canary_requests > 100


async def _judge_request(handle, client) -> JudgeRequest:
    async for event in handle.fetch_history_events():
        attributes = event.activity_task_scheduled_event_attributes
        if (
            event.HasField("activity_task_scheduled_event_attributes")
            and attributes.activity_type.name == "judge_stage"
        ):
            return client.data_converter.payload_converter.from_payloads(attributes.input.payloads, [JudgeRequest])[0]
    raise AssertionError("no judge_stage in the history")


async def test_observe_and_judge_say_late_when_the_window_has_not_landed(stack, database_url):
    """The activities themselves (ActivityEnvironment): a lagging topic makes both late after their wait; a sample
    identical to the previous judgement's is late too."""
    now = datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o-mini", provider="openai"))
        configs_repo.set_assignment(conn, Assignment(service=SERVICE, active_version="v1"), updated_by="test")
        rng = np.random.default_rng(5)
        events = [LLMEvent.model_validate_json(_event("v1" if i % 2 else "v2", rng)) for i in range(60)]
        land_events(conn, events, source="test")
        watermarks_repo.landed(conn, "slow", {0: (1, now - timedelta(minutes=10))}, {SERVICE: now})
        audit_repo.record_rollout(
            conn,
            RolloutRecord(
                rollout_id="r1", service=SERVICE, from_version="v1", to_version="v2", strategy="canary", state="running"
            ),
        )
        conn.commit()
    loop = LoopActivitySet(settings_for(stack, database_url), fixture_book())
    env = ActivityEnvironment()
    window = {"window_start": now - timedelta(minutes=1), "window_end": now + timedelta(seconds=1)}

    observed = await env.run(loop.decisions.observe, ObserveRequest(service=SERVICE, data_wait_s=1, **window))
    assert observed.active_version == "v1"
    assert observed.data_late.startswith("topic slow has landed latecomer's events up to ")
    request = JudgeRequest(
        rollout_id="r1",
        service=SERVICE,
        baseline_version="v1",
        canary_version="v2",
        stage=0,
        attempt=0,
        percent=50,
        thresholds=JudgeThresholds(min_samples=10),
        data_wait_s=1,
        **window,
    )
    verdict = await env.run(loop.rollout.judge_stage, request)
    assert verdict.data_late and verdict.verdict == "inconclusive" and verdict.reasons[0].startswith("data late: ")

    with psycopg.connect(database_url) as conn:
        watermarks_repo.caught_up(conn, "slow", {0: now + timedelta(minutes=1)})
        conn.commit()
    assert (await env.run(loop.decisions.observe, ObserveRequest(service=SERVICE, **window))).data_late is None
    first = await env.run(loop.rollout.judge_stage, request.model_copy(update={"attempt": 1}))
    assert not first.data_late and (first.baseline_requests, first.canary_requests) == (30, 30)
    again = await env.run(
        loop.rollout.judge_stage, request.model_copy(update={"attempt": 2, "previous_requests": (30, 30)})
    )
    assert again.data_late and "the same 30 baseline / 30 canary requests" in again.reasons[0]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT attempt, verdict FROM rollout_verdicts ORDER BY attempt").fetchall()
    assert [r[1] for r in rows] == ["inconclusive", first.verdict, "inconclusive"]


async def test_an_idle_partition_beside_a_busy_one_never_holds_the_watermark_back(stack, database_url):
    """Both partitions are caught up while the topic is quiet; then only partition 0 gets events, without a pause.
    The idle partition 1 is complete up to its last fetch all the same: the service's window is complete within
    seconds, not held back at the moment the traffic began."""
    topic = f"idle-{uuid.uuid4().hex[:8]}"
    # A fetch waits up to 3 s for records: with an event every 50 ms, none comes back empty once traffic flows.
    settings = settings_for(stack, database_url, kafka={"topic": topic, "partitions": 2, "batch_max_wait_ms": 3000})
    await ensure_topic(settings, topic)
    ingestion = IngestionActivities(settings, fixture_book())
    request = ConsumeRequest(topic=topic, group_id=f"g-{topic}", run_s=40)
    run = asyncio.create_task(ActivityEnvironment().run(ingestion.consume_topic, request))
    began, stop = asyncio.Event(), asyncio.Event()

    def watermarks() -> int:
        with psycopg.connect(database_url) as conn:
            return conn.execute("SELECT count(*) FROM ingestion_watermarks WHERE topic = %s", (topic,)).fetchone()[0]

    async def partition_0_only() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=False, linger_ms=5)
        await producer.start()
        try:
            seed = 0
            while not stop.is_set():  # every fetch of the consumer finds records on partition 0
                for event in sample_events(20, services=(SERVICE,), start=datetime.now(UTC), seed=seed):
                    await producer.send(topic, event.model_dump_json().encode(), partition=0)
                seed += 1
                began.set()
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()

    producing = None
    try:
        await wait_for(lambda: watermarks() == 2, 60, "both partitions caught up while the topic is quiet")
        producing = asyncio.create_task(partition_0_only())
        await began.wait()
        since = datetime.now(UTC)

        def complete() -> bool:
            with psycopg.connect(database_url) as conn:
                landed = watermarks_repo.for_service(conn, SERVICE)
            # The topic carries the service (its events have landed), and is complete past the traffic's start.
            return landed.complete_until is not None and landed.covers(since + timedelta(seconds=5))

        # Before: partition 1's watermark stayed at the quiet moment for as long as partition 0 stayed busy.
        await wait_for(complete, 25, "the service complete past the start of the traffic on partition 0")
        assert not run.done(), "the run was still consuming the busy partition"
    finally:
        stop.set()
        if producing is not None:
            await producing
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await ingestion.close()
