"""The Observe end of the loop: consume LLM events from Kafka and land them in Postgres.

At-least-once delivery, exactly-once rows: a batch is written in one transaction (duplicate event ids once),
and only then are its offsets committed. Each of the Ingestion's consumers (`ConsumeRequest.consumer`) has its
Kafka consumer kept by the worker across activity runs, so a group does not rebalance every minute; it is dropped
when its next run went to another worker, and when the consumer itself failed.

A message Postgres refuses for its data does not stop its topic: the landing dead-letters it and lands the rest
(storage.events_repo.land). A landing that Postgres fails (an outage, a failover: an OperationalError) is tried
again every second for `LANDING_RETRY_S`, so a short outage costs no run and no rejoin; past that, or on any other
database error, the run fails with nothing committed and its consumer is rewound to the committed offsets but kept:
a healthy group membership is not thrown away, and the next run goes on within seconds of Postgres being back. Any
other failure drops the consumer. The Ingestion workflow retries a failed run and shows the failures in its
`status`, and so do the metrics recorded here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, TopicAlreadyExistsError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from llm_optimizer.decoding import DecodedBatch, Decoder
from llm_optimizer.errors import KafkaJoinTimeout
from llm_optimizer.evaluation.texts import TextPolicy
from llm_optimizer.events import DeadLetterCode
from llm_optimizer.payloads import ConsumeReport, ConsumeRequest, IngestCounts
from llm_optimizer.pricing import Prices
from llm_optimizer.settings import Settings
from runtime import metrics
from storage import watermarks_repo
from storage.db import Database
from storage.events_repo import land

log = logging.getLogger(__name__)

# A partition at its end is complete up to its last fetch answer less this margin: a record stamped (by its
# producer) just before the answer may still have been on its way to the broker.
CAUGHT_UP_MARGIN_S = 1.0
CAUGHT_UP_EVERY_S = 1.0  # how often a consumer moves the watermarks of its partitions at their ends forward
# A kept consumer whose next run has not come here within this long leaves the group: the run went to another
# worker (any worker may take it), and a member nobody polls would hold its partitions until max_poll_interval_ms.
IDLE_CONSUMER_S = 2.0
# The Ingestion workflow's backoff between failed runs (workflows/ingestion.py): doubling from the first, at most
# the last. A consumer kept after a failed run waits that long for its next run before it leaves the group.
RUN_BACKOFF_S = (1.0, 30.0)
# A landing that Postgres fails is tried again every LANDING_RETRY_EVERY_S within the run, for this long.
LANDING_RETRY_S = 20.0
LANDING_RETRY_EVERY_S = 1.0


_Key = tuple[str, str, int]  # topic, group id, consumer index


def _key(request: ConsumeRequest) -> _Key:
    return (request.topic, request.group_id, request.consumer)


@dataclass
class _Marks:
    """What a batch tells the watermarks (storage.watermarks_repo): per partition, the next offset and the newest
    Kafka timestamp landed."""

    topic: str
    partitions: dict[int, tuple[int, datetime]] = field(default_factory=dict)

    @classmethod
    def of(cls, fetched: dict) -> _Marks | None:
        marks = None
        for tp, batch in fetched.items():
            stamps = [r.timestamp for r in batch if r.timestamp is not None and r.timestamp >= 0]
            if not batch or not stamps:
                continue
            marks = marks or cls(topic=tp.topic)
            marks.partitions[tp.partition] = (batch[-1].offset + 1, datetime.fromtimestamp(max(stamps) / 1000, UTC))
        return marks


def _feeds(batch: DecodedBatch) -> dict[str, datetime]:
    """The newest event time of each service in the batch."""
    newest: dict[str, datetime] = {}
    if batch.rows.height:
        for service, ts in batch.rows.group_by("service").agg(pl.col("ts").max()).iter_rows():
            newest[service] = ts
    for event in batch.events:
        if event.service not in newest or event.timestamp > newest[event.service]:
            newest[event.service] = event.timestamp
    return newest


class _Progress:
    def __init__(self, counts: IngestCounts):
        self.counts = counts

    async def heartbeat_forever(self) -> None:
        timeout = activity.info().heartbeat_timeout
        interval = timeout.total_seconds() / 3 if timeout else 5.0
        while True:
            activity.heartbeat(self.counts.model_dump())
            await asyncio.sleep(interval)


class IngestionActivities:
    def __init__(self, settings: Settings, catalog: Prices, db: Database | None = None):
        # `db`: the worker's pool (activities.ActivityRegistry); by default one of this object's own (`close`).
        self.settings = settings
        self._own_db = db is None
        self.db = db or Database(settings)
        self.decoder = Decoder(catalog, source="kafka", max_message_bytes=settings.kafka.max_message_bytes)
        self.texts = TextPolicy.from_settings(settings.evaluation)
        # One Kafka consumer per (topic, group, consumer index): the Ingestion's N consumers are N group members,
        # wherever Temporal places their activities (several may run on this worker).
        self._consumers: dict[_Key, AIOKafkaConsumer] = {}
        self._fresh: set[_Key] = set()  # consumers that have not fetched yet
        self._locks: dict[_Key, asyncio.Lock] = {}
        self._runs: dict[_Key, int] = {}  # runs started per consumer: an idle drop checks none started since
        self._idle_drops: set[asyncio.Task] = set()

    @activity.defn(name="consume_topic")
    async def consume_topic(self, request: ConsumeRequest) -> ConsumeReport:
        """Consume and land batches for `request.run_s` seconds; heartbeats carry the running counts. Reports the
        counts and the lag left behind."""
        key = _key(request)
        details = activity.info().heartbeat_details
        counts = IngestCounts.model_validate(details[0]) if details else IngestCounts()
        progress = _Progress(counts)
        # Heartbeat from a side task: a group join or a large batch may take longer than the heartbeat timeout,
        # and a worker that dies stops heartbeating all the same.
        heartbeats = asyncio.create_task(progress.heartbeat_forever())
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._runs[key] = self._runs.get(key, 0) + 1
        try:
            async with lock:
                try:
                    consumer = await self._consumer(request)
                    await self._run(consumer, request, progress)
                    lag = await _lag(consumer)
                except BaseException as exc:
                    # Records past the committed offsets were fetched: the next run restarts from the offsets, with
                    # this consumer rewound when only Postgres failed, or with a fresh one.
                    if isinstance(exc, psycopg.Error) and await self._rewind(key):
                        self._drop_when_idle(key, IDLE_CONSUMER_S + RUN_BACKOFF_S[1])
                    else:
                        await self.drop_consumer(key)
                    if isinstance(exc, asyncio.CancelledError | ApplicationError) or not isinstance(exc, Exception):
                        raise
                    metrics.record_ingestion_failure(request.topic, exc)
                    # As Temporal would report it (the type's name and the message), with the counts of the batches
                    # this run committed before it failed, which the workflow adds to its totals.
                    raise ApplicationError(str(exc), progress.counts.model_dump(), type=type(exc).__name__) from exc
        finally:
            heartbeats.cancel()
        self._drop_when_idle(key, IDLE_CONSUMER_S)
        metrics.record_ingestion_success(request.topic, time.time())
        activity.heartbeat(progress.counts.model_dump())
        return ConsumeReport(**progress.counts.model_dump(), lag=lag)

    async def _run(self, consumer: AIOKafkaConsumer, request: ConsumeRequest, progress: _Progress) -> None:
        """Fetch and decode batch N+1 while batch N lands (Postgres works on the other core meanwhile); offsets of a
        batch are committed only once its transaction has committed, in order. Each landing takes a pooled
        connection for its transaction only: none is held while Kafka is asked for more."""
        deadline = time.monotonic() + request.run_s
        kafka = self.settings.kafka

        def fetching() -> bool:
            # A worker shutting down (a deploy, a restart) ends the run at once, its batches landed and committed:
            # the next run starts elsewhere now, not after the graceful shutdown timeout and a heartbeat timeout.
            return time.monotonic() < deadline and not activity.is_worker_shutdown()

        landing: asyncio.Task | None = None
        in_flight: set[TopicPartition] = set()  # the partitions of the batch `landing` writes
        last_caught_up = 0.0
        # A fresh consumer fetches from the committed offsets: the lag it sees then is the lag as committed, which
        # the gauge shows at once (a run failing before any commit would leave the gauge as it was, maybe 0).
        fresh = _key(request) in self._fresh
        self._fresh.discard(_key(request))
        try:
            while fetching() or landing is not None:
                fetched = {}
                if fetching():
                    fetched = await consumer.getmany(
                        timeout_ms=kafka.batch_max_wait_ms, max_records=kafka.batch_max_events
                    )
                if fresh and fetched:
                    fresh = False
                    for tp, batch in fetched.items():
                        if batch and (highwater := consumer.highwater(tp)) is not None:
                            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(highwater - batch[0].offset)
                records = [r for batch in fetched.values() for r in batch]
                decoded = await asyncio.to_thread(self._decode, records) if records else None
                landed = None
                if landing is not None:
                    landed = await landing
                    landing, in_flight = None, set()
                if decoded is not None:  # Postgres goes on with the next batch while the offsets are committed
                    offsets = {tp: batch[-1].offset + 1 for tp, batch in fetched.items() if batch}
                    landing = asyncio.create_task(self._land_async(decoded, offsets, _Marks.of(fetched)))
                    in_flight = set(offsets)
                if landed is not None:
                    await self._finish(consumer, progress, *landed)
                if time.monotonic() - last_caught_up >= CAUGHT_UP_EVERY_S:
                    # Per partition, whatever the others do: an idle partition beside a busy one is complete too.
                    last_caught_up = time.monotonic()
                    await self._caught_up(consumer, in_flight)
        finally:
            if landing is not None:
                # Leaving early (cancelled, or a failure): the transaction in flight ends (its thread cannot be
                # stopped) before the run does; its offsets stay uncommitted, so its records come again
                # and land as duplicates, written once.
                await asyncio.gather(landing, return_exceptions=True)

    async def _finish(
        self, consumer: AIOKafkaConsumer, progress: _Progress, landed: IngestCounts, offsets: dict
    ) -> None:
        try:
            await consumer.commit(offsets)  # after the rows commit
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced meanwhile (a member joined, left or died): the partitions' new owner reads them
            # again from the committed offsets and lands this batch's events as duplicates, written once. Going on
            # keeps this consumer in the group instead of leaving it and causing one more rebalance.
            log.warning("offsets of a landed batch not committed, the group rebalanced: %s", exc)
        progress.counts = progress.counts.plus(landed)
        for tp, offset in offsets.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(highwater - offset, 0))

    def _decode(self, records: list) -> DecodedBatch:
        return self.decoder.decode((f"{r.topic}/{r.partition}/{r.offset}", r.value, r.headers or ()) for r in records)

    async def _caught_up(self, consumer: AIOKafkaConsumer, in_flight: set[TopicPartition]) -> None:
        """Each partition whose every fetched record has landed (none in the batch still landing) and whose position
        is its end offset is complete up to its last fetch answer (storage.watermarks_repo)."""
        at_end: dict[str, dict[int, datetime]] = {}
        for tp in consumer.assignment():
            highwater, answered_ms = consumer.highwater(tp), consumer.last_poll_timestamp(tp)
            if tp in in_flight or highwater is None or answered_ms is None:
                continue
            if await consumer.position(tp) >= highwater:
                until = datetime.fromtimestamp(answered_ms / 1000 - CAUGHT_UP_MARGIN_S, UTC)
                at_end.setdefault(tp.topic, {})[tp.partition] = until
        for topic, partitions in at_end.items():
            try:
                await self.db.run(watermarks_repo.caught_up, topic, partitions)
            except psycopg.OperationalError as exc:
                # Postgres away: the watermark stays where it was (the judge waits, as it should), and the run goes
                # on; a batch to land is what retries and, past LANDING_RETRY_S, fails the run.
                log.warning("could not move the watermarks of %s forward: %s", topic, exc)

    async def _land_async(self, batch: DecodedBatch, offsets: dict, marks: _Marks | None) -> tuple:
        """Land the batch; a landing Postgres fails is tried again (it writes once, whatever came before)."""
        give_up = time.monotonic() + LANDING_RETRY_S
        while True:
            try:
                return await asyncio.to_thread(self._land, batch, marks), offsets
            except psycopg.OperationalError as exc:  # the server or the connection, not the SQL: it may come back
                if time.monotonic() + LANDING_RETRY_EVERY_S > give_up:
                    raise
                log.warning("landing a batch failed, trying again in %g s: %s", LANDING_RETRY_EVERY_S, exc)
                await asyncio.sleep(LANDING_RETRY_EVERY_S)

    def _land(self, batch: DecodedBatch, marks: _Marks | None = None) -> IngestCounts:
        with self.db.connection() as conn:  # one transaction
            counts = land(conn, batch, source="kafka", texts=self.texts)
            if marks is not None:  # in the same transaction: a watermark never claims rows that are not there
                watermarks_repo.landed(conn, marks.topic, marks.partitions, _feeds(batch))
        metrics.record_landed("kafka", batch, counts)
        refused = sum(1 for d in batch.dead_letters if d.code is DeadLetterCode.db_refused)
        if refused:
            metrics.LANDING_SPLITS.labels("kafka").inc()
            log.warning("Postgres refused %d message(s) of a batch: dead-lettered, the rest landed", refused)
        return counts

    async def _consumer(self, request: ConsumeRequest) -> AIOKafkaConsumer:
        key = _key(request)
        consumer = self._consumers.get(key)
        if consumer is not None:
            return consumer
        await ensure_topic(self.settings, request.topic)
        kafka = self.settings.kafka
        consumer = AIOKafkaConsumer(
            request.topic,
            bootstrap_servers=self.settings.kafka_brokers,
            group_id=request.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            max_poll_interval_ms=kafka.max_poll_interval_ms,
            max_partition_fetch_bytes=max(kafka.max_message_bytes * 2, 8 * 1024 * 1024),  # a batch in a fetch or two
            fetch_max_bytes=64 * 1024 * 1024,
        )
        try:
            # A join the group never completes would hold the run until its start-to-close timeout; bounded, the
            # run fails with a reason the status shows, and the next run joins with a fresh consumer.
            await asyncio.wait_for(consumer.start(), kafka.join_timeout_s)
        except TimeoutError:
            await consumer.stop()
            raise KafkaJoinTimeout(
                f"the consumer group {request.group_id!r} assigned no partitions of {request.topic!r} within "
                f"kafka.join_timeout_s = {kafka.join_timeout_s} s"
            ) from None
        except BaseException:
            await consumer.stop()
            raise
        self._consumers[key] = consumer
        self._fresh.add(key)
        return consumer

    def _drop_when_idle(self, key: _Key, after_s: float) -> None:
        started = self._runs[key]

        async def drop() -> None:
            await asyncio.sleep(after_s)
            lock = self._locks[key]
            if self._runs[key] == started and not lock.locked():
                async with lock:
                    await self.drop_consumer(key)

        task = asyncio.create_task(drop())
        self._idle_drops.add(task)
        task.add_done_callback(self._idle_drops.discard)

    async def _rewind(self, key: _Key) -> bool:
        """Move the kept consumer back to its committed offsets, so that its next run fetches the uncommitted
        records again; False when there is none, or it failed to (then it is to be dropped)."""
        consumer = self._consumers.get(key)
        if consumer is None:
            return False
        try:
            for tp in consumer.assignment():
                # Not aiokafka's seek_to_committed: it leaves a partition with no offset committed (or 0) where it
                # is, past the records the failed run fetched, which would skip them.
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)  # as auto_offset_reset="earliest" starts a new group
                else:
                    consumer.seek(tp, committed)
        except Exception as exc:
            log.warning("could not rewind the consumer to its committed offsets, dropping it: %s", exc)
            return False
        self._fresh.add(key)  # its next fetch is from the committed offsets again: the lag gauge starts afresh
        return True

    async def drop_consumer(self, key: _Key) -> None:
        consumer = self._consumers.pop(key, None)
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def close(self) -> None:
        for task in list(self._idle_drops):
            task.cancel()
        for key in list(self._consumers):
            await self.drop_consumer(key)
        if self._own_db:
            self.db.close()


async def _lag(consumer: AIOKafkaConsumer) -> int | None:
    """Messages between the consumer's positions (all committed when a run ends) and its partitions' ends."""
    lag, known = 0, False
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        lag += max(highwater - await consumer.position(tp), 0)
        known = True
    return lag if known else None


async def ensure_topic(settings: Settings, topic: str) -> None:
    """Create `topic` (kafka.partitions, kafka.replication_factor) unless it exists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_brokers)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [
                    NewTopic(
                        topic,
                        num_partitions=settings.kafka.partitions,
                        replication_factor=settings.kafka.replication_factor,
                    )
                ]
            )
    finally:
        await admin.close()
