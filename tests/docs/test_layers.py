"""Imports flow one way (docs/architecture.md, "Layers, and where a change goes"): each package may import only
the layers below it. A new import that runs upwards fails here with the file and the import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = {"llm_optimizer"}
INFRA = {"storage", "integrations", "runtime"}
# What each package may import, besides itself and third-party code. Workflows import activities only to call them
# by reference, and of the infrastructure only the search-attribute keys (names with Temporal's types, no I/O: the
# sandbox stays deterministic). Workflow ids and signal names are in the domain (`llm_optimizer.ids`).
ALLOWED = {
    "llm_optimizer": DOMAIN,
    "storage": DOMAIN,
    "integrations": DOMAIN | {"runtime"},
    "runtime": DOMAIN | {"storage"},
    "activities": DOMAIN | INFRA,
    "workflows": DOMAIN | {"activities", "runtime.search_attributes"},
    "api": DOMAIN | INFRA,
    "devstack": DOMAIN | INFRA,
    "starter": DOMAIN | INFRA | {"workflows", "activities", "api", "devstack", "simulator", "worker"},
    "simulator": DOMAIN | {"storage"},
}
FIRST_PARTY = set(ALLOWED) | {"worker", "benchmarks", "optimizer_client"}


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def allowed(package: str, module: str) -> bool:
    top = module.split(".")[0]
    if top not in FIRST_PARTY or top == package:
        return True
    return any(module == rule or module.startswith(rule + ".") or rule == top for rule in ALLOWED[package])


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package):
    upward = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
        for line, module in imports_of(path)
        if not allowed(package, module)
    ]
    assert not upward, "imports running upwards:\n" + "\n".join(upward)
