"""A stage verdict row says what the rollout acted on, even when the judge that wrote it died before completing.

`judge_stage` writes its verdict row, then returns the verdict to Temporal. A worker that dies between the two (the
row committed, the completion never recorded) leaves the judgement to a retry with the same key (rollout, stage,
attempt: the workflow's count of judgements within the stage), and the retry may judge differently: the data that
was late has landed meanwhile. The workflow acts on the retry's verdict, so the row must carry it
(`storage/audit_repo.record_verdict`: the latest write of a key wins).

The end-to-end test holds the first judge's completion by a network partition between its worker and Temporal (a
TCP relay the test cuts while the judge waits for its data): the judge writes `inconclusive: data late` to
Postgres, its completion cannot reach Temporal, and the worker is SIGKILLed; the data lands, and a new worker's
retry judges for real.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
from helpers.servers import settings_for, start_worker_process, wait_for
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowHandle

from llm_optimizer.canary_judge import CanaryVerdict, JudgeThresholds, MetricCheck, late
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.events import LLMEvent
from llm_optimizer.payloads import RolloutInput, RolloutOutcome, RolloutRecord, StageVerdict
from llm_optimizer.resolution import Assignment
from llm_optimizer.strategies import RolloutStage
from storage import audit_repo, configs_repo, watermarks_repo
from storage.events_repo import land_events
from workflows import CanaryRollout

SERVICE = "rejudged"
TOPIC = "rejudged-events"
# How long the first judge waits for its data before it says `data late`: the test cuts the partition within this
# long of seeing the judge start (a poll of a tenth of a second, seconds on a busy machine).
DATA_WAIT_S = 8


def _rollout(conn: psycopg.Connection, rollout_id: str) -> None:
    audit_repo.record_rollout(
        conn,
        RolloutRecord(
            rollout_id=rollout_id,
            service=SERVICE,
            from_version="v1",
            to_version="v2",
            strategy="canary",
            state="running",
        ),
    )


def _rows(conn: psycopg.Connection, rollout_id: str) -> list[tuple]:
    return conn.execute(
        "SELECT stage, attempt, percent, verdict, reasons, metrics, judged_at FROM rollout_verdicts "
        "WHERE rollout_id = %s ORDER BY stage, attempt",
        (rollout_id,),
    ).fetchall()


def test_a_verdict_written_again_for_the_same_judgement_keeps_the_latest(db):
    """Two writes of one judgement (stage 0, attempt 0): `data late`, then a real verdict. One row, the latest."""
    _rollout(db, "r1")
    db.commit()
    first = late("topic t has landed rejudged's events up to 10:00:00, 60 s before the window's end")
    audit_repo.record_verdict(db, "r1", StageVerdict(stage=0, attempt=0, percent=5, verdict=first))
    db.commit()
    [(_, _, _, verdict, reasons, _, late_at)] = _rows(db, "r1")
    assert (verdict, reasons) == ("inconclusive", first.reasons)

    healthy = CanaryVerdict(verdict="healthy", reasons=[], checks=[], baseline_requests=300, canary_requests=300)
    audit_repo.record_verdict(db, "r1", StageVerdict(stage=0, attempt=0, percent=25, verdict=healthy))
    db.commit()
    [(stage, attempt, percent, verdict, reasons, metrics, judged_at)] = _rows(db, "r1")
    assert (stage, attempt, percent, verdict, reasons, metrics) == (0, 0, 25, "healthy", [], [])
    assert judged_at > late_at, "the row says when the verdict it carries was judged"

    # Another judgement of the stage is another row; the first stays as it is.
    audit_repo.record_verdict(db, "r1", StageVerdict(stage=0, attempt=1, percent=25, verdict=first))
    db.commit()
    assert [(r[1], r[3]) for r in _rows(db, "r1")] == [(0, "healthy"), (1, "inconclusive")]


class Partition:
    """A TCP relay between a worker and the Temporal server that the test can cut: once cut, no byte passes either
    way, as in a network partition (the worker's connections stay open and its calls hang)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.writers: list[asyncio.StreamWriter] = []
        self.pumps: set[asyncio.Task] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def cut(self) -> None:
        self.flowing.clear()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        pumps = list(self.pumps)
        for task in pumps:
            task.cancel()
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*pumps, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self.pumps.add(task)
            task.add_done_callback(self.pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self.flowing.wait()  # no await in between: nothing read after a cut is written
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _events(version: str, rng: np.random.Generator, since: datetime, n: int) -> list[LLMEvent]:
    """`n` requests of `version`, a second apart from `since`: both versions alike, so the judge says healthy."""
    return [
        LLMEvent(
            event_id=str(uuid.uuid4()),
            timestamp=since + timedelta(seconds=i),
            service=SERVICE,
            endpoint="/v1/chat/completions",
            model="gpt-4o" if version == "v1" else "gpt-4o-mini",
            provider="openai",
            config_version=version,
            latency_ms=float(rng.normal(800, 40)),
            tokens_in=500,
            tokens_out=100,
            cost_usd=float(rng.normal(0.002, 0.0001)),
            status="ok",
            quality_score=float(np.clip(rng.normal(0.85, 0.02), 0, 1)),
        )
        for i in range(n)
    ]


async def _judge_stage_pending(handle: WorkflowHandle) -> bool:
    pending = (await handle.describe()).raw_description.pending_activities
    return any(
        p.activity_type.name == "judge_stage" and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        for p in pending
    )


async def _judge_stage_completions(handle: WorkflowHandle) -> list[int]:
    """The attempt (Temporal's) of each judge_stage completion in the history."""
    judges, attempts, completed = set(), {}, []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            if event.activity_task_scheduled_event_attributes.activity_type.name == "judge_stage":
                judges.add(event.event_id)
        elif event.HasField("activity_task_started_event_attributes"):
            attempts[event.event_id] = event.activity_task_started_event_attributes.attempt
        elif event.HasField("activity_task_completed_event_attributes"):
            done = event.activity_task_completed_event_attributes
            if done.scheduled_event_id in judges:
                completed.append(attempts[done.started_event_id])
    return completed


async def test_a_judge_killed_between_its_write_and_its_completion_leaves_the_retrys_verdict(
    stack, database_url, temporal_client, tmp_path: Path
):
    start = datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o-mini", provider="openai"))
        configs_repo.set_assignment(conn, Assignment(service=SERVICE, active_version="v1"), updated_by="test")
        # A Kafka topic feeds the service and has landed nothing of the last hour: the judge's data is late.
        watermarks_repo.landed(conn, TOPIC, {0: (1, start - timedelta(hours=1))}, {SERVICE: start})
        conn.commit()

    partition = Partition(stack.temporal_address)
    direct = settings_for(stack, database_url)
    through_partition = settings_for(
        stack,
        database_url,
        temporal={"address": await partition.start(), "task_queue": direct.temporal.task_queue},
    )
    rollout_id = f"canary/{SERVICE}/v2@rejudged"
    key = (rollout_id, 0, 0)  # the first judgement of the first stage
    log = tmp_path / "worker.log"
    worker = start_worker_process(through_partition, log)
    try:
        handle = await temporal_client.start_workflow(
            CanaryRollout.run,
            RolloutInput(
                rollout_id=rollout_id,
                service=SERVICE,
                from_version="v1",
                to_version="v2",
                # One judged stage (the promotion gate), judged on every request since `evidence_since`.
                stages=[RolloutStage(percent=50, bake_s=0.5), RolloutStage(percent=100, bake_s=0)],
                thresholds=JudgeThresholds(min_samples=50),
                evidence_since=start - timedelta(minutes=10),
                data_wait_s=DATA_WAIT_S,
            ),
            id=f"canary/{SERVICE}/v2/{uuid.uuid4().hex[:6]}",
            task_queue=direct.temporal.task_queue,
        )

        # 1. The judge has started and waits for its data: cut its worker off from Temporal before it gives up.
        await wait_for(lambda: _judge_stage_pending(handle), 90, "judge_stage started", interval=0.1)
        partition.cut()
        with psycopg.connect(database_url) as conn:
            assert _rows(conn, rollout_id) == [], f"the judge wrote before the partition: raise DATA_WAIT_S ({log})"

        # 2. It writes `data late` (its transaction commits), and its completion hangs: kill its worker.
        def late_row() -> tuple | None:
            with psycopg.connect(database_url) as conn:
                return conn.execute(
                    "SELECT verdict, reasons FROM rollout_verdicts WHERE rollout_id = %s AND stage = %s "
                    "AND attempt = %s",
                    key,
                ).fetchone()

        written = await wait_for(late_row, DATA_WAIT_S + 60, "the late verdict row", interval=0.05)
        _kill(worker)
        await partition.close()
        assert written[0] == "inconclusive" and written[1][0].startswith("data late: "), written
        assert await _judge_stage_completions(handle) == [], "the first judge's completion reached Temporal"

        # 3. The data lands (events and watermark in one transaction, as a landing does), and a new worker retries.
        with psycopg.connect(database_url) as conn:
            rng = np.random.default_rng(11)
            since = start - timedelta(minutes=5)
            land_events(conn, _events("v1", rng, since, 120) + _events("v2", rng, since, 120), source="test")
            watermarks_repo.landed(conn, TOPIC, {0: (241, datetime.now(UTC))}, {SERVICE: since})
            conn.commit()
        worker = start_worker_process(direct, log)
        outcome: RolloutOutcome = await asyncio.wait_for(handle.result(), 120)
    finally:
        _kill(worker)
        await partition.close()

    # The workflow acted on the retry's verdict: a real judgement, healthy, so the rollout was promoted.
    assert outcome.result == "promoted", outcome.reason
    acted = {(v.stage, v.attempt): v for v in outcome.verdicts}
    assert list(acted) == [(0, 0)], "judged once: the data-late judgement never reached the workflow"
    assert acted[0, 0].verdict.verdict == "healthy" and not acted[0, 0].verdict.data_late
    completions = await _judge_stage_completions(handle)
    assert len(completions) == 1 and completions[0] >= 2, f"completed by a retry: Temporal attempts {completions}"

    # The rows say the same, one per judgement.
    with psycopg.connect(database_url) as conn:
        rows = _rows(conn, rollout_id)
        duplicates = conn.execute(
            "SELECT rollout_id, stage, attempt FROM rollout_verdicts GROUP BY 1, 2, 3 HAVING count(*) > 1"
        ).fetchall()
    assert duplicates == []
    # The row keeps each check's full precision; the workflow's copy came through Temporal as JSON (tidied).
    assert [(*r[:5], [MetricCheck.model_validate(m).model_dump(mode="json") for m in r[5]]) for r in rows] == [
        (
            v.stage,
            v.attempt,
            v.percent,
            v.verdict.verdict,
            v.verdict.reasons,
            [c.model_dump(mode="json") for c in v.verdict.checks],
        )
        for v in outcome.verdicts
    ]
    assert rows[0][5], "the checks of the real judgement"


def test_an_earlier_try_of_a_judge_writing_late_never_overwrites_a_later_try(db):
    """A judge cut off from Temporal but not from Postgres is timed out and retried; the retry (try 2) writes and
    completes, then the first try finishes its wait and writes `data late`: the row keeps try 2's verdict."""
    _rollout(db, "r2")
    healthy = CanaryVerdict(verdict="healthy", reasons=[], checks=[], baseline_requests=300, canary_requests=300)
    audit_repo.record_verdict(db, "r2", StageVerdict(stage=1, attempt=0, percent=25, verdict=healthy), judged_by_try=2)
    stale = late("topic t has landed rejudged's events up to 10:00:00, 60 s before the window's end")
    audit_repo.record_verdict(db, "r2", StageVerdict(stage=1, attempt=0, percent=25, verdict=stale), judged_by_try=1)
    db.commit()
    assert [(r[3], r[4]) for r in _rows(db, "r2")] == [("healthy", [])]
    # A third try writes over the second.
    audit_repo.record_verdict(db, "r2", StageVerdict(stage=1, attempt=0, percent=25, verdict=stale), judged_by_try=3)
    db.commit()
    assert [r[3] for r in _rows(db, "r2")] == ["inconclusive"]
