"""One error hierarchy (llm_optimizer/errors.py): every exception class of the server is defined there, under
OptimizerError, with a one-line docstring, and its module docstring draws the whole tree."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from llm_optimizer import errors
from llm_optimizer.errors import OptimizerError

ROOT = Path(__file__).resolve().parents[2]
# The server's packages (the client, client/optimizer_client, is its own distribution with its own errors).
SERVER = ["llm_optimizer", "api", "storage", "activities", "workflows", "runtime", "integrations", "starter"]
SERVER += ["devstack", "simulator", "worker.py"]
CLASSES = [cls for _, cls in inspect.getmembers(errors, inspect.isclass) if cls.__module__ == errors.__name__]


def test_every_error_is_an_optimizer_error_with_a_docstring_listed_in_the_tree():
    assert len(CLASSES) > 1
    tree = errors.__doc__ or ""
    for cls in CLASSES:
        assert issubclass(cls, OptimizerError), cls
        doc = (cls.__doc__ or "").strip()
        assert doc and "\n" not in doc, f"{cls.__name__}: one line of docstring, not {doc!r}"
        assert f" {cls.__name__}\n" in tree or f" {cls.__name__} -" in tree, f"{cls.__name__} is not in the tree"


def test_no_exception_class_is_defined_outside_errors_py():
    names = {cls.__name__ for cls in CLASSES}
    outside = []
    for top in SERVER:
        paths = [ROOT / top] if top.endswith(".py") else sorted((ROOT / top).rglob("*.py"))
        for path in paths:
            if path == ROOT / "llm_optimizer" / "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ClassDef):
                    continue
                bases = {ast.unparse(base).split(".")[-1] for base in node.bases}
                if any(b in names or b.endswith(("Error", "Exception")) for b in bases):
                    outside.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}")
    assert not outside, "exception classes outside llm_optimizer/errors.py:\n" + "\n".join(outside)
