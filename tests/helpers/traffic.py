"""Test traffic: requests that resolve their config through the registry and land as events in Postgres.

Each model behaves as its `ModelBehaviour` says, so a test can make a canary worse and watch the loop react.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import psycopg

from llm_optimizer.events import LLMEvent
from llm_optimizer.settings import Settings
from storage.config_client import ConfigClient
from storage.db import Database
from storage.events_repo import land_events


@dataclass
class ModelBehaviour:
    error_rate: float = 0.01
    latency_ms: float = 800.0
    quality: float = 0.85
    cost_usd: float = 0.002


class Traffic:
    """Sends `rate` requests per second for `service` until stopped; behaviours by version, by prompt template
    (`prompt:<template>`) or by model."""

    def __init__(self, database_url: str, service: str, behaviours: dict[str, ModelBehaviour], *, rate: float = 400):
        self.database_url = database_url
        self.service = service
        self.behaviours = behaviours
        self.rate = rate
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._rng = np.random.default_rng(7)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        db = Database(Settings(database={"url": self.database_url}), name="test-traffic")
        client = ConfigClient(db, ttl_s=0.2)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self._stop.is_set():
                started = time.monotonic()
                batch = [self._request(client) for _ in range(max(1, int(self.rate / 10)))]
                with conn.transaction():
                    land_events(conn, batch, source="test-traffic")
                self.sent += len(batch)
                time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
        db.close()

    def _request(self, client: ConfigClient) -> LLMEvent:
        key = f"user-{int(self._rng.integers(1_000_000))}"
        resolved = client.resolve(self.service, key)
        b = (
            self.behaviours.get(resolved.version)
            or self.behaviours.get(f"prompt:{resolved.spec.prompt_template}")
            or self.behaviours[resolved.spec.model]
        )
        failed = self._rng.random() < b.error_rate
        return LLMEvent(
            event_id=str(uuid.uuid4()),
            timestamp=datetime.now(UTC),
            service=self.service,
            model=resolved.spec.model,
            provider=resolved.spec.provider,
            config_version=resolved.version,
            variant=resolved.variant,
            latency_ms=float(self._rng.lognormal(np.log(b.latency_ms), 0.4)),
            tokens_in=500,
            tokens_out=200,
            cost_usd=float(self._rng.gamma(4, b.cost_usd / 4)),
            status="error" if failed else "ok",
            error_type="server_error" if failed else None,
            quality_score=None if failed else float(self._rng.random() < b.quality),
            request_key=key,
        )
