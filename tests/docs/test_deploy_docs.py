"""The Kubernetes manifests and the Grafana dashboard under docs/: every variable is a setting, every command and
probe exists, every metric the dashboard plots is one the product exports."""

from __future__ import annotations

import importlib.util

import prometheus_client
import yaml
from helpers.dashboards import dashboard_metrics

import api.app  # noqa: F401  (registers the API's metrics)
import runtime.metrics  # noqa: F401  (registers the product's metrics)
from api.app import create_app
from llm_optimizer.settings import SHORT_ENV_ALIASES, Settings, env_name, setting_keys

KNOWN = {env_name(k) for k in setting_keys()} | set(SHORT_ENV_ALIASES)


def manifests(repo_root) -> dict[str, list[dict]]:
    return {
        p.name: list(yaml.safe_load_all(p.read_text())) for p in sorted((repo_root / "docs" / "k8s").glob("*.yaml"))
    }


def containers(documents: list[dict]):
    for doc in documents:
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        yield from spec.get("containers", [])


def test_the_three_deployment_modes_use_real_settings_commands_and_probes(repo_root):
    found = manifests(repo_root)
    assert set(found) == {"standalone.yaml", "sidecar.yaml", "batch.yaml"}
    api_paths = set(create_app(Settings()).openapi()["paths"])
    for name, documents in found.items():
        for doc in documents:
            if doc["kind"] == "ConfigMap":
                assert set(doc["data"]) <= KNOWN, f"{name}: not settings: {set(doc['data']) - KNOWN}"
        for container in containers(documents):
            if container["name"] == "app":
                continue  # the application of the sidecar example
            command = container["command"]
            assert command[0] == "python"
            target = command[2] if command[1] == "-m" else command[1].removesuffix(".py")
            assert importlib.util.find_spec(target) is not None, f"{name}: {command}"
            for variable in container.get("env", []):
                assert variable["name"] in KNOWN, f"{name}: {variable['name']} is not a setting"
            for probe in ("readinessProbe", "livenessProbe"):
                if probe in container:
                    path = container[probe]["httpGet"]["path"]
                    if container["name"] == "worker":  # the worker's own /health, on its metrics port
                        assert (path, container[probe]["httpGet"]["port"]) == ("/health", "metrics"), name
                    else:
                        assert path in api_paths, f"{name}: {probe} {path}"
    deployments = {d["metadata"]["name"] for d in found["standalone.yaml"] if d["kind"] == "Deployment"}
    assert deployments == {"llm-optimizer-worker", "llm-optimizer-api"}
    [job] = found["batch.yaml"]
    assert job["kind"] == "Job" and "schedule" in next(containers([job]))["command"]


def test_the_dashboard_plots_only_metrics_the_product_exports(repo_root):
    exported = {
        metric.name.removesuffix("_total") if metric.type == "counter" else metric.name
        for metric in prometheus_client.REGISTRY.collect()
    }
    product = {m.removesuffix("_total") for m in dashboard_metrics(repo_root) if m.startswith("optimizer_")}
    assert len(product) >= 12
    assert product <= exported, f"not exported: {product - exported}"
