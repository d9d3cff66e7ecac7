"""The registry's config resolution for a process, with a short cache, on the process's pool of connections.

configs = ConfigClient(db, ttl_s=5)                # db: the process's storage.db.Database
resolved = configs.resolve("chat", key=user_id)   # -> ResolvedConfig(version, variant, spec)
# call the model of resolved.spec, then report the event with config_version=resolved.version
"""

from __future__ import annotations

import time
from collections.abc import Callable

from llm_optimizer.configs import ConfigSpec
from llm_optimizer.errors import ValidationFailed
from llm_optimizer.resolution import Assignment, Resolution, ResolvedConfig, resolve
from storage.configs_repo import get_assignment, get_version
from storage.db import Database

__all__ = ["ConfigClient", "ResolvedConfig"]


class ConfigClient:
    """Resolves configs from the registry; assignments are cached for `ttl_s` seconds, specs forever (immutable).

    Its reads take a connection from `db`, the process's pool (the API's `Backend` owns one), for one short
    transaction each; the client owns no connection, so there is nothing of it to close."""

    def __init__(self, db: Database, *, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self._db = db
        self._ttl_s = ttl_s
        self._clock = clock
        self._assignments: dict[str, tuple[float, Assignment]] = {}
        self._specs: dict[tuple[str, str], ConfigSpec] = {}

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
        with self._db.connection() as conn:
            assignment = get_assignment(conn, service)
        if assignment is None:
            raise ValidationFailed(f"service {service!r} has no config assigned; register one first", field="service")
        self._assignments[service] = (now, assignment)
        return assignment

    def _spec(self, service: str, version: str) -> ConfigSpec:
        key = (service, version)
        if key not in self._specs:
            with self._db.connection() as conn:
                self._specs[key] = get_version(conn, service, version).spec
        return self._specs[key]
