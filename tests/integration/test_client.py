"""The typed client against the real API: cached resolution that agrees with the server, refresh after the TTL,
stale serving through an outage, event reports over HTTP and Kafka."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer
from helpers.api_server import running_api
from helpers.fixture_prices import fixture_book
from helpers.registry import register
from helpers.servers import settings_for

from llm_optimizer.decoding import Decoder
from llm_optimizer.resolution import Assignment
from optimizer_client import KafkaReporter, OptimizerClient, OptimizerError
from simulator.samples import sample_events
from storage import configs_repo


class CountingTransport(httpx.HTTPTransport):
    """Real HTTP, counting the requests sent."""

    requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return super().handle_request(request)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_resolution_is_cached_agrees_with_the_server_and_survives_an_outage(stack, database_url):
    service = f"cli-{uuid.uuid4().hex[:6]}"
    register(database_url, service, canary_percent=50)
    clock = FakeClock()
    settings = settings_for(stack, database_url, server={"cache_ttl_s": 5})
    with running_api(settings) as api:
        transport = CountingTransport()
        client = OptimizerClient(api.url, api.keys["viewer"], clock=clock, stale_ok_s=60, transport=transport)
        with httpx.Client(base_url=api.url, headers=api.auth("viewer")) as http:
            for i in range(40):
                server = http.get(f"/api/v1/config/{service}", params={"key": f"k{i}"}).json()
                local = client.resolve(service, f"k{i}")
                assert local.model_dump(mode="json") == server
        with psycopg.connect(database_url) as conn:
            configs_repo.set_assignment(conn, Assignment(service=service, active_version="v2"), updated_by="t")
        before = {client.resolve(service, f"k{i}").version for i in range(40)}
        assert before == {"v1", "v2"}  # still the cached 50% split
        clock.now += 5
        assert {client.resolve(service, f"k{i}").version for i in range(40)} == {"v2"}
        with pytest.raises(OptimizerError) as missing:
            client.resolve("nobody", "k")
        assert missing.value.status == 404
    # The API is gone: the last assignment serves for ttl + stale_ok_s, asking again only every few seconds (each
    # try could cost the application a timeout), then the outage shows.
    clock.now += 30
    tries = transport.requests
    assert client.resolve(service, "k1").version == "v2"
    assert client.resolve(service, "k2").version == "v2"
    assert transport.requests == tries + 1
    clock.now += 5
    client.resolve(service, "k1")
    assert transport.requests == tries + 2
    clock.now += 60
    with pytest.raises(OptimizerError, match="cannot reach the optimizer API"):
        client.resolve(service, "k1")
    client.close()


def test_report_over_http_names_the_refused_events(stack, database_url):
    events = list(sample_events(5))
    with running_api(settings_for(stack, database_url)) as api, OptimizerClient(api.url, api.keys["viewer"]) as client:
        result = client.report([*events, {"event_id": "bad"}], idempotency_key="r1")
        assert (result.accepted, result.rejected) == (5, 1)
        assert result.errors[0]["index"] == 5 and "timestamp" in result.errors[0]["reason"]
        assert client.report(events, idempotency_key="r2").duplicates == 5
        with pytest.raises(OptimizerError) as absent:
            client.cycle_status("x")
        assert absent.value.status in (404, 503)


async def test_kafka_reporter_sends_cloudevents_the_ingestion_reads(kafka_bootstrap):
    topic = f"client-{uuid.uuid4().hex[:6]}"
    events = list(sample_events(4))
    async with KafkaReporter(kafka_bootstrap, topic, enable_idempotence=False) as reporter:
        await reporter.report(events)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        records = []
        while len(records) < 4:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
            records += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    assert all(json.loads(r.value)["specversion"] == "1.0" for r in records)
    decoded = Decoder(fixture_book(), source="kafka", max_message_bytes=1 << 20).decode(
        (str(i), r.value, r.headers) for i, r in enumerate(records)
    )
    assert sorted(e.event_id for e in decoded.events) == sorted(e.event_id for e in events)
    assert {r.key for r in records} == {e.service.encode() for e in events}
