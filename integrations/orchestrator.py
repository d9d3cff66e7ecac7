"""Push a service's traffic split to an external orchestrator or gateway (docs/integrations.md)."""

from __future__ import annotations

import httpx

from llm_optimizer.configs import ConfigVersion
from llm_optimizer.errors import OrchestratorRejected
from llm_optimizer.payloads import TrafficRequest
from runtime.resilience import CircuitBreaker


def payload(request: TrafficRequest, active: ConfigVersion, canary: ConfigVersion | None) -> dict:
    """The configuration-update shape (docs/integrations.md), with both versions: the gateway splits traffic itself."""

    def configuration(version: ConfigVersion) -> dict:
        spec = version.spec
        return {
            "version": version.version,
            "model": spec.model,
            "provider": spec.provider,
            "temperature": spec.params.temperature,
            "top_p": spec.params.top_p,
            "max_tokens": spec.params.max_tokens,
            "system_prompt": spec.prompt_template,
        }

    return {
        "service_id": request.service,
        "configuration": configuration(active),
        "canary_configuration": configuration(canary) if canary else None,
        "deployment": {
            "strategy": "canary" if canary else "immediate",
            "rollout_percentage": request.percent if canary else 100,
            "rollout_id": request.rollout_id,
        },
    }


def idempotency_key(request: TrafficRequest) -> str:
    return f"{request.rollout_id}:{request.active_version}:{request.canary_version or '-'}:{request.percent:g}"


async def push(url: str, timeout_s: float, request: TrafficRequest, body: dict, breaker: CircuitBreaker) -> None:
    """PUT the split; a retry sends the same Idempotency-Key so the orchestrator applies it once.

    While the breaker is open the push fails at once (the activity is retried later, without hammering a gateway
    that is down); a refusal is not an outage and does not count against it."""
    breaker.check()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as client:
            response = await client.put(
                f"/api/v1/configurations/{request.service}",
                json=body,
                headers={"Idempotency-Key": idempotency_key(request)},
            )
    except httpx.HTTPError:
        breaker.failure()
        raise
    if 400 <= response.status_code < 500 and response.status_code not in (408, 409, 429):
        breaker.success()
        raise OrchestratorRejected(
            f"orchestrator at {url} refused the configuration of {request.service}: "
            f"{response.status_code} {response.text[:200]}"
        )
    if response.is_success:
        breaker.success()
    else:
        breaker.failure()
    response.raise_for_status()  # 5xx, 408, 429: the activity is retried
