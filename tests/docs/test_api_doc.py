"""Every command and the runnable client example of docs/api.md, run against the real API, worker and cycle."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid

import psycopg
from helpers.api_server import running_api
from helpers.registry import register
from helpers.servers import settings_env, settings_for

from llm_optimizer.payloads import CycleInput
from starter.cycle import start_cycle
from worker import serving


def doc(repo_root) -> str:
    return (repo_root / "docs" / "api.md").read_text()


def console_lines(text: str) -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def _sh(command: str, env: dict, cwd) -> str:
    result = subprocess.run(["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout.strip()


async def test_every_command_and_the_client_example(stack, database_url, temporal_client, repo_root):
    text = doc(repo_root)
    service = f"doc-{uuid.uuid4().hex[:6]}"
    register(database_url, service)
    # The doc's service is "chat"; cycles are global on the shared dev server, so this test uses its own name.
    commands = [c.replace("chat", service) for c in console_lines(text)]
    assert len(commands) >= 9, commands
    settings = settings_for(stack, database_url)
    env = {**os.environ, **settings_env(settings)}

    with running_api(settings) as api:
        env.update(
            API=api.url, KEY=api.keys["admin"], LLM_OPTIMIZER_URL=api.url, LLM_OPTIMIZER_API_KEY=api.keys["admin"]
        )
        async with serving(temporal_client, settings):
            await start_cycle(temporal_client, settings.temporal.task_queue, CycleInput(service=service))
            outputs = {}
            for command in commands:
                command = command.replace(".venv/bin/", f"{os.path.dirname(sys.executable)}/")  # llm-optimizer
                if "revoke --key-id" in command:
                    key_id = api.keys["viewer"].split("_")[1]
                    command = re.sub(r"--key-id \S+", f"--key-id {key_id}", command)
                outputs[command] = await asyncio.to_thread(_sh, command, env, repo_root)

        found = list(outputs.values())
        assert found[0].startswith("lao_")  # create prints the new key
        assert "test-admin" in found[1] and "checkout-app" in found[1]  # list
        assert found[2].startswith("revoked ")
        assert found[3] == '"healthy"'
        assert found[4] == '"v1"'
        assert found[5] == "2"  # the two events of docs/examples/events.json
        assert found[6] == found[7] == '"accepted"'
        assert found[8].strip('"') in {"IDLE", "OBSERVING", "ANALYZING", "DECIDING"}

        example = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "OptimizerClient(" in b)
        ran = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", example.replace('"chat"', f'"{service}"')],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert ran.returncode == 0, ran.stderr
    assert "user-42 gets v1 (baseline): gpt-4o" in ran.stdout and "accepted 1, rejected 0" in ran.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT revoked_at IS NOT NULL FROM api_keys WHERE name = 'test-viewer'").fetchone()[0]
