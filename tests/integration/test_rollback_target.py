"""A rollback target must exist: refused with the reason through the `control` update and the HTTP API, refused and
recorded (status and audit) when it arrives as a signal. A traffic change the registry refuses fails at once, not
retried, and the cycle leaves ROLLING_BACK with an alert (docs/operations.md)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import psycopg
import pytest
from helpers.api_server import running_api
from helpers.fixture_prices import fixture_book
from helpers.servers import settings_for
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from activities import LoopActivitySet
from llm_optimizer.canary_judge import JudgeThresholds
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.payloads import ControlAck, CycleInput, CycleState, CycleStatus, RolloutInput
from llm_optimizer.resolution import Assignment
from llm_optimizer.strategies import RolloutStage
from starter.cycle import start_cycle
from storage import configs_repo
from worker import serving
from workflows import CanaryRollout, OptimizationCycle


def register(database_url: str, service: str) -> None:
    """v1, then v2 (its child) live."""
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, service, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.register(conn, service, ConfigSpec(model="gpt-4o-mini", provider="openai"), parent_version="v1")
        configs_repo.set_assignment(conn, Assignment(service=service, active_version="v2"), updated_by="test")


def live(database_url: str, service: str) -> Assignment:
    with psycopg.connect(database_url) as conn:
        return configs_repo.get_assignment(conn, service)


def audited(database_url: str, service: str, event_type: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT triggered_by, details FROM optimization_events WHERE service = %s AND event_type = %s ORDER BY ts",
            (service, event_type),
        ).fetchall()


async def eventually(check, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


QUIET = {"interval_s": 3600, "fast_path_s": 3600}  # no timed cycle during the test: only the operator acts


async def test_a_missing_or_malformed_target_is_refused_by_signal_update_and_api(stack, database_url, temporal_client):
    service = f"rb-{uuid.uuid4().hex[:6]}"
    register(database_url, service)
    settings = settings_for(stack, database_url)
    with running_api(settings) as api:
        async with serving(temporal_client, api.settings), httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            handle = await start_cycle(
                temporal_client, api.settings.temporal.task_queue, CycleInput(service=service, **QUIET)
            )

            async def status() -> CycleStatus:
                return await handle.query("status", result_type=CycleStatus)

            # The `temporal` CLI's way: signals. Refused, recorded in status and in the audit trail.
            await handle.signal("rollback", {"reason": "probe", "target_version": "v999"})
            await handle.signal("rollback", {"reason": "probe", "target_version": "../../x"})
            refused = await eventually(lambda: _refusals(status, 2), "both refusals in status")
            # The malformed one is refused at once, the missing one after the registry answered: either order.
            assert sorted(refused.refusals) == [
                "rollback refused: target_version = '../../x': String should match pattern "
                "'^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$'",
                f"rollback refused: target_version = 'v999': no such version of service '{service}'",
            ]
            assert refused.state == CycleState.IDLE and refused.active_version in (None, "v2")
            rows = await eventually(
                lambda: _rows(database_url, service, "signal", 2), "the two signals in the audit trail"
            )
            assert sorted((by, d["outcome"], d["refusal"]) for by, d in rows) == [
                ("rollback", "refused", refusal) for refusal in sorted(refused.refusals)
            ]

            # The update: refused with a clean error, nothing applied; the refusal is in status too.
            with pytest.raises(WorkflowUpdateFailedError) as failed:
                await handle.execute_update(
                    "control", {"name": "rollback", "payload": {"target_version": "v999"}}, result_type=ControlAck
                )
            cause = failed.value.cause
            assert isinstance(cause, ApplicationError) and cause.type == "ControlRefused"
            assert cause.message == f"rollback refused: target_version = 'v999': no such version of service '{service}'"
            assert (await status()).refusals[-1] == cause.message

            # The HTTP API: a 422 naming the field and the value, for a malformed and for a missing version.
            operator = api.auth("operator")
            malformed = await http.post(
                "/api/v1/config/rollback", json={"service": service, "target_version": "../../x"}, headers=operator
            )
            assert malformed.status_code == 422
            assert malformed.json()["detail"][0]["field"] == "body.target_version"
            assert malformed.json()["detail"][0]["value"] == "../../x"
            missing = await http.post(
                "/api/v1/config/rollback", json={"service": service, "target_version": "v999"}, headers=operator
            )
            assert missing.status_code == 422, missing.text
            assert missing.json()["detail"] == (
                f"{service}: rollback refused: target_version = 'v999': no such version of service '{service}'"
            )
            assert live(database_url, service) == Assignment(service=service, active_version="v2")

            # An existing version is accepted, and applied.
            ok = await http.post(
                "/api/v1/config/rollback", json={"service": service, "target_version": "v1"}, headers=operator
            )
            assert ok.status_code == 200 and ok.json()["acks"][0]["outcome"] == "accepted"
            await eventually(lambda: _active(status, "v1"), "the rollback to v1")
            assert live(database_url, service) == Assignment(service=service, active_version="v1")
            assert (await status()).alerts == []
            await handle.terminate()


async def _refusals(status, count: int) -> CycleStatus | None:
    current = await status()
    return current if len(current.refusals) >= count else None


async def _active(status, version: str) -> CycleStatus | None:
    current = await status()
    return current if current.active_version == version and current.state == CycleState.IDLE else None


async def _rows(database_url: str, service: str, event_type: str, count: int) -> list[tuple] | None:
    rows = audited(database_url, service, event_type)
    return rows if len(rows) >= count else None


@activity.defn(name="version_exists")
async def every_version_exists(service: str, version: str) -> bool:
    """A registry check that says yes to anything: the traffic write is then what refuses."""
    return True


async def test_a_traffic_change_the_registry_refuses_is_not_retried_and_the_cycle_alerts(
    stack, database_url, temporal_client
):
    service = f"rb-{uuid.uuid4().hex[:6]}"
    register(database_url, service)
    loop = LoopActivitySet(settings_for(stack, database_url), fixture_book())
    queue = f"rb-{uuid.uuid4().hex[:8]}"
    activities = [a for a in loop.all() if a.__name__ != "version_exists"] + [every_version_exists]
    async with Worker(
        temporal_client, task_queue=queue, workflows=[OptimizationCycle, CanaryRollout], activities=activities
    ):
        handle = await temporal_client.start_workflow(
            OptimizationCycle.run,
            CycleInput(service=service, **QUIET),
            id=f"optimization-cycle/{service}",
            task_queue=queue,
        )
        started = time.monotonic()
        await handle.signal(OptimizationCycle.rollback, {"reason": "probe", "target_version": "v999"})

        async def alerted() -> CycleStatus | None:
            status = await handle.query(OptimizationCycle.status)
            return status if status.alerts and status.state == CycleState.IDLE else None

        status = await eventually(alerted, "the cycle to leave ROLLING_BACK with an alert", timeout=20)
        assert time.monotonic() - started < 20, "the foreign-key violation must not be retried"
        [alert] = status.alerts
        assert alert.startswith("rollback to v999 failed, traffic unchanged: ")
        assert "foreign key" in alert
        [record] = await handle.query(OptimizationCycle.history)
        assert record.action == "rollback" and record.outcome == alert
        assert status.active_version == "v2" and status.cycles_done == 1

        # The cycle goes on: a later control is applied as usual.
        await handle.signal(OptimizationCycle.pause, {"reason": "after the alert"})
        await eventually(
            lambda: _state(handle, CycleState.PAUSED), "the cycle to take a pause after the alert", timeout=20
        )
        await handle.terminate()

    assert live(database_url, service) == Assignment(service=service, active_version="v2")
    [(by, details)] = audited(database_url, service, "alert")
    assert by == "rollback" and details["alert"] == alert
    transitions = [d["to"] for _, d in audited(database_url, service, "transition")]
    assert transitions[transitions.index("ROLLING_BACK") + 1] == "IDLE"


async def _state(handle, state: CycleState) -> bool:
    return (await handle.query(OptimizationCycle.status)).state == state


async def test_a_rollout_to_a_missing_version_fails_at_once_instead_of_retrying(stack, database_url, temporal_client):
    service = f"rb-{uuid.uuid4().hex[:6]}"
    register(database_url, service)
    loop = LoopActivitySet(settings_for(stack, database_url), fixture_book())
    queue = f"rb-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[CanaryRollout],
        activities=[loop.rollout.set_traffic, loop.rollout.record_rollout],
    ):
        handle = await temporal_client.start_workflow(
            CanaryRollout.run,
            RolloutInput(
                rollout_id=f"canary/{service}/v9@x",
                service=service,
                from_version="v2",
                to_version="v9",
                stages=[RolloutStage(percent=5, bake_s=60), RolloutStage(percent=100, bake_s=0)],
                thresholds=JudgeThresholds(),
            ),
            id=f"canary/{service}/v9",
            task_queue=queue,
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(handle.result(), 20)
    activity_error = failed.value.cause
    assert isinstance(activity_error, ActivityError) and activity_error.retry_state.name == "NON_RETRYABLE_FAILURE"
    assert isinstance(activity_error.cause, ApplicationError) and activity_error.cause.type == "ForeignKeyViolation"
    assert live(database_url, service) == Assignment(service=service, active_version="v2")
