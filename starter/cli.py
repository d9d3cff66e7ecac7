"""`llm-optimizer`: the one command of llm-auto-optimizer, for operators (the `[project.scripts]` of pyproject.toml).

Each subcommand is a module of its own, imported only when it runs, with its own `--help` (`python -m starter.cycle`,
`python -m devstack`, `python -m api` and `python worker.py` run the same code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    target: str  # "module:function", a `main(argv, prog) -> exit code` that parses the subcommand's arguments
    summary: str  # one line for `llm-optimizer --help`
    temporal: bool = False  # uses a Temporal client: ends through runtime.temporal.exit_process


COMMANDS: dict[str, Command] = {
    "stack": Command("devstack.__main__:main", "start, stop or inspect the local stack (Postgres, Temporal, Kafka)"),
    "worker": Command(
        "starter.cli:worker_main", "run the Temporal worker (workflows and activities) until SIGINT or SIGTERM"
    ),
    "api": Command("api.__main__:main", "serve the HTTP API: config resolution, event reports, controls, keys"),
    "cycle": Command(
        "starter.cycle:main", "register a service, start, inspect and control its optimization cycle", temporal=True
    ),
    "ingest": Command("starter.ingest:main", "start, inspect or stop the ingestion of a Kafka topic", temporal=True),
    "backfill": Command("starter.backfill:main", "load events from a JSONL, CSV or Parquet file"),
    "rules": Command("starter.rules:main", "load, list, try or delete the rules of a service"),
    "apikeys": Command("starter.apikeys:main", "create, list or revoke the HTTP API's keys"),
    "evaluation": Command(
        "starter.evaluation:main", "score events' quality: one round now, or periodically", temporal=True
    ),
    "maintenance": Command(
        "starter.maintenance:main", "roll events up and expire old ones: now, or periodically", temporal=True
    ),
    "demo": Command(
        "starter.demo:main", "the whole loop on the local stack, replaying real LLM outcomes", temporal=True
    ),
}

DESCRIPTION = """\
Operate llm-auto-optimizer: the local stack, the worker and the API, the optimization cycle of each service, the
ingestion of events, rules, keys and the periodic jobs. Every command reads the settings (a YAML file named by
OPTIMIZER_CONFIG_FILE, and OPTIMIZER_* variables: docs/configuration.md)."""

EXAMPLES = """\
examples:
  llm-optimizer stack up
  llm-optimizer worker &
  llm-optimizer cycle register --service chat --model gpt-4o --provider openai
  llm-optimizer cycle start --service chat --candidates gpt-4o-mini
  llm-optimizer cycle status --service chat
  llm-optimizer stack down

`llm-optimizer COMMAND --help` describes a command, its arguments and examples (docs/operations.md)."""


class _CommandList(argparse.RawDescriptionHelpFormatter):
    """Every summary starts on its command's line: argparse sizes the name column one indent too narrow for the
    entries of a subcommand list, so that "maintenance" would sit alone on its line."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        self._action_max_length = max(self._action_max_length, 2 * self._indent_increment + max(map(len, COMMANDS)))


def build_parser(prog: str = "llm-optimizer") -> argparse.ArgumentParser:
    """The top level, for its help and errors: the subcommands parse their own arguments."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=_CommandList,
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, command in COMMANDS.items():
        commands.add_parser(name, help=command.summary, add_help=False)
    return parser


WORKER_DOC = """\
Run the Temporal worker: it polls the task queue (temporal.task_queue) and runs the workflows and activities, and
serves its metrics and health (metrics.port). Start as many as the load needs, on any machines that reach Temporal,
Postgres and Kafka. Stops on SIGINT or SIGTERM.

    llm-optimizer worker             # or python worker.py, make worker
"""


def worker_main(argv: list[str] | None = None, prog: str = "llm-optimizer worker") -> int:
    argparse.ArgumentParser(
        prog=prog, description=WORKER_DOC, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args(argv)
    import worker  # the entry point at the repository's root (`python worker.py`)

    return worker.main()


def main(argv: list[str] | None = None, prog: str = "llm-optimizer") -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(prog)
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        parser.error(f"unknown command {name!r}: choose from {', '.join(COMMANDS)}")
    command = COMMANDS[name]
    module, function = command.target.split(":")
    code = getattr(importlib.import_module(module), function)(rest, prog=f"{prog} {name}")
    if command.temporal:
        from runtime.temporal import exit_process

        exit_process(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
