"""Command line of the local stack: `python -m devstack up|down|status [--json]`."""

from __future__ import annotations

import argparse
import json
import sys

from devstack.stack import LocalStack
from llm_optimizer.errors import OptimizerError
from llm_optimizer.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    args = parser.parse_args(argv)
    try:
        stack = LocalStack(load_settings().stack)
        if args.command == "up":
            stack.up()
        elif args.command == "down":
            stack.down()
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
