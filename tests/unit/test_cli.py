"""The `llm-optimizer` command (starter/cli.py): its help lists every subcommand, each subcommand's help reads like
a manual page, a wrong subcommand is named, and every starter module is reachable from it."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from starter.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
LLM_OPTIMIZER = Path(sys.executable).parent / "llm-optimizer"  # the console script `make install` installs


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LLM_OPTIMIZER), *args], capture_output=True, text=True, timeout=60, env={"COLUMNS": "200"}, cwd=ROOT
    )


def test_the_console_script_is_the_cli():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"llm-optimizer": "starter.cli:main"}
    assert LLM_OPTIMIZER.is_file(), "run `make install`: pyproject.toml's console script is not installed"


def test_the_help_lists_every_subcommand_with_its_description():
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    listed = dict(re.findall(r"^    (\S+) +(\S.*)$", done.stdout, flags=re.M))
    assert listed == {name: command.summary for name, command in COMMANDS.items()}
    assert "llm-optimizer cycle status --service chat" in done.stdout  # examples
    assert _run().returncode == 2  # no subcommand: the help, as an error


def test_each_subcommands_help_describes_it_with_an_example():
    # All at once: each imports its own module (Temporal, polars, ...), which takes a second or two.
    running = {
        name: subprocess.Popen(
            [str(LLM_OPTIMIZER), name, "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"COLUMNS": "200"},
            cwd=ROOT,
        )
        for name in COMMANDS
    }
    for name, process in running.items():
        out, err = process.communicate(timeout=90)
        assert process.returncode == 0, f"{name}: {err}"
        assert out.startswith(f"usage: llm-optimizer {name}"), out[:200]
        assert f"    llm-optimizer {name}" in out, f"{name}: no example in its help"


def test_every_argument_says_what_it_is_for():
    for name, command in COMMANDS.items():
        module, _ = command.target.split(":")
        build = getattr(importlib.import_module(module), "build_parser", None)
        if name == "worker":
            continue  # no arguments
        assert build is not None, f"{module} has no build_parser"
        for action in build(f"llm-optimizer {name}")._actions:
            assert action.help, f"llm-optimizer {name}: {action.dest} has no help"


def test_an_unknown_subcommand_is_named():
    done = _run("cylce", "status")
    assert done.returncode == 2
    assert "unknown command 'cylce'" in done.stderr and "cycle" in done.stderr


def test_every_starter_module_is_a_subcommand():
    """A command line added to starter/ is reachable from `llm-optimizer` (periodic.py is their shared shape)."""
    entry_points = {
        f"starter.{path.stem}"
        for path in (ROOT / "starter").glob("*.py")
        if 'if __name__ == "__main__":' in path.read_text() and path.stem != "cli"
    }
    targets = {command.target.split(":")[0] for command in COMMANDS.values()}
    assert entry_points <= targets, sorted(entry_points - targets)
    assert {"devstack.__main__", "api.__main__", "starter.cli"} <= targets  # the stack, the API, the worker


def test_python_dash_m_keeps_working_with_its_own_name():
    done = subprocess.run(
        [sys.executable, "-m", "starter.rules", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m starter.rules"), done.stderr
