"""A worker SIGKILLed inside set_traffic, judge_stage and record_rollout: the rollout goes on within seconds.

Each activity is held at a real slow point (a Postgres lock the test holds, or a watermark behind the stage's end)
while its worker is killed; a new worker takes the work over after the heartbeat timeout (workflows/options.py).
Throughout, the registry and the `rollouts` row never disagree: the final split and record share a transaction.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from helpers.servers import settings_for, start_worker_process, wait_for
from temporalio.api.enums.v1 import PendingActivityState

from llm_optimizer.canary_judge import JudgeThresholds
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.payloads import RolloutInput, RolloutOutcome
from llm_optimizer.resolution import Assignment
from llm_optimizer.strategies import RolloutStage
from storage import configs_repo, watermarks_repo
from workflows import CanaryRollout

SERVICE = "killed"
PROGRESS_S = 20  # the bound: a killed worker's work goes on within this long


def _lock_waiters(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.datname = current_database()"
        ).fetchone()[0]


def _row(database_url: str) -> tuple:
    """The registry's split and the rollout's state, read in one snapshot."""
    with psycopg.connect(database_url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        assignment = configs_repo.get_assignment(conn, SERVICE)
        state = conn.execute("SELECT state FROM rollouts").fetchone()
        verdicts = conn.execute("SELECT count(*) FROM rollout_verdicts").fetchone()[0]
    return assignment, state[0] if state else None, verdicts


class Workers:
    """The worker process of the test, killed and restarted."""

    def __init__(self, settings, log_path):
        self.settings, self.log_path = settings, log_path
        self.proc = start_worker_process(settings, log_path)

    def kill_and_restart(self) -> float:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        killed = time.monotonic()
        self.proc = start_worker_process(self.settings, self.log_path)
        return killed

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


async def _within(killed: float, predicate, what: str) -> float:
    await wait_for(predicate, PROGRESS_S - (time.monotonic() - killed), what, interval=0.1)
    return time.monotonic() - killed


async def test_a_killed_worker_stalls_a_rollout_for_seconds_not_minutes(stack, database_url, temporal_client, tmp_path):
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o-mini", provider="openai"))
        configs_repo.set_assignment(conn, Assignment(service=SERVICE, active_version="v1"), updated_by="test")
        # A Kafka topic feeds the service and is an hour behind: the judge waits (heartbeating) until the test
        # lets the watermark pass.
        now = datetime.now(UTC)
        watermarks_repo.landed(conn, "killed-events", {0: (1, now - timedelta(hours=1))}, {SERVICE: now})
        conn.commit()
    settings = settings_for(stack, database_url)
    disagreements: list[tuple] = []
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            assignment, state, _ = await asyncio.to_thread(_row, database_url)
            if (assignment.active_version == "v2") != (state == "promoted"):
                disagreements.append((assignment, state))
            await asyncio.sleep(0.05)

    # Held: the rollouts table (record_rollout) and the service's split (set_traffic).
    rollouts_lock = psycopg.connect(database_url)
    rollouts_lock.execute("LOCK TABLE rollouts IN SHARE MODE")
    split_lock = psycopg.connect(database_url)
    split_lock.execute("SELECT * FROM config_assignments WHERE service = %s FOR UPDATE", (SERVICE,))
    workers = Workers(settings, tmp_path / "worker.log")
    watcher = asyncio.create_task(watch())
    took = {}
    try:
        handle = await temporal_client.start_workflow(
            CanaryRollout.run,
            RolloutInput(
                rollout_id=f"canary/{SERVICE}/v2@kill",
                service=SERVICE,
                from_version="v1",
                to_version="v2",
                stages=[RolloutStage(percent=5, bake_s=0.5), RolloutStage(percent=100, bake_s=0)],
                thresholds=JudgeThresholds(),
                max_extensions=20,
                data_wait_s=120,
            ),
            id=f"canary/{SERVICE}/v2/{uuid.uuid4().hex[:6]}",
            task_queue=settings.temporal.task_queue,
        )
        # 1. record_rollout("running") waits for the rollouts lock.
        await wait_for(lambda: _lock_waiters(database_url) > 0, 60, "record_rollout waiting for its lock")
        killed = workers.kill_and_restart()
        rollouts_lock.commit()
        took["record_rollout"] = await _within(killed, lambda: _row(database_url)[1] == "running", "rollouts row")

        # 2. set_traffic(5%) waits for the split's lock.
        await wait_for(lambda: _lock_waiters(database_url) > 0, PROGRESS_S, "set_traffic waiting for its lock")
        killed = workers.kill_and_restart()
        split_lock.commit()
        took["set_traffic"] = await _within(
            killed, lambda: _row(database_url)[0].canary_percent == 5, "the 5% split after the kill"
        )

        # 3. judge_stage waits for the watermark.
        async def judging() -> bool:
            pending = (await handle.describe()).raw_description.pending_activities
            return any(
                p.activity_type.name == "judge_stage" and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                for p in pending
            )

        await wait_for(judging, PROGRESS_S, "judge_stage started")
        await asyncio.sleep(1.5)  # it waits, heartbeating
        killed = workers.kill_and_restart()
        with psycopg.connect(database_url) as conn:
            watermarks_repo.caught_up(conn, "killed-events", {0: datetime.now(UTC) + timedelta(hours=1)})
            conn.commit()
        took["judge_stage"] = await _within(killed, lambda: _row(database_url)[2] >= 1, "a verdict after the kill")

        # 4. The promotion (split and record in one transaction) waits for the split's lock.
        split_lock.execute("SELECT * FROM config_assignments WHERE service = %s FOR UPDATE", (SERVICE,))
        await handle.signal(CanaryRollout.promote, {"to_end": True})
        await wait_for(lambda: _lock_waiters(database_url) > 0, PROGRESS_S, "the promotion waiting for its lock")
        killed = workers.kill_and_restart()
        split_lock.commit()
        took["promotion"] = await _within(killed, lambda: _row(database_url)[1] == "promoted", "promoted")
        outcome: RolloutOutcome = await asyncio.wait_for(handle.result(), PROGRESS_S)
        took["result"] = time.monotonic() - killed
    finally:
        stop.set()
        await watcher
        workers.stop()
        rollouts_lock.close()
        split_lock.close()

    print("seconds from the kill to progress:", {k: round(v, 1) for k, v in took.items()})
    assert outcome.result == "promoted"
    assert all(v < PROGRESS_S for v in took.values()), took
    assert disagreements == [], "the registry and the rollouts row disagreed"
    assignment, state, _ = _row(database_url)
    assert (assignment.active_version, assignment.canary_version, state) == ("v2", None, "promoted")
