"""Serve the HTTP API: `python -m api` (host, port and workers from the `server` settings)."""

from __future__ import annotations

import sys

import uvicorn

from llm_optimizer.errors import OptimizerError
from llm_optimizer.settings import load_settings
from runtime.logs import configure_logging
from storage.db import migrate


def main() -> int:
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
