"""The HTTP API on the real stack: every endpoint, and every refusal (401, 403, 404, 413, 422, 429)."""

from __future__ import annotations

import hashlib
import logging
import uuid

import httpx
import psycopg
import pytest
import yaml
from helpers.api_server import running_api
from helpers.registry import register
from helpers.servers import settings_for

from api.backend import TtlCache
from llm_optimizer.events import to_cloudevent
from llm_optimizer.payloads import CycleInput
from llm_optimizer.resolution import bucket
from runtime.logs import RedactingFilter
from simulator.samples import sample_events
from starter.cycle import start_cycle
from worker import serving


@pytest.fixture
def api(stack, database_url):
    settings = settings_for(stack, database_url, server={"max_body_bytes": 200_000})
    with running_api(settings, extra_keys={"slow": ("viewer", 1.0)}) as running:
        yield running


async def test_health_readiness_and_metrics_are_open(api):
    async with httpx.AsyncClient(base_url=api.url) as http:
        assert (await http.get("/health")).json() == {"status": "ok"}
        assert (await http.get("/ready")).json()["ready"] is True
        detailed = (await http.get("/health/detailed")).json()
        checks = {c["name"]: c for c in detailed["checks"]}
        assert set(checks) == {"postgres", "temporal", "kafka", "control_loop", "ingestion"}
        assert all(c["healthy"] for c in checks.values()), checks
        assert detailed["status"] == "healthy"
        assert checks["control_loop"]["detail"] == "no cycle has decided yet"
        metrics = (await http.get("/metrics")).text
        assert 'optimizer_api_requests_total{route="/health/detailed",status="200"}' in metrics
        assert "/openapi.json" in (await http.get("/docs")).text
        paths = (await http.get("/openapi.json")).json()["paths"]
        assert {"/api/v1/metrics", "/v1/traces", "/api/v1/config/{service}", "/api/v1/admin/emergency-stop"} <= set(
            paths
        )


async def test_health_detailed_names_a_stale_control_loop(stack, database_url):
    settings = settings_for(stack, database_url, server={"control_loop_stale_s": 60})
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO decisions (decision_id, service, cycle_id, made_at, action, rationale) "
            "VALUES ('d1', 'chat', 'c1', now() - interval '2 hours', 'none', 'nothing better')"
        )
    with running_api(settings) as running:
        async with httpx.AsyncClient(base_url=running.url) as http:
            answer = (await http.get("/health/detailed")).json()
    control = next(c for c in answer["checks"] if c["name"] == "control_loop")
    assert answer["status"] == "degraded" and not control["healthy"]
    assert "stale: last decision 72" in control["detail"] and "server.control_loop_stale_s = 60" in control["detail"]


async def test_refusals_401_403_413_422_429(api):
    async with httpx.AsyncClient(base_url=api.url) as http:
        missing = await http.get("/api/v1/config/chat", params={"key": "u1"})
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        wrong = await http.get("/api/v1/config/chat", params={"key": "u1"}, headers={"X-API-Key": "lao_nope_nope"})
        assert wrong.status_code == 401 and "unknown or revoked" in wrong.json()["detail"]

        forbidden = await http.post("/api/v1/admin/pause", json={"reason": "x"}, headers=api.auth("viewer"))
        assert forbidden.status_code == 403
        assert forbidden.json()["detail"] == "role 'viewer' lacks the permission 'admin'"
        assert (
            await http.post("/api/v1/config/rollback", json={"service": "s"}, headers=api.auth("viewer"))
        ).status_code == 403

        big = await http.post("/api/v1/metrics", content=b"[" + b" " * 300_000 + b"]", headers=api.auth("viewer"))
        assert big.status_code == 413 and "server.max_body_bytes (200000)" in big.json()["detail"]

        async def chunks():
            for _ in range(30):
                yield b" " * 10_000

        streamed = await http.post("/api/v1/metrics", content=chunks(), headers=api.auth("viewer"))
        assert streamed.status_code == 413

        invalid = await http.post(
            "/api/v1/config/rollback", json={"service": "s", "target_version": 3}, headers=api.auth("operator")
        )
        assert invalid.status_code == 422
        assert invalid.json()["detail"][0]["field"] == "body.target_version"
        assert invalid.json()["detail"][0]["value"] == 3
        not_json = await http.post("/api/v1/metrics", content=b"{oops", headers=api.auth("viewer"))
        assert not_json.status_code == 422 and "not valid JSON" in not_json.json()["detail"]
        not_batch = await http.post("/api/v1/metrics", json={"rows": []}, headers=api.auth("viewer"))
        assert not_batch.status_code == 422 and "`metrics` or `events` array" in not_batch.json()["detail"]

        # The "slow" key may make 1 request/s with a burst of 2: the third in a row is refused.
        statuses = [
            (await http.get("/api/v1/config/nope", params={"key": "u"}, headers=api.auth("slow"))) for _ in range(3)
        ]
        assert [r.status_code for r in statuses] == [404, 404, 429]
        assert int(statuses[2].headers["retry-after"]) >= 1
        assert "1 requests/s" in statuses[2].json()["detail"]
        # Health stays open whatever the keys do.
        assert (await http.get("/health")).status_code == 200


async def test_event_batches_land_once_and_refusals_are_dead_lettered(api, database_url):
    events = [to_cloudevent(e) if i % 2 else e.model_dump(mode="json") for i, e in enumerate(sample_events(20))]
    bad = [
        {"event_id": "x1", "service": "chat"},  # missing fields
        {**events[0], "event_id": "x2", "latency_ms": -5},
        "not an object",
    ]
    body = {"metrics": events[:10] + bad + events[10:]}
    async with httpx.AsyncClient(base_url=api.url) as http:
        headers = {**api.auth("viewer"), "Idempotency-Key": "batch-1"}
        first = (await http.post("/api/v1/metrics", json=body, headers=headers)).json()
        again = (await http.post("/api/v1/metrics", json=body, headers=headers)).json()
        bare_list = (await http.post("/api/v1/metrics", json=events[:3], headers=api.auth("viewer"))).json()
    assert (first["accepted"], first["duplicates"], first["rejected"]) == (20, 0, 3)
    assert [e["index"] for e in first["errors"]] == [10, 11, 12]
    assert [e["code"] for e in first["errors"]] == ["invalid_event", "invalid_event", "not_an_object"]
    assert "timestamp" in first["errors"][0]["reason"] and "latency_ms = -5" in first["errors"][1]["reason"]
    assert "expected an object" in first["errors"][2]["reason"]
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 20, 3)
    assert (bare_list["accepted"], bare_list["duplicates"]) == (0, 3)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*), min(source) FROM events").fetchone() == (20, "http")
        dead = conn.execute("SELECT position, code FROM dead_letters ORDER BY position").fetchall()
    viewer_key_id = api.keys["viewer"].split("_")[1]
    sent = httpx.Request("POST", api.url, json=body).content  # the bytes httpx sent
    digest = hashlib.sha256(sent).hexdigest()[:16]
    assert [p for p, _ in dead] == [f"http/{viewer_key_id}/batch-1/{digest}/{i}" for i in (10, 11, 12)]
    assert [c for _, c in dead] == ["invalid_event", "invalid_event", "not_an_object"]


async def test_config_resolution_history_export_and_import(api, database_url):
    service = f"svc-{uuid.uuid4().hex[:6]}"
    register(database_url, service, canary_percent=30)
    async with httpx.AsyncClient(base_url=api.url, headers=api.auth("viewer")) as http:
        answers = {}
        for i in range(60):
            key = f"user-{i}"
            answer = (await http.get(f"/api/v1/config/{service}", params={"key": key})).json()
            expected = "v2" if bucket(service, key) < 30 else "v1"
            assert answer["version"] == expected and answer["spec"]["model"] in ("gpt-4o", "gpt-4o-mini")
            answers[key] = answer
        again = (await http.get(f"/api/v1/config/{service}", params={"key": "user-7"})).json()
        assert again == answers["user-7"]  # sticky
        assert {a["variant"] for a in answers.values()} == {"baseline", "canary"}

        view = (await http.get(f"/api/v1/config/{service}/assignment")).json()
        assert view["assignment"]["canary_percent"] == 30 and set(view["specs"]) == {"v1", "v2"}

        history = (await http.get(f"/api/v1/config/{service}/history")).json()
        assert [v["version"] for v in history["versions"]] == ["v1", "v2"]
        assert history["versions"][1]["parent_version"] == "v1"

        unknown = await http.get("/api/v1/config/nobody", params={"key": "k"})
        assert unknown.status_code == 404 and "has no config assigned" in unknown.json()["detail"]
        assert (await http.get(f"/api/v1/config/{service}")).status_code == 422  # key is required

        exported = (await http.get("/api/v1/config/export", params={"service": service})).text
        copy = exported.replace(f"service: {service}", "service: copied")
        viewer_import = await http.post("/api/v1/config/import", content=copy)
        assert viewer_import.status_code == 403
        admin = api.auth("admin")
        imported = await http.post("/api/v1/config/import", content=copy, headers=admin)
        assert imported.json() == {"imported": ["v1", "v2"]}
        assert (await http.post("/api/v1/config/import", content=copy, headers=admin)).json() == imported.json()
        broken = await http.post("/api/v1/config/import", content="service: x\nversions: [{}]", headers=admin)
        assert broken.status_code == 422 and "versions.0" in broken.json()["detail"]
        copied = (await http.get("/api/v1/config/copied", params={"key": "k"})).json()
        assert copied["version"] == "v1"
        backup = (await http.get("/api/v1/config/export")).text  # every service, one document each
        assert {d["service"] for d in yaml.safe_load_all(backup)} == {service, "copied"}
        restored = await http.post("/api/v1/config/import", content=backup, headers=admin)
        assert sorted(restored.json()["imported"]) == ["v1", "v1", "v2", "v2"]  # idempotent: the same versions


async def test_controls_act_on_the_cycle_and_return_its_acknowledgement(api, database_url, temporal_client):
    service = f"ctl-{uuid.uuid4().hex[:6]}"
    register(database_url, service)
    settings = api.settings
    async with serving(temporal_client, settings), httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        await start_cycle(temporal_client, settings.temporal.task_queue, CycleInput(service=service))
        admin, operator = api.auth("admin"), api.auth("operator")

        paused = await http.post(
            "/api/v1/admin/pause", json={"services": [service], "reason": "maintenance"}, headers=admin
        )
        ack = paused.json()["acks"][0]
        assert ack["outcome"] == "accepted" and ack["status"]["paused_reason"] == "maintenance"

        status = (await http.get(f"/api/v1/cycles/{service}", headers=api.auth("viewer"))).json()
        assert status["paused_reason"] == "maintenance"

        body = {"service": service, "reason": "now", "requestId": "t-1"}
        first = (await http.post("/api/v1/optimize/trigger", json=body, headers=operator)).json()["acks"][0]
        second = (await http.post("/api/v1/optimize/trigger", json=body, headers=operator)).json()["acks"][0]
        assert (first["outcome"], second["outcome"]) == ("accepted", "duplicate")

        resumed = (await http.post("/api/v1/admin/resume", json={"services": [service]}, headers=admin)).json()
        assert resumed["acks"][0]["status"]["paused_reason"] is None

        rollback = await http.post(
            "/api/v1/config/rollback", json={"service": service, "targetVersion": "v1"}, headers=operator
        )
        assert rollback.json()["acks"][0]["outcome"] == "accepted"

        # No services named: every running cycle of this deployment (its task queue) is stopped.
        stopped = (await http.post("/api/v1/admin/emergency-stop", json={"reason": "incident"}, headers=admin)).json()
        assert [a["status"]["service"] for a in stopped["acks"]] == [service]
        assert stopped["acks"][0]["status"]["stopped_reason"] == "incident"

        missing = await http.post("/api/v1/admin/pause", json={"services": ["ghost"]}, headers=admin)
        assert missing.status_code == 404 and "ghost" in missing.json()["detail"]
        assert (await http.get("/api/v1/cycles/ghost", headers=admin)).status_code == 404

    with psycopg.connect(database_url) as conn:
        signals = conn.execute(
            "SELECT details->>'outcome' FROM optimization_events WHERE service = %s AND event_type = 'signal'",
            (service,),
        ).fetchall()
    assert sorted(s for (s,) in signals).count("accepted") == 5


def test_secrets_are_redacted_from_logs(caplog):
    handler_filter = RedactingFilter()
    logger = logging.getLogger("test.redaction")
    logger.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.INFO, logger="test.redaction"):
            logger.info("calling with %s and %s", "Bearer lao_12ab34cd_SECRETsecret", "postgresql://u:pw@h/db")
    finally:
        logger.removeFilter(handler_filter)
    text = caplog.records[0].getMessage()
    assert "SECRET" not in text and "pw" not in text
    assert text == "calling with Bearer [REDACTED] and postgresql://u:[REDACTED]@h/db"


def test_the_key_cache_expires_and_stays_bounded():
    now = [0.0]
    cache = TtlCache(5.0, clock=lambda: now[0], max_entries=3)
    for key in "abcd":
        cache.put(key, key.upper())
    assert cache.get("a") is None and cache.get("d") == "D"  # the oldest went to make room
    now[0] = 5.0
    assert cache.get("d") is None  # expired
