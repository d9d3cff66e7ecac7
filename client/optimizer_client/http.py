"""The HTTP side of the client: config resolution with a cache, and event reporting in batches."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel

from optimizer_client.wire import AssignmentView, LLMEvent, ResolvedConfig, event_json, resolve


class OptimizerError(Exception):
    """The API refused a request; `status` is the HTTP status and the message the API's reason."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status


class IngestResult(BaseModel):
    accepted: int
    duplicates: int
    anomalies: int
    rejected: int
    errors: list[dict[str, Any]]


@dataclass
class _Entry:
    view: AssignmentView
    fetched_at: float
    refresh_at: float


RETRY_AFTER_FAILURE_S = 5.0


class OptimizerClient:
    """Resolves configs (the assignment of a service is cached for the TTL the API gives, then refreshed) and
    reports events. If a refresh fails, the last assignment keeps serving for up to `stale_ok_s` more: an
    optimizer outage must not take the application down."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 2.0,
        stale_ok_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ):
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
            transport=transport,
        )
        self._stale_ok_s = stale_ok_s
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def resolve(self, service: str, key: str) -> ResolvedConfig:
        """The config that serves `key` for `service` (sticky per key), from the cache when it is fresh."""
        entry = self._cache.get(service)
        if entry is None or self._clock() >= entry.refresh_at:
            entry = self._refresh(service, entry)
        version, variant = resolve(entry.view.assignment, key)
        return ResolvedConfig(service=service, version=version, variant=variant, spec=entry.view.specs[version])

    def _refresh(self, service: str, entry: _Entry | None) -> _Entry:
        with self._lock:
            now = self._clock()
            try:
                view = AssignmentView.model_validate(self._get(f"/api/v1/config/{service}/assignment"))
            except (httpx.HTTPError, OptimizerError) as exc:
                if entry is not None and now - entry.fetched_at < entry.view.ttl_s + self._stale_ok_s:
                    # Serve the last known assignment through a short outage, and do not ask again on every
                    # request (each try could cost the application a timeout): try again in a while.
                    entry.refresh_at = now + min(entry.view.ttl_s, RETRY_AFTER_FAILURE_S)
                    return entry
                if isinstance(exc, OptimizerError):
                    raise
                raise OptimizerError(0, f"cannot reach the optimizer API: {exc}") from exc
            self._cache[service] = _Entry(view=view, fetched_at=now, refresh_at=now + view.ttl_s)
            return self._cache[service]

    def report(
        self, events: Iterable[LLMEvent | BaseModel | dict[str, Any]], *, idempotency_key: str | None = None
    ) -> IngestResult:
        """Send a batch of events (`LLMEvent`s or their JSON objects); a retry with the same `idempotency_key` lands
        nothing twice. The API validates each event: a refused one is in `errors` with the field and the value."""
        batch = [event_json(e) for e in events]
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        response = self._http.post("/api/v1/metrics", json={"metrics": batch}, headers=headers)
        return IngestResult.model_validate(self._checked(response))

    def cycle_status(self, service: str) -> dict[str, Any]:
        return self._get(f"/api/v1/cycles/{service}")

    def _get(self, path: str) -> Any:
        return self._checked(self._http.get(path))

    @staticmethod
    def _checked(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise OptimizerError(response.status_code, str(detail))
        return response.json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OptimizerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
