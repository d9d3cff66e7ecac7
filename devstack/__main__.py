"""The local stack: Postgres, Temporal and Kafka on loopback, run from Python wheels (no Docker), their data and
logs under `stack.data_dir` (.data/).

    llm-optimizer stack up         # start what is not running (idempotent)
    llm-optimizer stack status     # exit 0 when the servers run, 3 when one is down
    llm-optimizer stack down [--json]
    llm-optimizer stack clean      # stop it and delete its data (make clean)

Ports and the data folder come from the `stack` settings (docs/configuration.md); `make up`, `make down` and
`make status` run the same.
"""

from __future__ import annotations

import argparse
import json
import sys

from devstack.stack import LocalStack
from llm_optimizer.errors import OptimizerError
from llm_optimizer.settings import load_settings


def build_parser(prog: str = "python -m devstack") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command",
        choices=["up", "down", "status", "clean"],
        help="start, stop or inspect the stack; clean: stop it and delete its data",
    )
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m devstack") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        stack = LocalStack(load_settings().stack)
        if args.command == "up":
            stack.up()
        elif args.command == "down":
            stack.down()
        elif args.command == "clean":
            for path in stack.wipe():
                print(f"removed {path}")
            return 0
        statuses = stack.status()
    except OptimizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([s.__dict__ for s in statuses], indent=2))
    else:
        for s in statuses:
            state = f"running (pid {s.pid})" if s.running else "stopped"
            print(f"{s.name:<9} {state:<22} {s.address:<18} {s.detail}")
    if args.command == "status":
        return 0 if all(s.running for s in statuses if s.name != "worker") else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
