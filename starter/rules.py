"""Rules as data: load them from YAML into Postgres, list them, and try them on a service's live data.

    llm-optimizer rules load rules.yaml [--service chat]    # insert or replace by name; no --service: every service
    llm-optimizer rules list [--service chat]
    llm-optimizer rules dry-run --service chat [--window 15m]   # what the rules and analyzers say now; nothing kept
    llm-optimizer rules delete --name slow-p95

The rule format is in llm_optimizer/rules.py; the decide activity reads the rules of the service at every decision.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from activities.decide import assess_live
from llm_optimizer.decision import Constraints, Memory, Objectives, Profile
from llm_optimizer.errors import OptimizerError
from llm_optimizer.payloads import DecideRequest
from llm_optimizer.rules import load_rules
from llm_optimizer.settings import Settings, load_settings
from starter.cycle import parse_every
from storage import analysis_repo, configs_repo, rules_repo
from storage.db import connect, migrate


def dry_run(settings: Settings, service: str, window_s: float) -> list[str]:
    """The analyzers' findings and every rule's verdict on the live config over the last window."""
    now = datetime.now(UTC)
    with connect(settings.database_url) as conn:
        assignment = configs_repo.get_assignment(conn, service)
        if assignment is None:
            raise OptimizerError(f"--service {service!r}: no config assigned")
        request = DecideRequest(
            service=service,
            cycle_id="dry-run",
            now=now,
            window_start=datetime.fromtimestamp(now.timestamp() - window_s, UTC),
            strategy=settings.optimization.strategy,
            objectives=Objectives(),
            constraints=Constraints(),
            memory=Memory(),
        )
        version = assignment.active_version
        profiles = analysis_repo.profiles(conn, service, request.window_start, now)
        current = next((p for p in profiles if p.config_version == version), Profile(model="?", provider="?"))
        assessment = assess_live(conn, settings, request, version, current)
    return [f"{'ok  ' if c.passed else 'ACT '} {c.name}: {c.detail}" for c in assessment.checks] or [
        "no findings and no rules"
    ]


def build_parser(prog: str = "python -m starter.rules") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["load", "list", "dry-run", "delete"], help="what to do (see above)")
    parser.add_argument("file", nargs="?", type=Path, help="for load: a YAML list of rules")
    parser.add_argument("--service", help="the service the rules are for (load, list) or tried on (dry-run)")
    parser.add_argument("--name", help="for delete: the rule's name")
    parser.add_argument("--window", default="15m", help="for dry-run: how much recent data to judge (default 15m)")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m starter.rules") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        migrate(settings.database_url)
        if args.command == "load":
            if args.file is None:
                parser.error("load needs a YAML file")
            rules = load_rules(args.file.read_text())
            with connect(settings.database_url) as conn:
                rules_repo.save(conn, rules, args.service)
            print(
                f"loaded {len(rules)} rules for {args.service or 'every service'}: {', '.join(r.name for r in rules)}"
            )
        elif args.command == "list":
            with connect(settings.database_url) as conn:
                for rule in rules_repo.for_service(conn, args.service or ""):
                    print(f"{rule.name}: {rule.action} (priority {rule.priority}, safety {rule.safety})")
        elif args.command == "dry-run":
            if not args.service:
                parser.error("dry-run needs --service")
            print("\n".join(dry_run(settings, args.service, parse_every(args.window).total_seconds())))
        else:
            with connect(settings.database_url) as conn:
                if not rules_repo.delete(conn, args.name or ""):
                    raise OptimizerError(f"--name {args.name!r}: no such rule")
            print(f"deleted {args.name}")
    except (OptimizerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
