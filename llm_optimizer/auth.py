"""API keys, roles and per-key rate limits of the HTTP API (pure: storage is in `storage/apikeys_repo.py`).

A key looks like ``lao_<key_id>_<secret>``. Only the SHA-256 of the whole key is stored: keys are 160 random bits,
so a fast hash is enough (no password-style stretching is needed) and a lookup is one indexed read.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Permission(StrEnum):
    """What an API key may do; the roles that grant each are in `docs/api.md`, "Keys, roles and limits"."""

    view_metrics = "view_metrics"
    view_config = "view_config"
    report_events = "report_events"
    modify_config = "modify_config"
    trigger_optimization = "trigger_optimization"
    rollback = "rollback"
    admin = "admin"  # pause, resume, emergency stop


class Role(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    # Applications get `viewer` keys: they read their config and report their events.
    Role.viewer: frozenset({Permission.view_metrics, Permission.view_config, Permission.report_events}),
    Role.operator: frozenset(
        {
            Permission.view_metrics,
            Permission.view_config,
            Permission.report_events,
            Permission.trigger_optimization,
            Permission.rollback,
        }
    ),
    Role.admin: frozenset(Permission),
}

KEY_PREFIX = "lao_"
# Anything shaped like one of our keys, for redaction from logs.
KEY_PATTERN = re.compile(r"lao_[A-Za-z0-9]+_[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class NewKey:
    key_id: str
    key: str  # shown once to whoever created it, never stored

    @property
    def key_hash(self) -> str:
        return hash_key(self.key)


def generate_key() -> NewKey:
    key_id = secrets.token_hex(4)
    return NewKey(key_id=key_id, key=f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(20)}")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who made a request: the key's id and name (never the secret), and what it may do."""

    key_id: str
    name: str
    role: Role
    rate_limit_per_s: float

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


class TokenBucket:
    """Allows `rate_per_s` requests per second on average and bursts of `burst`."""

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate_per_s = {rate_per_s}, burst = {burst}: need rate_per_s > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()

    def take(self) -> float:
        """0 if the request may go now, otherwise the seconds to wait before the next one will be allowed."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate_per_s


class RateLimiter:
    """One token bucket per key id (per API process: each replica enforces its own share)."""

    def __init__(self, burst_s: float, clock: Callable[[], float] = time.monotonic):
        self._burst_s = burst_s
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def retry_after(self, principal: Principal) -> int:
        """0 if allowed, otherwise whole seconds for a `Retry-After` header (at least 1)."""
        bucket = self._buckets.get(principal.key_id)
        if bucket is None or bucket.rate_per_s != principal.rate_limit_per_s:
            burst = max(1.0, principal.rate_limit_per_s * self._burst_s)
            bucket = self._buckets[principal.key_id] = TokenBucket(principal.rate_limit_per_s, burst, self._clock)
        wait = bucket.take()
        return 0 if wait == 0 else max(1, math.ceil(wait))
