"""The operator starter: register, start (idempotent), signals, and schedules that run one-shot cycles."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest
from helpers.servers import settings_env, settings_for

from llm_optimizer.configs import ConfigSpec
from llm_optimizer.payloads import CycleRecord, CycleStatus
from llm_optimizer.resolution import Assignment
from starter import cycle as starter_cycle
from storage import configs_repo
from worker import serving


@pytest.fixture
def env_for(monkeypatch, stack, database_url):
    settings = settings_for(stack, database_url, optimization={"time_scale": 0.001})
    for name, value in {**settings_env(settings), "OPTIMIZER_OPTIMIZATION__TIME_SCALE": "0.001"}.items():
        monkeypatch.setenv(name, value)
    return settings


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(starter_cycle.main, list(argv))


async def test_register_start_signal_and_schedule(env_for, temporal_client, capsys):
    settings = env_for
    assert await cli("register", "--service", "ops", "--model", "gpt-4o", "--provider", "openai") == 0
    async with serving(temporal_client, settings):
        assert await cli("start", "--service", "ops", "--candidates", "gpt-4o-mini") == 0
        first = await temporal_client.get_workflow_handle("optimization-cycle/ops").describe()
        assert await cli("start", "--service", "ops") == 0  # idempotent: the running cycle is kept
        assert (await temporal_client.get_workflow_handle("optimization-cycle/ops").describe()).run_id == first.run_id

        assert await cli("pause", "--service", "ops", "--reason", "maintenance") == 0
        handle = temporal_client.get_workflow_handle("optimization-cycle/ops")
        deadline = time.monotonic() + 30
        while (await handle.query("status", result_type=CycleStatus)).paused_reason != "maintenance":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        assert await cli("status", "--service", "ops") == 0
        out = capsys.readouterr().out
        assert "pause accepted by optimization-cycle/ops: state" in out, "the cycle's answer, not a fire-and-forget"
        assert '"paused_reason": "maintenance"' in out
        # A refused control says why in one line, and fails the command.
        assert await cli("set-objectives", "--service", "ops", "--json", '{"strategy": "oops"}') == 1
        err = capsys.readouterr().err
        assert err.startswith("error: set_objectives refused: strategy = 'oops': Input should be")
        assert err.count("\n") == 1, err
        assert await cli("set-objectives", "--service", "ops", "--json", "[1]") == 1
        assert "--json '[1]': expected a JSON object" in capsys.readouterr().err
        await handle.terminate()

        assert await cli("schedule", "create", "--service", "ops", "--every", "1h") == 0
        schedule = temporal_client.get_schedule_handle("optimization-schedule/ops")
        await schedule.trigger()  # run now instead of in an hour
        deadline = time.monotonic() + 60
        while not (actions := (await schedule.describe()).info.recent_actions):
            assert time.monotonic() < deadline, "the schedule did not start a cycle"
            await asyncio.sleep(0.3)
        # A scheduled run's id is the action's id with the scheduled time appended.
        batch = temporal_client.get_workflow_handle(actions[-1].action.workflow_id)
        assert batch.id.startswith("optimization-batch/ops")
        await asyncio.wait_for(batch.result(), timeout=60)
        records = await batch.query("history", result_type=list[CycleRecord])
        assert len(records) == 1
        # Each scheduled run says what it is (the Schedule's action carries the summary), and what it did.
        summary = await (await batch.describe()).static_summary()
        assert summary == "One-shot optimization cycle of ops, every 1h (Schedule optimization-schedule/ops)"
        assert (await batch.result())["cycle_id"] == records[0].cycle_id  # the result, in words, not a null
        assert await cli("schedule", "list", "--service", "ops") == 0
        assert "optimization-schedule/ops" in capsys.readouterr().out
        assert await cli("schedule", "delete", "--service", "ops") == 0


async def test_bad_input_is_refused_with_the_reason(env_for):
    assert await cli("schedule", "create", "--service", "ops", "--every", "soon") == 1
    with pytest.raises(SystemExit):
        await cli("register", "--service", "ops")


def test_the_demo_finds_an_earlier_run_in_the_same_database(database_url):
    """A second demo on the same stack would go on from where the first ended: it is found, by service."""
    from starter.demo import _earlier_run

    assert _earlier_run(database_url, ["demo-a", "demo-b"]) == []
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, "demo-b", ConfigSpec(model="m", provider="p"))
        configs_repo.set_assignment(conn, Assignment(service="demo-b", active_version="v1"), updated_by="demo")
    assert _earlier_run(database_url, ["demo-a", "demo-b"]) == ["demo-b"]
