"""Serve the HTTP API (docs/api.md): config resolution, event reports, controls, keys.

    llm-optimizer api               # or python -m api, make api

Host, port and worker processes come from the `server` settings (docs/configuration.md); the database is migrated
first. Stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from llm_optimizer.errors import OptimizerError
from llm_optimizer.settings import load_settings
from runtime.logs import configure_logging
from storage.db import migrate


def build_parser(prog: str = "python -m api") -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)


def main(argv: list[str] | None = None, prog: str = "python -m api") -> int:
    build_parser(prog).parse_args(argv)
    try:
        settings = load_settings()
    except OptimizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    migrate(settings.database_url)
    uvicorn.run(
        "api.asgi:app",
        host=settings.server.host,
        port=settings.server.port,
        workers=settings.server.workers,
        log_config=None,  # our logging: JSON when asked, secrets redacted
        access_log=True,
        proxy_headers=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
