"""A small typed client with which applications resolve their config, with a short cache.

client = ConfigClient(database_url, ttl_s=5)
resolved = client.resolve("chat", key=user_id)   # -> ResolvedConfig(version, variant, spec)
# call the model of resolved.spec, then report the event with config_version=resolved.version
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
from pydantic import BaseModel, ConfigDict

from llm_optimizer.configs import ConfigSpec
from llm_optimizer.errors import ValidationFailed
from llm_optimizer.events import Variant
from llm_optimizer.resolution import Assignment, Resolution, resolve
from storage.configs_repo import get_assignment, get_version
from storage.db import psycopg_url


class ResolvedConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    service: str
    version: str
    variant: Variant
    spec: ConfigSpec


class ConfigClient:
    """Resolves configs from the registry; assignments are cached for `ttl_s` seconds, specs forever (immutable)."""

    def __init__(self, database_url: str, *, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self._url = psycopg_url(database_url)
        self._ttl_s = ttl_s
        self._clock = clock
        self._assignments: dict[str, tuple[float, Assignment]] = {}
        self._specs: dict[tuple[str, str], ConfigSpec] = {}
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None

    def resolve(self, service: str, key: str) -> ResolvedConfig:
        return self._resolved(resolve(self.assignment(service), key))

    def resolve_cached(self, service: str, key: str) -> ResolvedConfig | None:
        """`resolve` without any I/O, or None when the assignment or a spec must be fetched first."""
        cached = self._assignments.get(service)
        if cached is None or self._clock() - cached[0] >= self._ttl_s:
            return None
        resolution = resolve(cached[1], key)
        if (service, resolution.version) not in self._specs:
            return None
        return self._resolved(resolution)

    def _resolved(self, resolution: Resolution) -> ResolvedConfig:
        return ResolvedConfig(
            service=resolution.service,
            version=resolution.version,
            variant=resolution.variant,
            spec=self._spec(resolution.service, resolution.version),
        )

    def assignment(self, service: str) -> Assignment:
        now = self._clock()
        cached = self._assignments.get(service)
        if cached and now - cached[0] < self._ttl_s:
            return cached[1]
        with self._lock:
            assignment = get_assignment(self._connection(), service)
        if assignment is None:
            raise ValidationFailed(f"service {service!r} has no config assigned; register one first", field="service")
        self._assignments[service] = (now, assignment)
        return assignment

    def _spec(self, service: str, version: str) -> ConfigSpec:
        key = (service, version)
        if key not in self._specs:
            with self._lock:
                self._specs[key] = get_version(self._connection(), service, version).spec
        return self._specs[key]

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
