"""The HTTP API served by a real uvicorn on a free port, in a thread of its own (so that a blocking client, such
as the OpenTelemetry exporter, and an in-process worker on the test's loop can both be used against it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import uvicorn

from api.app import create_app
from devstack.processes import free_port
from llm_optimizer.settings import Settings
from storage import apikeys_repo


@dataclass
class RunningApi:
    url: str
    settings: Settings
    keys: dict[str, str]  # role (or name) -> key

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


@contextmanager
def running_api(settings: Settings, extra_keys: dict[str, tuple[str, float]] | None = None) -> Iterator[RunningApi]:
    """Serve the API with a key per role (and `extra_keys`: name -> (role, rate)) until the block ends."""
    keys = {}
    with psycopg.connect(settings.database.url) as conn:
        for role in ("viewer", "operator", "admin"):
            keys[role] = apikeys_repo.create(conn, f"test-{role}", role).key
        for name, (role, rate) in (extra_keys or {}).items():
            keys[name] = apikeys_repo.create(conn, name, role, rate_limit_per_s=rate).key
    port = free_port()
    settings = settings.model_copy(update={"server": settings.server.model_copy(update={"port": port})})
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
    try:
        yield RunningApi(url=f"http://127.0.0.1:{port}", settings=settings, keys=keys)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
