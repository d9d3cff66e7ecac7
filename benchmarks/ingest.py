"""Ingestion throughput: Kafka -> Ingestion workflow/activity -> Postgres, against a raw COPY of the same rows.

    python -m benchmarks.ingest [--events 1000000]      (make bench-ingest)

Starts its own embedded stack on free ports, produces the events to a fresh topic (not timed), then times the
drain of that backlog by the real worker: decoding, validation, costing, COPY + dedupe, offset commits. In the
same run and database it times a raw COPY of the same rows into an empty, alike partitioned copy of the events
table; the ratio of the two is the figure to compare across machines. Last line: RESULT {...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaProducer

from activities.ingestion import ensure_topic
from devstack import LocalStack
from llm_optimizer.events import to_cloudevent
from llm_optimizer.pricing import price_book
from llm_optimizer.settings import Settings
from runtime.temporal import connect_client
from simulator.samples import sample_events
from starter.ingest import start_ingestion
from storage.db import migrate
from storage.events_repo import EVENT_COLUMNS, event_row
from worker import serving


async def produce(bootstrap: str, topic: str, payloads: list[bytes]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        linger_ms=20,
        max_batch_size=1024 * 1024,
        compression_type=None,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        for i, payload in enumerate(payloads):
            await producer.send(topic, payload, partition=i % 2)
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


def count_events(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def raw_copy_rate(url: str, events) -> float:
    """Rows per second of a plain COPY of the same rows into an empty, identically indexed and partitioned table
    (the same partition bounds as `events`, so that both pay for routing rows to their partitions)."""
    catalog = price_book()
    rows = [(*event_row(catalog.with_cost(e)), "kafka") for e in events]
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE events_copy_baseline (LIKE events INCLUDING ALL) PARTITION BY RANGE (ts)")
        bounds = conn.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass"
        ).fetchall()
        for n, (bound,) in enumerate(bounds):
            conn.execute(f"CREATE TABLE events_copy_baseline_{n} PARTITION OF events_copy_baseline {bound}")
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY events_copy_baseline ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE events_copy_baseline")
        conn.commit()
    return len(rows) / elapsed


async def run(total: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        stack = LocalStack.on_free_ports(Path(tmp))
        stack.up()
        try:
            topic = f"bench-{uuid.uuid4().hex[:6]}"
            settings = Settings(
                database={"url": stack.database_url},
                kafka={
                    "brokers": [stack.kafka_bootstrap],
                    "topic": topic,
                    "partitions": 2,
                    "session_timeout_ms": 3000,  # Tansu joins a group in half of it
                    "heartbeat_interval_ms": 1000,
                    "batch_max_events": 20_000,
                    "consume_run_s": 30,
                },
                temporal={"address": stack.temporal_address, "task_queue": "bench"},
            )
            migrate(stack.database_url)
            await ensure_topic(settings, topic)
            events = list(sample_events(total, seed=42))
            payloads = [json.dumps(to_cloudevent(e)).encode() for e in events]
            produce_s = await produce(stack.kafka_bootstrap, topic, payloads)
            print(f"produced {total:,} CloudEvents in {produce_s:.1f}s (not part of the figure)", flush=True)

            client = await connect_client(settings)
            async with serving(client, settings):
                started = time.perf_counter()
                await start_ingestion(client, settings, topic)
                first_rows: tuple[float, int] | None = None
                while (landed := count_events(stack.database_url)) < total:
                    if first_rows is None and landed:
                        first_rows = (time.perf_counter(), landed)
                    await asyncio.sleep(0.1)
                ended = time.perf_counter()
            assert landed == total, landed
            elapsed = ended - started
            events_per_s = total / elapsed
            print(f"ingested {total:,} events in {elapsed:.1f}s: {events_per_s:,.0f} events/s", flush=True)
            if first_rows is not None:  # without the start: workflow, activity, consumer group join
                seen_at, seen = first_rows
                print(
                    f"  first rows after {seen_at - started:.1f}s; from then on "
                    f"{(total - seen) / (ended - seen_at):,.0f} events/s",
                    flush=True,
                )
            copy_rate = raw_copy_rate(stack.database_url, events)
            print(f"raw COPY of the same rows: {copy_rate:,.0f} rows/s", flush=True)
        finally:
            stack.down()
    return {
        "events": total,
        "events_per_s": round(events_per_s),
        "copy_rows_per_s": round(copy_rate),
        "ratio": round(events_per_s / copy_rate, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    result = asyncio.run(run(parser.parse_args().events))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
