"""Counting rows, naming topics and reading committed Kafka offsets, for the ingestion tests."""

from __future__ import annotations

import uuid

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition


def count(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def unique_topic() -> str:
    return f"events-{uuid.uuid4().hex[:8]}"


async def committed_offsets(bootstrap: str, topic: str, group: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # fetches fresh metadata
        partitions = consumer.partitions_for_topic(topic) or set()
        total = 0
        for p in partitions:
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()
