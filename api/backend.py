"""What the routes share: the settings, a Postgres pool, the Temporal client, caches and the rate limiter.

Postgres work is synchronous psycopg run in the threadpool (the same repositories as the worker); Temporal calls
are async. The Temporal client connects lazily, so the API starts (and serves configs and events) while
Temporal is down; the control endpoints then answer 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from temporalio.client import Client

from llm_optimizer.auth import Principal, RateLimiter, hash_key
from llm_optimizer.decoding import DecodedBatch, Decoder
from llm_optimizer.evaluation.texts import TextPolicy
from llm_optimizer.payloads import IngestCounts
from llm_optimizer.pricing import price_book
from llm_optimizer.settings import Settings
from runtime import metrics
from runtime.temporal import connect_client
from storage import apikeys_repo
from storage.config_client import ConfigClient
from storage.db import Database
from storage.events_repo import land

T = TypeVar("T")


class TtlCache:
    """A dict whose entries expire after `ttl_s`, holding at most `max_entries` (the oldest go first), so that
    clients sending random keys cannot grow it without bound."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000):
        self._ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or self._clock() - entry[0] >= self._ttl_s:
            return None
        return entry[1]

    def put(self, key: Any, value: Any) -> None:
        self._entries.pop(key, None)
        while len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (self._clock(), value)


class Backend:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.db = Database(settings, name="api")  # the same pooled connections as the worker's activities
        catalog = price_book(settings)
        self.decoders = {
            source: Decoder(catalog, source=source, max_message_bytes=settings.kafka.max_message_bytes)
            for source in ("http", "otlp")
        }
        self.texts = TextPolicy.from_settings(settings.evaluation)
        self.configs = ConfigClient(self.db, ttl_s=settings.server.cache_ttl_s)  # config resolution: the same pool
        self.rate_limiter = RateLimiter(settings.server.rate_limit_burst_s)
        self._principals = TtlCache(settings.server.cache_ttl_s)
        self._temporal: Client | None = None
        self._temporal_lock = asyncio.Lock()

    def open(self) -> None:
        self.db.pool.open(wait=False)

    def close(self) -> None:
        self.db.close()

    @property
    def timeout_s(self) -> float:
        return self.settings.server.timeout_ms / 1000

    async def temporal(self) -> Client:
        async with self._temporal_lock:
            if self._temporal is None:
                self._temporal = await asyncio.wait_for(connect_client(self.settings), self.timeout_s)
            return self._temporal

    async def principal(self, key: str) -> Principal | None:
        """The live principal of an API key; cached (by hash, never the key) for `server.cache_ttl_s`."""
        key_hash = hash_key(key)
        cached = self._principals.get(key_hash)
        if cached is not None:
            return cached or None  # False caches an unknown key, so guessing keys cannot flood Postgres
        principal = await self.run(apikeys_repo.authenticate, key, self.settings.server.rate_limit_per_s)
        self._principals.put(key_hash, principal or False)
        return principal

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(conn, *args)` in the threadpool on a pooled connection, in one transaction committed when it
        returns."""

        def call() -> T:
            with self.db.connection() as conn:
                return work(conn, *args)

        return await run_in_threadpool(call)

    async def land(self, batch: DecodedBatch, source: str) -> IngestCounts:
        counts = await self.run(lambda conn: land(conn, batch, source=source, texts=self.texts))  # one transaction
        metrics.record_landed(source, batch, counts)
        return counts
