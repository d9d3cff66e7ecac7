"""What an operator sees in the Temporal UI and the `temporal` CLI, through the real dev server: every workflow says
what it is (static summary and details) and what it is doing (current details); every signal, query and update is
described; a quiet cycle's history stays lean; a refused control says why in one line; periodic jobs are one entry
in the list each."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import uuid

import psycopg
from helpers.servers import settings_for, wait_for

from activities.rollout import _split_in_words
from devstack.processes import venv_binary
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.ids import watcher_id
from llm_optimizer.payloads import CycleInput, CycleStatus
from llm_optimizer.resolution import Assignment
from starter import maintenance, periodic
from starter.cycle import start_cycle
from storage import configs_repo
from worker import serving
from workflows.details import minutes


def register(database_url: str, service: str) -> None:
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, service, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.set_assignment(conn, Assignment(service=service, active_version="v1"), updated_by="test")
        conn.commit()


def temporal(address: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The real `temporal` CLI, as an operator runs it."""
    result = subprocess.run(
        [str(venv_binary("temporal")), *args, "--address", address], capture_output=True, text=True, timeout=60
    )
    if check:
        assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


async def cli(address: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(temporal, address, *args, check=check)


async def metadata(address: str, workflow_id: str) -> dict:
    """The workflow's own description of itself (handlers and current details), as the UI reads it."""
    shown = await cli(address, "workflow", "metadata", "--workflow-id", workflow_id, "-o", "json")
    return json.loads(shown.stdout)["queryResult"][0]


async def test_a_quiet_cycle_says_what_it_is_doing_and_its_history_stays_lean(stack, database_url, temporal_client):
    service = f"ui-{uuid.uuid4().hex[:6]}"
    register(database_url, service)
    settings = settings_for(stack, database_url, optimization={"time_scale": 0.01})
    address = stack.temporal_address
    # A cycle every 2 s; the watcher checks its thresholds every 0.6 s meanwhile (about three times per interval).
    inp = CycleInput(service=service, interval_s=200, fast_path_s=60, time_scale=0.01)
    async with serving(temporal_client, settings):
        handle = await start_cycle(temporal_client, settings.temporal.task_queue, inp)

        async def status() -> CycleStatus:
            return await handle.query("status", result_type=CycleStatus)

        await wait_for(lambda: _done(status, 1), 30, "the first cycle")
        first = len((await handle.fetch_history()).events)
        done_before = (await status()).cycles_done
        await asyncio.sleep(6.5)  # about three intervals, some twenty fast-path checks
        history = await handle.fetch_history()
        done_after = (await status()).cycles_done
        watcher = temporal_client.get_workflow_handle(watcher_id(settings.temporal.task_queue))
        watched = await watcher.describe()

        described = await handle.describe()
        summary, details = await described.static_summary(), await described.static_details()
        shown = await metadata(address, handle.id)
        described_cli = (await cli(address, "workflow", "describe", "--workflow-id", handle.id)).stdout

        refused = await cli(
            address,
            *("workflow", "update", "execute", "--workflow-id", handle.id, "--name", "control"),
            *("--input", '{"name": "set_objectives", "payload": {"strategy": "oops"}}'),
            check=False,
        )
        # A signal cannot answer: its refusal shows on the page (and in `status`).
        await cli(
            address,
            "workflow",
            "signal",
            "--workflow-id",
            handle.id,
            "--name",
            "set_objectives",
            "--input",
            '{"strategy": "oops"}',
        )
        shown_after = await wait_for(lambda: _refusal_shown(address, handle.id), 10, "the refusal on the page")
        await handle.terminate()

    # Lean: between two cycles nothing but the interval's timer; each quiet cycle is a handful of events.
    cycles = done_after - done_before
    assert cycles >= 2, cycles
    added = len(history.events) - first
    # 8 a cycle when measured: the timer (2), one workflow task (3), observe, decide and the audit write as local
    # activities (a marker each); no search-attribute write, the state is IDLE before and after.
    assert added <= 10 * (cycles + 1), f"{added} events for {cycles} quiet cycles"
    scheduled = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    assert not scheduled, "the fast path is the watcher's, and observe and decide are local activities"
    markers = [e for e in history.events if e.HasField("marker_recorded_event_attributes")]
    assert len(markers) <= 3 * done_after + 2, "observe, decide and one audit write per quiet cycle (and 2 patches)"
    assert watched.status.name == "RUNNING"

    # What it is, from its start, and what it is doing now.
    assert summary == f"Optimization loop of {service} (balanced, every 2 s)"
    assert details is not None and "threshold watcher" in details and "Candidates: none offered" in details
    current = shown["currentDetails"]
    assert current.startswith(("**IDLE**: waiting for the next run", "**OBSERVING**", "**DECIDING**")), current
    assert "- **Live**: v1 (gpt-4o)" in current
    assert "- **Last decision**" in current and "- **Strategy**: balanced" in current
    assert f"_The optimization loop of {service}; controls: the `control` update" in current, "said after a CAN too"
    assert service in described_cli and "Optimization loop" in described_cli

    # Every control and query is described. The internal channels (the watcher's breaches, a child's progress) take
    # one dynamic handler, listed without a name: not offered among the signals.
    definition = shown["definition"]
    handlers = {
        kind: {h.get("name", ""): h.get("description", "") for h in definition.get(f"{key}Definitions", [])}
        for kind, key in (("signal", "signal"), ("query", "query"), ("update", "update"))
    }
    assert handlers["signal"].pop("", "").startswith("Not an operator control"), definition["signalDefinitions"]
    assert set(handlers["signal"]) >= {"pause", "resume", "trigger", "emergency_stop", "rollback", "set_objectives"}
    assert set(handlers["update"]) == {"control"} and {"status", "history"} <= set(handlers["query"])
    for kind, named in handlers.items():
        for name, description in named.items():
            if not name.startswith("__"):
                assert len(description) > 20, f"{kind} {name} has no description"
    assert not {"rollout_progress", "threshold_breached", "internal"} & set(handlers["signal"]), handlers["signal"]

    # A refused control: one line, the field and the value, no traceback.
    assert refused.returncode != 0
    message = refused.stderr + refused.stdout
    assert "set_objectives refused: strategy = 'oops'" in message, message
    assert "Traceback" not in message and 'File "' not in message and ".py" not in message, message
    assert "**IDLE**" in shown_after or "**OBSERVING**" in shown_after or "**DECIDING**" in shown_after


async def _refusal_shown(address: str, workflow_id: str) -> str | None:
    current = (await metadata(address, workflow_id))["currentDetails"]
    return current if "- **Last refusal**: set_objectives refused: strategy = 'oops'" in current else None


async def _done(status, count: int) -> bool:
    return (await status()).cycles_done >= count


async def test_a_periodic_job_is_one_long_running_workflow_that_says_what_it_did(stack, database_url, temporal_client):
    settings = settings_for(stack, database_url)
    job = dataclasses.replace(maintenance.JOB, schedule_id=f"storage-maintenance/{uuid.uuid4().hex[:6]}")
    async with serving(temporal_client, settings):
        await periodic.create_schedule(temporal_client, settings, job, argparse.Namespace(every="1s"))
        handle = temporal_client.get_workflow_handle(job.schedule_id)

        async def runs() -> int:
            return len([e for e in (await handle.fetch_history()).events if e.HasField("timer_fired_event_attributes")])

        await wait_for(lambda: _at_least(runs, 2), 30, "two more runs of the maintenance workflow")
        listed = [w.id async for w in temporal_client.list_workflows(f'WorkflowId = "{job.schedule_id}"')]
        described = await handle.describe()
        summary = await described.static_summary()
        details = (await metadata(stack.temporal_address, job.schedule_id))["currentDetails"]
        await periodic.create_schedule(temporal_client, settings, job, argparse.Namespace(every="1s"))  # idempotent
        again = await handle.describe()
        await handle.cancel()
    assert listed == [job.schedule_id], "one entry in the workflow list, whatever the number of runs"
    assert again.run_id == described.run_id
    assert summary == "Storage maintenance: roll raw events up, expire old ones, every 1 s"
    assert details.startswith("**Storage maintenance, run ") and "raw events expired" in details


async def _at_least(count, n: int) -> bool:
    return (await count()) >= n


def test_figures_in_words_are_rounded_for_people():
    assert [minutes(s) for s in (1.7999999999999998, 27, 90, 900, 5400, 86400)] == [
        "1.8 s",
        "27 s",
        "1.5 min",
        "15 min",
        "1.5 h",
        "24 h",
    ]
    assert _split_in_words(Assignment(service="chat", active_version="v2")) == "chat: all to v2"
    split = Assignment(service="chat", active_version="v2", canary_version="v3", canary_percent=5.0)
    assert _split_in_words(split) == "chat: v3 5%, v2 the rest"
    explore = Assignment(service="chat", active_version="v2", explore={"v4": 10.0, "v5": 10.0})
    assert _split_in_words(explore) == "chat: v4 10%, v5 10%, v2 the rest"


def test_no_workflow_shows_a_markdown_table(repo_root):
    """The Temporal UI's Markdown (current details) runs a table's cells together ("claude-3-haikuexploring0"):
    what a workflow shows there is lines and lists."""
    tables = [
        f"{path.name}:{number}"
        for path in sorted((repo_root / "workflows").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "| --- |" in line or "|---|" in line
    ]
    assert not tables
