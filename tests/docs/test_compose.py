"""docker-compose.yml: valid against the Compose specification, and every variable it gives the worker is a setting.

Docker cannot run on the development machines, so the file is checked here rather than started.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

import jsonschema
import yaml
from helpers.setting_names import env_name, setting_keys

from llm_optimizer.settings import CONFIG_FILE_ENV, SHORT_ENV_ALIASES, Settings
from runtime.health import serve
from runtime.search_attributes import SEARCH_ATTRIBUTES


def load(repo_root):
    return yaml.safe_load((repo_root / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_vendored_specification(repo_root):
    schema = json.loads((repo_root / "docs" / "compose-spec" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(load(repo_root))  # the spec is draft-07


def test_every_variable_given_to_the_project_is_a_real_setting(repo_root):
    known = {env_name(key) for key in setting_keys()} | set(SHORT_ENV_ALIASES) | {CONFIG_FILE_ENV}
    compose = load(repo_root)
    project_vars = set(compose["services"]["worker"]["environment"]) | set(compose["services"]["api"]["environment"])
    example = [
        line.split("=", 1)[0]
        for line in (repo_root / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    project_vars |= {v for v in example if v.startswith("OPTIMIZER_")}
    assert project_vars - known == set(), f"not settings: {sorted(project_vars - known)}"
    assert "DATABASE_URL" in project_vars and "TEMPORAL_ADDRESS" in project_vars


def test_services_have_health_checks_and_wait_for_their_dependencies(repo_root):
    services = load(repo_root)["services"]
    for name in ("postgres", "temporal", "kafka", "api", "worker"):
        assert "healthcheck" in services[name], name
    assert services["worker"]["depends_on"]["temporal-setup"]["condition"] == "service_completed_successfully"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


def test_the_image_contains_every_package_of_the_project(repo_root):
    """The Dockerfile copies each package that pyproject.toml installs (a new package is easy to forget)."""
    pyproject = tomllib.loads((repo_root / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    on_disk = {p.parent.name for p in repo_root.glob("*/__init__.py")} - {"tests"}
    assert on_disk <= packages, f"packages pyproject.toml does not install: {sorted(on_disk - packages)}"
    copied = set(re.findall(r"^COPY (\S+) \./\1$", (repo_root / "Dockerfile").read_text(), flags=re.M))
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"


def test_the_workers_health_check_asks_its_liveness_and_its_readiness_on_the_metrics_port(repo_root):
    """The check runs in the worker's container, on the metrics port the worker's settings give it: unhealthy when
    /health fails (the worker no longer polls its task queue) or /ready fails (Postgres, Temporal or Kafka out of
    reach). The command itself is run here against the worker's WSGI app, answering each way."""
    worker = load(repo_root)["services"]["worker"]
    check = worker["healthcheck"]
    assert check["test"][:3] == ["CMD", "python", "-c"]
    code = check["test"][3]
    settings = Settings(metrics={"port": int(worker["environment"].get("OPTIMIZER_METRICS__PORT", 9464))})
    base = f"http://127.0.0.1:{settings.metrics.port}"
    assert re.findall(r"'(http://[^']+)'", code) == [base]
    assert settings.metrics.host == "127.0.0.1"  # the default: the check, inside the container, reaches it
    # Unhealthy after about interval x retries (plus the start period): well within the staleness limit itself.
    seconds = {k: float(check[k].removesuffix("s")) for k in ("interval", "timeout", "start_period")}
    assert seconds["interval"] * check["retries"] < settings.metrics.poll_stale_s
    assert seconds["timeout"] < seconds["interval"] and seconds["start_period"] >= 30
    for live, ready, healthy in ((True, True, True), (True, False, False), (False, True, False)):
        assert _check_passes(code, base, live, ready) is healthy, (live, ready)


def _check_passes(code: str, base: str, live: bool, ready: bool) -> bool:
    """Run the healthcheck's Python against `app` on a free port, with /health and /ready answering as told."""
    server = serve("127.0.0.1", 0, lambda: (live, {"status": "ok" if live else "stale"}), lambda: (ready, {}))
    try:
        port = server.server_address[1]
        ran = subprocess.run(
            [sys.executable, "-c", code.replace(base, f"http://127.0.0.1:{port}")], capture_output=True, timeout=30
        )
    finally:
        server.shutdown()
        server.server_close()
    return ran.returncode == 0


def test_the_compose_stack_registers_the_projects_search_attributes(repo_root):
    # The one definition is runtime/search_attributes.py; the compose job's shell loop repeats the names.
    [command] = load(repo_root)["services"]["temporal-setup"]["command"]
    loop = re.search(r"for attribute in ([\w ]+); do", command)
    assert loop is not None, command
    assert set(loop[1].split()) == set(SEARCH_ATTRIBUTES) and set(SEARCH_ATTRIBUTES.values()) == {"Keyword"}
    assert "--type Keyword" in command
