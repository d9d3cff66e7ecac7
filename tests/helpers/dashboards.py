"""The metric names the shipped dashboards use."""

from __future__ import annotations

import json
import re

import api.app  # noqa: F401  (registers the API's metrics)
import runtime.metrics  # noqa: F401  (registers the product's metrics)


def dashboard_metrics(repo_root) -> set[str]:
    dashboard = json.loads((repo_root / "docs" / "grafana" / "llm-auto-optimizer.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return {re.sub(r"_bucket$", "", m) for e in exprs for m in re.findall(r"\b((?:optimizer|temporal)_\w+)", e)}
