"""Reporting events to Kafka as CloudEvents (the path the ingestion workflow consumes)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from optimizer_client.wire import LLMEvent, to_cloudevent

try:
    from aiokafka import AIOKafkaProducer
except ImportError as exc:  # an extra of the distribution: the HTTP client works without it
    raise ImportError(
        "KafkaReporter needs aiokafka, the kafka extra: pip install './client[kafka]' from a clone"
    ) from exc


class KafkaReporter:
    """An async producer of CloudEvents; keyed by service so that a service's events keep their order."""

    def __init__(
        self, bootstrap_servers: str | list[str], topic: str = "llm-events", *, source: str = "llm-app", **producer
    ):
        self.topic = topic
        self.source = source
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=20, **producer)

    async def __aenter__(self) -> KafkaReporter:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def report(self, events: Iterable[LLMEvent | BaseModel | dict[str, Any]]) -> None:
        """Send the events (`LLMEvent`s or their JSON objects) and wait until the broker has them."""
        for event in events:
            cloudevent = to_cloudevent(event, self.source)
            value = json.dumps(cloudevent).encode()
            await self._producer.send(self.topic, value, key=cloudevent["subject"].encode())
        await self._producer.flush()
