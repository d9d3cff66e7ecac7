"""Every `temporal` command of docs/operations.md, run with the real `temporal` binary against a running cycle and
rollout, with its effect checked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time

import psycopg
from helpers.servers import settings_env, settings_for
from temporalio.service import RPCError

from devstack.processes import venv_binary
from llm_optimizer.canary_judge import JudgeThresholds
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.payloads import CycleInput, CycleState, CycleStatus, RolloutInput, RolloutOutcome
from llm_optimizer.resolution import Assignment
from llm_optimizer.strategies import RolloutStage
from starter.cycle import start_cycle
from storage import configs_repo
from worker import serving


def doc_commands(repo_root) -> list[str]:
    text = (repo_root / "docs" / "operations.md").read_text()
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("temporal ")]


async def run(command: str, address: str) -> str:
    """Run the CLI in a thread: the worker under test shares this event loop and must keep running."""
    return await asyncio.to_thread(_run, command, address)


def _run(command: str, address: str) -> str:
    args = shlex.split(command)
    args[0] = str(venv_binary("temporal"))
    result = subprocess.run([*args, "--address", address], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


async def eventually(check, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def test_every_temporal_command_in_the_operations_doc(stack, database_url, temporal_client, repo_root):
    commands = doc_commands(repo_root)
    assert len(commands) >= 14, commands
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, "chat", ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.register(conn, "chat", ConfigSpec(model="gpt-4o-mini", provider="openai"), parent_version="v1")
        configs_repo.set_assignment(conn, Assignment(service="chat", active_version="v2"), updated_by="test")
        conn.commit()
    settings = settings_for(stack, database_url)
    address = stack.temporal_address

    async with serving(temporal_client, settings):
        handle = await start_cycle(temporal_client, settings.temporal.task_queue, CycleInput(service="chat"))

        async def status() -> CycleStatus:
            return await handle.query("status", result_type=CycleStatus)

        for command in commands:
            if "optimization-cycle/chat" not in command and "Service=" not in command:
                continue
            if "list" in command:
                await eventually(lambda c=command: _listed(c, address), "the cycle in the list")
                continue
            output = await run(command, address)
            if "--type status" in command:
                assert '"state"' in output
            elif _control(command, "pause"):
                await eventually(lambda: _is(status, lambda s: s.paused_reason == "maintenance"), "paused")
            elif _control(command, "resume"):
                await eventually(
                    lambda: _is(status, lambda s: s.paused_reason is None and s.stopped_reason is None), "resumed"
                )
            elif _control(command, "set_objectives"):
                await eventually(
                    lambda: _is(
                        status, lambda s: s.strategy == "conservative" and s.constraints.quality_floor_ratio == 0.97
                    ),
                    "new objectives",
                )
            elif _control(command, "rollback"):
                await eventually(lambda: _is(status, lambda s: s.active_version == "v1"), "rolled back to v1")
            elif _control(command, "emergency_stop"):
                await eventually(lambda: _is(status, lambda s: s.state == CycleState.STOPPED), "stopped")
        await handle.terminate()

        # The rollout commands, against a rollout that bakes long enough to be controlled.
        rollout = await temporal_client.start_workflow(
            "CanaryRollout",
            RolloutInput(
                rollout_id="canary/chat/v2@doc",
                service="chat",
                from_version="v1",
                to_version="v2",
                stages=[
                    RolloutStage(percent=5, bake_s=3600),
                    RolloutStage(percent=25, bake_s=3600),
                    RolloutStage(percent=100, bake_s=0),
                ],
                thresholds=JudgeThresholds(min_samples=1),
            ),
            id="canary/chat/v2",
            task_queue=settings.temporal.task_queue,
            result_type=RolloutOutcome,
        )
        for command in commands:
            if "canary/chat/v2" in command:
                output = await run(command, address)
                if "--type status" in command:
                    assert '"stage"' in output
        outcome = await rollout.result()
    assert outcome.result == "rolled_back" and "looks wrong" in outcome.reason
    assert outcome.verdicts == [], "promote skipped the first stage's verdict"


def _control(command: str, name: str) -> bool:
    """Is `command` the control `name`: its signal, or the `control` update naming it?"""
    return f"--name {name}" in command or f'"name": "{name}"' in command


async def _listed(command: str, address: str) -> bool:
    return "optimization-cycle/chat" in await run(command, address)


async def _is(status, predicate) -> bool:
    return predicate(await status())


def starter_commands(repo_root) -> list[str]:
    text = (repo_root / "docs" / "operations.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.split("#")[0].strip() for b in blocks for line in b.splitlines() if line.startswith("llm-optimizer ")]


async def test_every_starter_command_in_the_operations_doc(stack, database_url, temporal_client, repo_root):
    """The `llm-optimizer ...` lines run against the test stack (the console script `make install` installs, each
    dispatched to its starter); each exits 0 and does what it says."""
    commands = starter_commands(repo_root)
    assert {c.split()[1] for c in commands} == {"cycle", "maintenance", "evaluation"}
    evaluation = {"services": {"chat": {"evaluator": "feedback"}}}
    settings = settings_for(stack, database_url, evaluation=evaluation)
    env = {
        **os.environ,
        **settings_env(settings),
        "OPTIMIZER_EVALUATION__SERVICES": json.dumps(evaluation["services"]),
    }
    outputs = {}
    try:
        async with serving(temporal_client, settings):  # `run` commands execute workflows on this task queue
            for command in commands:
                result = await asyncio.to_thread(
                    subprocess.run,
                    [os.path.join(os.path.dirname(sys.executable), "llm-optimizer"), *shlex.split(command)[1:]],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
                outputs[command] = result.stdout
    finally:
        for schedule_id in ("storage-maintenance", "quality-evaluation", "optimization-schedule/chat"):
            with contextlib.suppress(RPCError):
                await temporal_client.get_schedule_handle(schedule_id).delete()
    by_verb = {" ".join(c.split()[1:4]): out for c, out in outputs.items()}
    assert "optimization-schedule/chat" in by_verb["cycle schedule list"]
    assert '"rollup_rows"' in by_verb["maintenance run"]
    assert '"evaluator": "feedback"' in by_verb["evaluation run"]
