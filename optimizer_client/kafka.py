"""Reporting events to Kafka as CloudEvents (the path the ingestion workflow consumes)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer

from llm_optimizer.events import LLMEvent, to_cloudevent


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

    async def report(self, events: Iterable[LLMEvent]) -> None:
        """Send the events and wait until the broker has them."""
        for event in events:
            value = json.dumps(to_cloudevent(event, self.source)).encode()
            await self._producer.send(self.topic, value, key=event.service.encode())
        await self._producer.flush()
