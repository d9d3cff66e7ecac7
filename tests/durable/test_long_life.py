"""Long life of the loop: continue-as-new keeps the state; recorded histories still replay (determinism)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import psycopg
from helpers.servers import settings_for
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from llm_optimizer.configs import ConfigSpec
from llm_optimizer.payloads import CycleInput, CycleRecord, CycleStatus
from llm_optimizer.resolution import Assignment
from starter.cycle import start_cycle
from storage import configs_repo
from worker import serving
from workflows import ALL_WORKFLOWS

HISTORIES = Path(__file__).parents[1] / "histories"


async def test_continue_as_new_keeps_objectives_history_and_counts(stack, database_url, temporal_client):
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, "longlived", ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.set_assignment(conn, Assignment(service="longlived", active_version="v1"), updated_by="test")
        conn.commit()
    settings = settings_for(stack, database_url)
    # The test stack suggests continue-as-new after 200 history events (conftest); a cycle every ~0.5 s gets there.
    inp = CycleInput(service="longlived", time_scale=0.001, interval_s=500, fast_path_s=500)
    async with serving(temporal_client, settings):
        handle = await start_cycle(temporal_client, settings.temporal.task_queue, inp)
        first_run = (await handle.describe()).run_id
        await handle.signal("set_objectives", {"strategy": "aggressive", "objectives": {"cost": 1, "quality": 0}})
        await handle.signal("pause", {"reason": "will survive", "request_id": "only-once"})
        await handle.signal("resume", {})
        await handle.signal("pause", {"reason": "will survive", "request_id": "only-once"})  # a duplicate: ignored

        deadline = time.monotonic() + 120
        while (await handle.describe()).run_id == first_run:
            assert time.monotonic() < deadline, "no continue-as-new within 2 minutes"
            await asyncio.sleep(0.5)
        status = await handle.query("status", result_type=CycleStatus)
        records = await handle.query("history", result_type=list[CycleRecord])
        # The first run's history as it ended (a query replays that closed run).
        first = temporal_client.get_workflow_handle(handle.id, run_id=first_run)
        first_records = await first.query("history", result_type=list[CycleRecord])
        await handle.terminate()
    assert status.strategy == "aggressive" and status.objectives.cost == 1
    assert status.paused_reason is None, "the duplicate pause must have been ignored, before and after"
    assert status.cycles_done >= 2 and len(records) >= 2
    # The new run goes on from the first run's records (the last 20 are kept, so #1 may be gone by now).
    carried = [r.cycle_id for r in first_records]
    assert carried and carried[-1] in [r.cycle_id for r in records], "history from the first run is carried"


async def test_recorded_histories_replay_without_nondeterminism():
    """Histories recorded from real runs (tests/histories/*.json) must replay on the current workflow code.

    A change to a workflow's command sequence makes this fail; guard such changes with workflow.patched().
    """
    files = sorted(HISTORIES.glob("*.json"))
    assert files, "no recorded histories"
    replayer = Replayer(workflows=ALL_WORKFLOWS, data_converter=pydantic_data_converter)
    for path in files:
        data = json.loads(path.read_text())
        await replayer.replay_workflow(WorkflowHistory.from_json(data["workflow_id"], data["history"]))
