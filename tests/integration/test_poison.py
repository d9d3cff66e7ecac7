"""Poison on a real topic (Kafka from the harness, a worker, Postgres): a message the database would refuse costs
only itself, within the run that meets it; a consumer that cannot land at all is reported stuck with its error by
the workflow's `status`, the metrics and `/health/detailed`, and recovers once the cause is gone (issue 19)."""

from __future__ import annotations

import json
import uuid

import httpx
import psycopg
import pytest
from helpers.api_server import running_api
from helpers.kafka import committed_offsets, count
from helpers.servers import produce, settings_for, wait_for
from prometheus_client import REGISTRY

from activities.ingestion import ensure_topic
from llm_optimizer.events import DeadLetterCode as Code
from llm_optimizer.events import to_cloudevent
from llm_optimizer.payloads import STUCK_AFTER_FAILURES, IngestionStatus
from simulator.samples import sample_events
from starter.ingest import ingestion_status, start_ingestion
from worker import serving


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def bare(event, **changes) -> dict:
    return {**event.model_dump(mode="json", exclude_none=True), **changes}


@pytest.mark.timeout(180)
async def test_poison_in_the_middle_of_a_topic_costs_only_itself(stack, database_url, temporal_client):
    topic = unique("poison")
    settings = settings_for(stack, database_url, kafka={"topic": topic, "consume_run_s": 2})
    await ensure_topic(settings, topic)
    with psycopg.connect(database_url) as conn:  # data the model accepts and this database refuses
        conn.execute("ALTER TABLE events ADD CONSTRAINT test_poison CHECK (endpoint IS DISTINCT FROM '/poison')")

    events = list(sample_events(306, seed=21))
    good = [json.dumps(to_cloudevent(e)).encode() for e in events[:300]]
    p = events[300:]
    probes = [  # the probes of issue 19; each names its dead letter's code and what must be in its reason
        (bare(p[0], attributes={"note": "a\x00b"}), (Code.invalid_event, "attributes['note'] = 'a\\x00b'")),
        (bare(p[1], attributes={"ratio": float("nan")}), (Code.not_json, "not valid JSON")),
        (bare(p[2], timestamp="0001-01-01T00:00:00+01:00"), (Code.invalid_event, "outside 0001-01-01 .. 9999-12-31")),
        (bare(p[3], tokens_out=True), (Code.invalid_event, "tokens_out = True")),
        (bare(p[4], timestamp=12345), (Code.invalid_event, "timestamp = 12345")),
        (bare(p[5], endpoint="/poison"), (Code.db_refused, "Postgres refused it: new row for relation")),
    ]
    poison = {json.dumps(document).encode(): says for document, says in probes}
    messages = [*good[:150], *poison, *good[150:]]
    await produce(stack.kafka_bootstrap, topic, messages)

    async with serving(temporal_client, settings):
        handle = await start_ingestion(temporal_client, settings, topic)
        await wait_for(lambda: count(database_url, "events") == 300, 60, "every good event")
        await wait_for(lambda: count(database_url, "dead_letters") == len(poison), 30, "every poison dead-lettered")

        async def all_committed() -> bool:  # rows land before their batch's offsets are committed
            return await committed_offsets(stack.kafka_bootstrap, topic, settings.kafka.group_id) == len(messages)

        await wait_for(all_committed, 30, "every offset committed")

        async def settled() -> IngestionStatus | None:
            status = await ingestion_status(temporal_client, topic)
            return status if status.totals.accepted == 300 else None

        status = await wait_for(settled, 30, "the totals")
        await handle.cancel()

    # Within the run that met it: no run failed, nothing is retried, the topic moved past it.
    assert status.totals.dead_lettered == len(poison)
    assert (status.consecutive_failures, status.last_error, status.stuck) == (0, None, False)
    assert await committed_offsets(stack.kafka_bootstrap, topic, settings.kafka.group_id) == len(messages)
    with psycopg.connect(database_url) as conn:
        dead = {
            bytes(raw): (code, reason)
            for raw, code, reason in conn.execute("SELECT raw, code, reason FROM dead_letters")
        }
        ids = {r[0] for r in conn.execute("SELECT event_id FROM events")}
    assert ids == {e.event_id for e in events[:300]}
    for raw, (code, says) in poison.items():
        assert dead[raw][0] == code and says in dead[raw][1], (code, says, dead[raw])
    assert "test_poison" in dead[list(poison)[-1]][1]


@pytest.mark.timeout(240)
async def test_a_consumer_that_cannot_land_is_reported_stuck_with_its_error_then_recovers(
    stack, database_url, temporal_client
):
    topic = unique("stuck")
    settings = settings_for(
        stack, database_url, kafka={"topic": topic, "anomaly_topic": unique("quiet"), "consume_run_s": 2}
    )
    await ensure_topic(settings, topic)
    await produce(stack.kafka_bootstrap, topic, [e.model_dump_json().encode() for e in sample_events(50, seed=22)])
    with psycopg.connect(database_url) as conn:  # not about the data: retried with nothing committed
        conn.execute("ALTER TABLE events RENAME TO events_away")

    def failures() -> float:
        value = REGISTRY.get_sample_value("optimizer_ingestion_consecutive_failures", {"topic": topic})
        return value or 0.0

    with running_api(settings) as api:
        async with serving(temporal_client, settings), httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            handle = await start_ingestion(temporal_client, settings, topic)

            async def stuck() -> IngestionStatus | None:
                status = await ingestion_status(temporal_client, topic)
                return status if status.stuck else None

            status = await wait_for(stuck, 90, f"{STUCK_AFTER_FAILURES} failed runs in a row")
            assert status.consecutive_failures >= STUCK_AFTER_FAILURES
            assert 'UndefinedTable: relation "events" does not exist' in status.last_error
            assert status.last_error_at is not None and status.last_success_at is None
            assert failures() >= STUCK_AFTER_FAILURES
            assert await committed_offsets(stack.kafka_bootstrap, topic, settings.kafka.group_id) == 0
            assert count(database_url, "dead_letters") == 0  # not about the data: nothing is dead-lettered

            health = (await http.get("/health/detailed")).json()
            check = next(c for c in health["checks"] if c["name"] == "ingestion")
            assert health["status"] == "degraded" and not check["healthy"]
            assert f"{topic}: stuck: its last" in check["detail"]
            assert 'relation "events" does not exist' in check["detail"]

            with psycopg.connect(database_url) as conn:
                conn.execute("ALTER TABLE events_away RENAME TO events")
            await wait_for(lambda: count(database_url, "events") == 50, 90, "the 50 events after the fix")

            async def recovered() -> IngestionStatus | None:
                status = await ingestion_status(temporal_client, topic)
                return status if status.consecutive_failures == 0 and status.totals.accepted == 50 else None

            status = await wait_for(recovered, 30, "a successful run")
            assert not status.stuck and status.last_success_at is not None
            assert status.last_error is not None  # kept, with its time, for whoever looks later
            assert failures() == 0
            health = (await http.get("/health/detailed")).json()
            check = next(c for c in health["checks"] if c["name"] == "ingestion")
            assert check["healthy"], check
            await handle.cancel()


def test_over_http_one_bad_event_costs_only_itself_and_is_named_by_index(stack, database_url):
    """Issue 19: one event Postgres would refuse made its whole batch a 500, NaN/Infinity a 422."""
    settings = settings_for(stack, database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("ALTER TABLE events ADD CONSTRAINT test_poison CHECK (endpoint IS DISTINCT FROM '/poison')")
    events = list(sample_events(100, seed=23))
    documents = [bare(e) for e in events]
    documents[10]["attributes"] = {"note": "a\x00b"}
    documents[20] = to_cloudevent(events[20]) | {"time": "0001-01-01T00:00:00+01:00"}
    documents[20]["data"].pop("timestamp")
    documents[30]["endpoint"] = "/poison"
    body = json.dumps(documents)
    body = body.replace(f'"latency_ms": {documents[40]["latency_ms"]}', '"latency_ms": NaN', 1)
    body = body.replace('"tokens_out": ' + str(documents[50]["tokens_out"]), '"tokens_out": Infinity', 1)
    assert body.count("NaN") == 1 and body.count("Infinity") == 1
    with running_api(settings) as api:
        headers = {**api.auth("viewer"), "Idempotency-Key": "batch-1", "Content-Type": "application/json"}
        answer = httpx.post(f"{api.url}/api/v1/metrics", content=body, headers=headers, timeout=30)
        again = httpx.post(f"{api.url}/api/v1/metrics", content=body, headers=headers, timeout=30)
        bad_key = httpx.post(
            f"{api.url}/api/v1/metrics", content=body, headers={**headers, "Idempotency-Key": "x" * 500}, timeout=30
        )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["accepted"], result["rejected"]) == (95, 5)
    reasons = {e["index"]: e["reason"] for e in result["errors"]}
    assert sorted(reasons) == [10, 20, 30, 40, 50]
    codes = [e["code"] for e in result["errors"]]
    assert codes == ["invalid_event", "invalid_envelope", "db_refused", "invalid_event", "invalid_event"]  # 20: `time`
    assert "attributes['note'] = 'a\\x00b'" in reasons[10]
    assert "time = '0001-01-01T00:00:00+01:00'" in reasons[20] and "outside 0001-01-01" in reasons[20]
    assert reasons[30].startswith("Postgres refused it") and "test_poison" in reasons[30]
    assert "latency_ms = nan" in reasons[40]
    assert "tokens_out = inf" in reasons[50]
    assert again.status_code == 200 and (again.json()["accepted"], again.json()["duplicates"]) == (0, 95)
    assert bad_key.status_code == 422 and "Idempotency-Key" in bad_key.json()["detail"]
    assert count(database_url, "events") == 95
    assert count(database_url, "dead_letters") == 5  # the retried request dead-lettered nothing twice
