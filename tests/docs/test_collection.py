"""The tests collect however they are started: `pytest`, `python -m pytest`, one file, `-k` (issue 27).

pyproject puts tests/ on the import path (for `helpers`), where a folder named like a product package (a
`tests/workflows/` once) becomes a namespace package that shadows the product's: `pytest` started from its script
then failed to collect with "cannot import name ... from 'workflows' (unknown location)", while `python -m pytest`,
whose working folder comes first on the path, did not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"


def product_modules() -> set[str]:
    """The top-level names the product imports: packages and modules at the root, and the client's packages."""
    names = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    names |= {path.stem for path in ROOT.glob("*.py")}
    names |= {path.parent.name for path in (ROOT / "client").glob("*/__init__.py")}
    return names


def test_the_product_modules_are_found():
    # Guards the guard: a layout change that hid the packages from product_modules() would make the next test vacuous.
    assert {"llm_optimizer", "workflows", "activities", "storage", "api", "worker", "optimizer_client"} <= (
        product_modules()
    )


def test_no_folder_or_module_under_tests_is_named_like_a_product_package():
    names = product_modules()
    clashes = sorted(
        str(path.relative_to(ROOT))
        for path in TESTS.rglob("*")
        if (path.is_dir() or path.suffix == ".py") and path.stem in names and "__pycache__" not in path.parts
    )
    assert not clashes, f"these shadow a product package on the tests' import path; rename them: {clashes}"


def collect(*args: str) -> subprocess.CompletedProcess[str]:
    """`pytest --collect-only` run from its script (not `python -m`), from the root, as a user types it."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "pytest"), "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_pytest_started_from_its_script_collects_every_test_without_errors():
    result = collect()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ tests collected in [\d.]+s", summary), output[-3000:]
    assert not [line for line in output.splitlines() if line.startswith("ERROR ")], output[-3000:]
    # The durable tests import the product's `workflows`: they are the ones a shadowing folder broke.
    assert "tests/durable/test_long_life.py::" in result.stdout
    assert "tests/integration/" in result.stdout and "tests/unit/" in result.stdout
