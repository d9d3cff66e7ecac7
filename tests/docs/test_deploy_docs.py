"""The Kubernetes manifests and the Grafana dashboard under docs/: every variable is a setting, every command and
probe exists, every metric the dashboard plots is one the product exports."""

from __future__ import annotations

import importlib.util
import json
import re
from urllib.parse import urlsplit

import prometheus_client
import yaml
from helpers.dashboards import dashboard_metrics
from helpers.setting_names import env_name, setting_keys

import api.app  # noqa: F401  (registers the API's metrics)
import runtime.metrics  # noqa: F401  (registers the product's metrics)
from api.app import create_app
from llm_optimizer.settings import SHORT_ENV_ALIASES, Settings
from runtime.health import app
from runtime.probes import PROBE_TIMEOUT_S

KNOWN = {env_name(k) for k in setting_keys()} | set(SHORT_ENV_ALIASES)


def manifests(repo_root) -> dict[str, list[dict]]:
    return {
        p.name: list(yaml.safe_load_all(p.read_text())) for p in sorted((repo_root / "docs" / "k8s").glob("*.yaml"))
    }


def containers(documents: list[dict]):
    for doc in documents:
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        yield from spec.get("containers", [])


def probe_target(probe: dict) -> tuple[str, str | int]:
    """(path, port) of an HTTP probe: an httpGet, or an exec that opens a loopback URL in the container (the kubelet
    sends an httpGet from the node: a `host` would be the node's, not the pod's)."""
    if "httpGet" in probe:
        assert "host" not in probe["httpGet"], probe
        return probe["httpGet"]["path"], probe["httpGet"]["port"]
    [url] = re.findall(r"'(http://127\.0\.0\.1:\d+/[^']*)'", probe["exec"]["command"][-1])
    parsed = urlsplit(url)
    assert parsed.port is not None, url
    return parsed.path, parsed.port


def test_the_three_deployment_modes_use_real_settings_commands_and_probes(repo_root):
    found = manifests(repo_root)
    assert set(found) == {"standalone.yaml", "sidecar.yaml", "batch.yaml"}
    api_paths = set(create_app(Settings()).openapi()["paths"])
    worker_paths = {path for path in ("/health", "/ready") if served_by_the_worker(path)}
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
            if container["name"] not in {"worker", "api", "optimizer-api"}:
                assert "livenessProbe" not in container and "readinessProbe" not in container, container["name"]
                continue
            # Liveness is /health, readiness /ready, each served by the process probed (the worker on its metrics
            # port: runtime/health.py).
            served = worker_paths if container["name"] == "worker" else api_paths
            for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
                where = probe_target(container[probe])
                assert where[0] == path and path in served, f"{name}: {container['name']} {probe} {where}"
                if container["name"] == "worker":
                    assert where[1] == "metrics", f"{name}: {probe} {where}"
            # A readiness check may take its whole bound when a dependency hangs: the 503 must arrive before the
            # kubelet gives up (its default timeoutSeconds is 1).
            assert container["readinessProbe"].get("timeoutSeconds", 1) > PROBE_TIMEOUT_S, name
    deployments = {d["metadata"]["name"] for d in found["standalone.yaml"] if d["kind"] == "Deployment"}
    assert deployments == {"llm-optimizer-worker", "llm-optimizer-api"}
    [job] = found["batch.yaml"]
    assert job["kind"] == "Job" and "schedule" in next(containers([job]))["command"]


def served_by_the_worker(path: str) -> bool:
    """Whether the worker's WSGI app answers `path` itself (with a JSON body), not with its metrics."""
    seen = []
    wsgi = app(lambda: (True, {"from": "/health"}), lambda: (True, {"from": "/ready"}))
    body = b"".join(wsgi({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, lambda status, headers: seen.append(status)))
    return seen == ["200 OK"] and json.loads(body) == {"from": path}


def test_the_dashboard_plots_only_metrics_the_product_exports(repo_root):
    exported = {
        metric.name.removesuffix("_total") if metric.type == "counter" else metric.name
        for metric in prometheus_client.REGISTRY.collect()
    }
    product = {m.removesuffix("_total") for m in dashboard_metrics(repo_root) if m.startswith("optimizer_")}
    assert len(product) >= 12
    assert product <= exported, f"not exported: {product - exported}"
