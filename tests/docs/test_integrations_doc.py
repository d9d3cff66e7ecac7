"""docs/integrations.md: its YAML and JSON blocks are valid as what they claim to be, its runnable Python runs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

import psycopg
import yaml
from helpers.api_server import running_api
from helpers.servers import settings_for

from integrations import llm_grader  # noqa: F401  (registers the "llm_judge" evaluator)
from integrations.model_registry import RegistryModel
from llm_optimizer.decision import Constraints
from llm_optimizer.evaluation import build
from llm_optimizer.settings import Settings


def blocks(repo_root, language: str) -> list[str]:
    text = (repo_root / "docs" / "integrations.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_yaml_blocks_are_valid_settings_and_constraints(repo_root):
    documents = [yaml.safe_load(b) for b in blocks(repo_root, "yaml")]
    assert {next(iter(d)) for d in documents} == {"evaluation", "constraints"}
    for document in documents:
        if "evaluation" in document:
            settings = Settings(evaluation=document["evaluation"])
            services = settings.evaluation.services
            assert len(services) == 6
            for configured in services.values():
                build(configured.evaluator, configured.options)  # every evaluator and option is real
        else:
            assert Constraints.model_validate(document["constraints"]).governance_mode == "warn"


def test_json_blocks_are_the_shapes_the_clients_read_and_send(repo_root):
    registry, governance = (json.loads(b) for b in blocks(repo_root, "json"))
    assert RegistryModel.model_validate(registry["models"][0]).pricing.input_per_1m == 0.01
    assert set(governance) == {"service_id", "proposed_configuration", "optimization_rationale"}


async def test_the_runnable_example_reports_through_the_api(stack, database_url, repo_root):
    [example] = [b for b in blocks(repo_root, "python") if b.startswith("# runnable")]
    with running_api(settings_for(stack, database_url)) as api:
        env = {**os.environ, "LLM_OPTIMIZER_URL": api.url, "LLM_OPTIMIZER_API_KEY": api.keys["viewer"]}
        ran = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", example], env=env, capture_output=True, text=True, timeout=60
        )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "1 accepted"
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT service, model, tokens_in, config_version, ttft_ms FROM events").fetchone()
    assert row[:4] == ("support-bot", "gpt-4o-mini", 812, "v1") and 150 < row[4] < 250
