"""One resilient JSON call shared by the integration clients: timeout, retries with backoff (honouring
Retry-After on 429 and 503), and a circuit breaker that counts a call that failed after its retries."""

from __future__ import annotations

import time
from typing import Any

import httpx

from llm_optimizer.errors import Unavailable
from runtime.resilience import CircuitBreaker

RETRYABLE = {429, 500, 502, 503, 504}


def call_json(
    client: httpx.Client,
    breaker: CircuitBreaker,
    method: str,
    url: str,
    *,
    json: Any = None,
    retries: int = 2,
    backoff_s: float = 0.2,
    max_wait_s: float = 5.0,
    sleep=time.sleep,
) -> Any:
    """The decoded JSON answer of a 2xx response; `Unavailable` otherwise (the breaker has been told)."""
    try:
        breaker.check()
    except Exception as exc:
        raise Unavailable(str(exc)) from None
    problem = ""
    for attempt in range(retries + 1):
        try:
            response = client.request(method, url, json=json)
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
            wait = backoff_s * 2**attempt
        else:
            if response.status_code < 300:
                try:
                    answer = response.json()
                except ValueError:
                    breaker.failure()
                    raise Unavailable(f"{url}: the answer is not JSON") from None
                breaker.success()
                return answer
            problem = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code not in RETRYABLE:
                break
            wait = _retry_after(response) or backoff_s * 2**attempt
        if attempt < retries:
            sleep(min(wait, max_wait_s))
    breaker.failure()
    raise Unavailable(f"{url}: {problem}")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
