"""OptimizationCycle on the time-skipping server with the real activities and Postgres: triggers, every signal,
emergency stop during a rollout, refusals, run-once for schedules; the fast path (the threshold watcher) on the dev
server."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from helpers.fixture_prices import fixture_book
from helpers.servers import settings_for, wait_for
from temporalio.worker import Worker

from activities import LoopActivitySet
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.events import LLMEvent
from llm_optimizer.payloads import CycleInput, CycleRecord, CycleState, CycleStatus
from llm_optimizer.resolution import Assignment
from storage import configs_repo
from storage.events_repo import land_events
from worker import serving
from workflows import CanaryRollout, OptimizationCycle

SERVICE = "support"


def seed(database_url: str, *, events: int = 0, now: datetime | None = None, measured_mini: bool = False) -> None:
    """v1 and v2 on gpt-4o (v2 live), and `events` requests served by v2 in the ten minutes before `now`; with
    `measured_mini`, as many served by gpt-4o-mini (under v1, an earlier trial of it), which measures it."""
    rng = np.random.default_rng(3)
    now = now or datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.register(
            conn, SERVICE, ConfigSpec(model="gpt-4o", provider="openai", prompt_template="v2: {q}"), parent_version="v1"
        )
        configs_repo.set_assignment(conn, Assignment(service=SERVICE, active_version="v2"), updated_by="test")
        served = [("gpt-4o", "v2", 6.8, 0.005)] + ([("gpt-4o-mini", "v1", 6.5, 0.0005)] if measured_mini else [])
        land_events(
            conn,
            [
                LLMEvent(
                    event_id=str(uuid.uuid4()),
                    timestamp=now - timedelta(seconds=int(i % 600)),
                    service=SERVICE,
                    model=model,
                    provider="openai",
                    config_version=version,
                    latency_ms=float(rng.lognormal(log_latency, 0.3)),
                    tokens_in=800,
                    tokens_out=300,
                    cost_usd=cost,
                    quality_score=float(rng.random() < 0.9),
                )
                for model, version, log_latency, cost in served
                for i in range(events)
            ],
            source="test",
        )
        conn.commit()


class Rig:
    def __init__(self, env, stack, database_url):
        self.env = env
        self.loop = LoopActivitySet(settings_for(stack, database_url), fixture_book())
        self.queue = f"cycle-{uuid.uuid4().hex[:8]}"
        self.worker = Worker(
            env.client,
            task_queue=self.queue,
            workflows=[OptimizationCycle, CanaryRollout],
            activities=self.loop.all(),
        )

    async def start(self, **overrides):
        # No candidates unless a test offers some: an unmeasured one would be explored (a child this rig does not
        # run), and these tests are about the loop and its controls.
        inp = CycleInput(service=SERVICE, **overrides)
        return await self.env.client.start_workflow(
            OptimizationCycle.run, inp, id=f"optimization-cycle/{SERVICE}/{uuid.uuid4().hex[:6]}", task_queue=self.queue
        )

    async def until(self, handle, predicate, what: str, step=timedelta(minutes=1), tries=200) -> CycleStatus:
        for _ in range(tries):
            status = await handle.query(OptimizationCycle.status)
            if predicate(status):
                return status
            await self.env.sleep(step)
        raise AssertionError(f"never reached: {what}; last status {status}")


async def test_timer_runs_cycles_and_pause_resume_trigger_work(time_skipping_env, stack, database_url):
    seed(database_url)  # no traffic: every decision is "none"
    rig = Rig(time_skipping_env, stack, database_url)
    async with rig.worker:
        handle = await rig.start(interval_s=900)
        status = await rig.until(handle, lambda s: s.cycles_done >= 1, "the first timed cycle")
        assert status.last_decision is not None and status.last_decision.action == "none"

        await handle.signal(OptimizationCycle.pause, {"reason": "maintenance window", "request_id": "p1"})
        paused = await rig.until(handle, lambda s: s.state == CycleState.PAUSED, "paused")
        done = paused.cycles_done
        await rig.env.sleep(timedelta(hours=2))
        still = await handle.query(OptimizationCycle.status)
        assert still.cycles_done == done and still.paused_reason == "maintenance window"

        await handle.signal(OptimizationCycle.resume, {})
        await handle.signal(OptimizationCycle.trigger, {"reason": "new prompt deployed"})
        await rig.until(
            handle,
            lambda s: s.cycles_done == done + 1 and s.state == CycleState.IDLE,
            "the triggered cycle",
            step=timedelta(seconds=1),
        )
        history = await handle.query(OptimizationCycle.history)
        assert history[-1].trigger == "manual: new prompt deployed", [(r.trigger, r.cycle_id) for r in history]
        await handle.terminate()

    with psycopg.connect(database_url) as conn:
        transitions = conn.execute(
            "SELECT details->>'to' FROM optimization_events WHERE event_type = 'transition' ORDER BY ts"
        ).fetchall()
    assert ("PAUSED",) in transitions and ("DECIDING",) in transitions


async def test_invalid_objectives_are_refused_and_shown_in_status(time_skipping_env, stack, database_url):
    seed(database_url)
    rig = Rig(time_skipping_env, stack, database_url)
    async with rig.worker:
        handle = await rig.start()
        await handle.signal(OptimizationCycle.set_objectives, {"strategy": "reckless"})
        await handle.signal(
            OptimizationCycle.set_objectives, {"constraints": {"quality_floor_ratio": 0.9}, "strategy": "conservative"}
        )
        status = await rig.until(
            handle, lambda s: s.strategy == "conservative", "the valid update", step=timedelta(seconds=1)
        )
        assert status.constraints.quality_floor_ratio == 0.9
        assert len(status.refusals) == 1 and "strategy" in status.refusals[0]
        await handle.terminate()


async def test_operator_rollback_returns_to_the_parent_version(time_skipping_env, stack, database_url):
    seed(database_url)
    rig = Rig(time_skipping_env, stack, database_url)
    async with rig.worker:
        handle = await rig.start()
        await handle.signal(OptimizationCycle.rollback, {"reason": "bad prompt", "request_id": "r1"})
        await handle.signal(OptimizationCycle.rollback, {"reason": "bad prompt", "request_id": "r1"})  # duplicate
        status = await rig.until(handle, lambda s: s.active_version == "v1", "rolled back", step=timedelta(seconds=1))
        assert status.state in (CycleState.IDLE, CycleState.OBSERVING)
        history = await handle.query(OptimizationCycle.history)
        assert [r.action for r in history] == ["rollback"]
        assert history[0].outcome == "rolled back to v1" and "bad prompt" in history[0].rationale
        await handle.terminate()
    with psycopg.connect(database_url) as conn:
        assert configs_repo.get_assignment(conn, SERVICE).active_version == "v1"


async def test_emergency_stop_during_a_rollout_restores_traffic_and_stops_until_resume(
    time_skipping_env, stack, database_url
):
    # gpt-4o and gpt-4o-mini observed (at the test server's clock, which earlier tests moved on): a canary starts
    # only from measured evidence (an unmeasured candidate is explored first, a child this rig does not run).
    seed(database_url, events=2000, now=await time_skipping_env.get_current_time(), measured_mini=True)
    rig = Rig(time_skipping_env, stack, database_url)
    async with rig.worker:
        handle = await rig.start(interval_s=60, candidate_models=["gpt-4o-mini"])
        status = await rig.until(
            handle, lambda s: s.rollout is not None, "a rollout in flight", step=timedelta(seconds=20)
        )
        with psycopg.connect(database_url) as conn:
            assert configs_repo.get_assignment(conn, SERVICE).canary_version == "v3"
        assert status.rollout.to_version == "v3"

        await handle.signal(OptimizationCycle.emergency_stop, {"reason": "provider outage"})
        stopped = await rig.until(handle, lambda s: s.state == CycleState.STOPPED, "stopped", step=timedelta(seconds=1))
        assert stopped.stopped_reason == "provider outage" and stopped.rollout is None
        with psycopg.connect(database_url) as conn:
            assert configs_repo.get_assignment(conn, SERVICE) == Assignment(service=SERVICE, active_version="v2")
            assert conn.execute("SELECT state, reason FROM rollouts").fetchone() == (
                "rolled_back",
                "emergency stop: provider outage",
            )
        done = stopped.cycles_done
        await rig.env.sleep(timedelta(seconds=3 * 60))  # three intervals of skipped test time
        assert (await handle.query(OptimizationCycle.status)).cycles_done == done, "a stopped cycle must not run"

        await handle.signal(OptimizationCycle.resume, {})
        await rig.until(handle, lambda s: s.state != CycleState.STOPPED, "resumed", step=timedelta(seconds=1))
        await handle.terminate()


async def test_run_once_is_what_a_schedule_starts(time_skipping_env, stack, database_url):
    seed(database_url)
    rig = Rig(time_skipping_env, stack, database_url)
    async with rig.worker:
        handle = await rig.start(run_once=True, interval_s=1)
        await handle.result()
        records = await handle.query(OptimizationCycle.history)
    assert len(records) == 1 and isinstance(records[0], CycleRecord)


@pytest.mark.parametrize("payload", [{"reason": 5}, {"request_id": ["x"]}])
async def test_malformed_signals_never_break_the_cycle(time_skipping_env, stack, database_url, payload):
    seed(database_url)
    rig = Rig(time_skipping_env, stack, database_url)
    async with rig.worker:
        handle = await rig.start()
        await handle.signal(OptimizationCycle.pause, payload)
        status = await rig.until(handle, lambda s: s.refusals, "a refusal", step=timedelta(seconds=1))
        assert status.paused_reason is None and "pause refused" in status.refusals[0]
        await handle.terminate()


async def test_a_sentinel_alert_reaches_the_cycle_through_the_watcher(stack, database_url, temporal_client):
    """The fast path runs off the cycle's history: the task queue's ThresholdWatcher (started by the worker) claims
    the alert for this cycle and signals it; the cycle runs at once and rolls back, long before its interval."""
    seed(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO anomalies (anomaly_id, service, severity, anomaly_type, payload, detected_at) "
            "VALUES ('a1/support', %s, 'critical', 'quality_collapse', '{}', now())",
            (SERVICE,),
        )
        conn.commit()
    settings = settings_for(stack, database_url, optimization={"time_scale": 0.02})  # the watcher lists every 1.2 s
    async with serving(temporal_client, settings):
        handle = await _start_watched_cycle(temporal_client, settings)  # interval 72 s, fast-path window 1.2 s
        started = time.monotonic()
        await wait_for(lambda: _cycles_done(handle), 30, "the cycle the watcher triggered", interval=0.3)
        reacted_s = time.monotonic() - started
        records = await handle.query(OptimizationCycle.history)
        history = await handle.fetch_history()
        await handle.terminate()
    record = records[0]
    assert record.trigger == "threshold: Sentinel: critical quality_collapse"
    assert record.action == "rollback" and record.outcome == "rolled back to v1"
    assert reacted_s < 15, f"a breach must be acted on within seconds of the window, took {reacted_s:.1f}s"
    activities = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert "check_thresholds" not in activities, "the cycle does not poll its thresholds itself"
    with psycopg.connect(database_url) as conn:
        handled = conn.execute("SELECT handled_by FROM anomalies").fetchone()[0]
        assert configs_repo.get_assignment(conn, SERVICE).active_version == "v1"
        signals = conn.execute("SELECT count(*) FROM optimization_events WHERE event_type = 'signal'").fetchone()[0]
    assert handled == handle.id, "the alert is claimed once, by the cycle it was signalled to"
    assert signals == 0, "the watcher's signal is internal: not an operator signal in the audit trail"


async def _cycles_done(handle) -> bool:
    return (await handle.query(OptimizationCycle.status)).cycles_done >= 1


async def _start_watched_cycle(client, settings):
    """A cycle on the settings' time scale whose interval (3600 s scaled) never comes in a test: only the threshold
    watcher (fast-path window 60 s scaled) runs it."""
    scale = settings.optimization.time_scale
    return await client.start_workflow(
        OptimizationCycle.run,
        CycleInput(service=SERVICE, interval_s=3600, fast_path_s=60, time_scale=scale),
        id=f"optimization-cycle/{SERVICE}/{uuid.uuid4().hex[:6]}",
        task_queue=settings.temporal.task_queue,
    )


async def test_a_lasting_breach_runs_the_cycle_once_not_every_window(stack, database_url, temporal_client):
    """The live config (no parent to roll back to) keeps failing half its requests: the watcher signals the breach
    once, the cycle alerts, and the same broken limit of the same version is not signalled again every window
    (`REPEAT_BREACH_WINDOWS`), which would run a cycle that can do nothing more each time."""
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.set_assignment(conn, Assignment(service=SERVICE, active_version="v1"), updated_by="test")
    stop = threading.Event()

    def failing_traffic() -> None:  # 60 requests/s, half of them errors, stamped now
        with psycopg.connect(database_url, autocommit=True) as conn:
            i = 0
            while not stop.wait(0.25):
                batch = []
                for _ in range(15):
                    i += 1
                    batch.append(
                        LLMEvent(
                            event_id=f"fail-{i}",
                            timestamp=datetime.now(UTC),
                            service=SERVICE,
                            model="gpt-4o",
                            provider="openai",
                            config_version="v1",
                            latency_ms=800.0,
                            status="error" if i % 2 else "ok",
                        )
                    )
                with conn.transaction():
                    land_events(conn, batch, source="test")

    feeder = threading.Thread(target=failing_traffic, daemon=True)
    feeder.start()
    settings = settings_for(stack, database_url, optimization={"time_scale": 0.05})  # the watcher lists every 3 s
    try:
        async with serving(temporal_client, settings):
            # The interval is 180 s; the fast-path window 3 s: twelve seconds are four windows of the breach.
            handle = await _start_watched_cycle(temporal_client, settings)
            await wait_for(lambda: _cycles_done(handle), 30, "the cycle the breach triggered", interval=0.3)
            await asyncio.sleep(12)
            status = await handle.query(OptimizationCycle.status)
            records = await handle.query(OptimizationCycle.history)
            await handle.terminate()
    finally:
        stop.set()
        feeder.join()
    assert records[0].trigger.startswith("threshold: error rate") and records[0].action == "alert"
    assert status.cycles_done == 1, [(r.trigger, r.action) for r in records]
    assert status.alerts == [records[0].rationale] and "has no parent" in status.alerts[0]  # what needs an operator


async def test_signals_are_recorded_in_the_audit_trail(time_skipping_env, stack, database_url):
    seed(database_url)
    rig = Rig(time_skipping_env, stack, database_url)
    async with rig.worker:
        handle = await rig.start()
        await handle.signal(OptimizationCycle.pause, {"reason": "audit me", "request_id": "x"})
        await handle.signal(OptimizationCycle.pause, {"reason": "audit me", "request_id": "x"})
        await handle.signal(OptimizationCycle.set_objectives, {"strategy": "nope"})
        await rig.until(handle, lambda s: s.refusals, "the refusal", step=timedelta(seconds=1))
        await handle.terminate()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT triggered_by, details->>'outcome' FROM optimization_events WHERE event_type = 'signal' ORDER BY id"
        ).fetchall()
    assert sorted(rows) == [("pause", "accepted"), ("pause", "duplicate"), ("set_objectives", "refused")]


async def test_a_breach_of_a_replaced_version_is_stale_and_an_alert_never_is(time_skipping_env, stack, database_url):
    seed(database_url)  # v2 live
    rig = Rig(time_skipping_env, stack, database_url)
    async with rig.worker:
        handle = await rig.start(interval_s=86400)  # no timed cycle during the test
        await handle.signal(OptimizationCycle.trigger, {})
        await rig.until(handle, lambda s: s.cycles_done == 1, "the first cycle", step=timedelta(seconds=1))
        done = (await handle.query(OptimizationCycle.status)).cycles_done
        await handle.signal("threshold_breached", {"reasons": ["p95 latency 4000 ms > 2500 ms"], "version": "v1"})
        await handle.signal("threshold_breached", {"alerts": ["Sentinel: critical quality_collapse"], "version": "v1"})
        await rig.until(handle, lambda s: s.cycles_done == done + 1, "the alert's cycle", step=timedelta(seconds=1))
        history = await handle.query(OptimizationCycle.history)
        await handle.terminate()
    # Taken, the stale breach would have run the next cycle (before the alert's) or joined the alert's trigger.
    assert [r.trigger for r in history[done:]] == ["threshold: Sentinel: critical quality_collapse"]
