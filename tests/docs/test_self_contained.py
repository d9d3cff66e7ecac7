"""A clean clone is enough (README "Two commands"): every data file the demo and the benchmarks open ships with the
repository, and nothing tracked points outside it.

The checks run on a `git clone` of HEAD into an empty temporary directory, so they see the committed state (what a
new user gets) and there is no sibling folder a path could escape to.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
THIS_FILE = Path(__file__).resolve().relative_to(REPO).as_posix()
# What `make demo` and the `make bench-*` targets run (Makefile).
ENTRY_MODULES = ["starter.demo", "benchmarks.savings", "benchmarks.analysis", "benchmarks.ingest", "benchmarks.api"]
# Folders outside the repository the code writes to on purpose, never data it reads: each with the reason.
RUNTIME_FOLDERS = {
    # As root from a private folder, Postgres's unprivileged user cannot reach the clone (devstack/privileges.py).
    "devstack.privileges.HOME": "Postgres's binaries and data when root runs the stack from a private folder",
}
# Run inside the clone: imports the entry modules from it and reports, for every module loaded from the clone, each
# module-level Path and each Path default of its command line, as absolute paths.
PROBE = r"""
import argparse, importlib, json, sys
from pathlib import Path

root = Path.cwd().resolve()
report = {"files": {}, "paths": []}
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    report["files"][name] = str(Path(module.__file__).resolve())
    parse = getattr(module, "parse_args", None)
    if parse is not None:
        try:
            args = parse([])
        except SystemExit:
            args = argparse.Namespace()
        for key, value in vars(args).items():
            if isinstance(value, Path):
                report["paths"].append([f"{name} --{key}", str((root / value).resolve())])
for name, module in list(sys.modules.items()):
    where = getattr(module, "__file__", None)
    if not where or not Path(where).resolve().is_relative_to(root):
        continue
    for key, value in list(vars(module).items()):
        if isinstance(value, Path):
            report["paths"].append([f"{name}.{key}", str((root / value).resolve())])
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def clone():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout")
    parent = Path(tempfile.mkdtemp(prefix="clean-clone-"))
    root = parent / "llm-auto-optimizer"
    try:
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(root)], check=True, timeout=120)
        # Nothing beside the clone: a path leaving the repository finds nothing there.
        assert [p.name for p in parent.iterdir()] == [root.name]
        yield root.resolve()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _probe(root: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *ENTRY_MODULES],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "HOME": str(root)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_default_outcome_tables_ship_in_the_clone(clone):
    report = _probe(clone)
    # The modules really came from the clone, not from the working tree this test runs in.
    for name, where in report["files"].items():
        assert Path(where).is_relative_to(clone), f"{name} imported from {where}, not from the clone"
    paths = dict(report["paths"])
    for constant in ("starter.demo.DEFAULT_OUTCOMES", "benchmarks.savings.DEFAULT_OUTCOMES"):
        assert constant in paths, f"{constant} is gone: update this test with where the default table now lives"
        path = Path(paths[constant])
        assert path.is_relative_to(clone), f"{constant} = {path} is outside the repository"
        assert path.is_file(), f"{constant} = {path} is not in a clean clone (committed? ignored?)"
    # Any other path the loaded code names: if it exists, it must be inside the clone (a data file outside the
    # repository that only happens to exist on this machine is exactly the failure of a clean clone).
    outside = [(what, p) for what, p in report["paths"] if Path(p).exists() and not Path(p).is_relative_to(clone)]
    # A runtime folder is allowed only as a folder: a file there would be data read from outside the repository.
    assert [(what, p) for what, p in outside if what not in RUNTIME_FOLDERS or not Path(p).is_dir()] == []


def test_makefile_data_arguments_are_inside_the_clone(clone):
    makefile = (clone / "Makefile").read_text()
    outcomes = re.findall(r"--outcomes[ =](\S+)", makefile)
    generated = set(re.findall(r"--out[ =](\S+)", makefile))  # written by the target itself (a synthetic fleet)
    assert outcomes, "make bench-savings no longer passes --outcomes: update this test"
    assert any(value not in generated for value in outcomes), "no target reads a shipped outcomes table"
    for value in outcomes:
        path = (clone / value).resolve()
        assert path.is_relative_to(clone), f"Makefile passes {value}, outside the repository"
        if value not in generated:
            assert path.is_file(), f"Makefile passes {value}, missing from a clean clone"


def test_no_tracked_file_points_at_a_sibling_folder(clone):
    done = subprocess.run(
        # This file names the patterns it looks for, so it is left out.
        ["git", "grep", "-n", "-I", "-F", "-e", "../shared", "-e", "shared/data", "--", ".", f":!{THIS_FILE}"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=False,
    )
    # git grep: 1 means no match, 0 means matches (listed), anything else is an error.
    assert done.returncode == 1, done.stdout or done.stderr
