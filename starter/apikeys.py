"""Manage the HTTP API's keys. The key is printed once, at creation; only its hash is stored.

    llm-optimizer apikeys create --name checkout-app --role viewer [--rate 50]
    llm-optimizer apikeys list
    llm-optimizer apikeys revoke --key-id 1a2b3c4d

Roles (docs/api.md, "Keys, roles and limits"): viewer for applications (resolve configs, report events), operator
for on-call engineers (also trigger and roll back), admin for the platform team (also configs, pause, resume,
emergency stop).
"""

from __future__ import annotations

import argparse
import sys

from llm_optimizer.auth import Role
from llm_optimizer.errors import OptimizerError
from llm_optimizer.settings import load_settings
from storage import apikeys_repo
from storage.db import connect, migrate


def build_parser(prog: str = "python -m starter.apikeys") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{create,list,revoke}", help="what to do")
    create = commands.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True, help="who uses the key (shown in audit records)")
    create.add_argument("--role", required=True, choices=[r.value for r in Role], help="what the key may do")
    create.add_argument("--rate", type=float, default=None, help="requests/s (default: server.rate_limit_per_s)")
    commands.add_parser("list", help="list keys (ids, names, roles; never secrets)")
    revoke = commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("--key-id", required=True, help="the id `list` shows (not the key itself)")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m starter.apikeys") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        settings = load_settings()
        migrate(settings.database_url)
        with connect(settings.database_url) as conn:
            if args.command == "create":
                new = apikeys_repo.create(conn, args.name, args.role, rate_limit_per_s=args.rate)
                print(new.key)
                print(f"key id {new.key_id} ({args.role}); keep the key: it is not shown again", file=sys.stderr)
            elif args.command == "list":
                for key in apikeys_repo.list_keys(conn):
                    state = f"revoked {key['revoked_at']:%Y-%m-%d}" if key["revoked_at"] else "live"
                    print(f"{key['key_id']}  {key['role']:<8}  {state:<18}  {key['name']}")
            elif not apikeys_repo.revoke(conn, args.key_id):
                raise OptimizerError(f"--key-id {args.key_id!r}: no live key with this id")
            else:
                print(f"revoked {args.key_id}")
    except OptimizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
