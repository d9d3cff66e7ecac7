"""The governance service: policy evaluation before a rollout (`POST /api/v1/policies/evaluate`, docs/integrations.md).

It approves, or denies with violations; violations of `warn` policies come back with an approval and are recorded.
Unreachable: denied by default (`integrations.governance_fail_open` lets rollouts go ahead unchecked instead),
and the verdict says which happened.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from integrations.http import call_json
from llm_optimizer.decision import GovernanceVerdict, PolicyViolation
from llm_optimizer.errors import Unavailable
from llm_optimizer.settings import IntegrationSettings
from runtime.resilience import CircuitBreaker


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    approved: bool
    violations: list[PolicyViolation] = Field(default_factory=list)
    decision_rationale: str = ""


class GovernanceClient:
    def __init__(self, settings: IntegrationSettings, transport: httpx.BaseTransport | None = None):
        self.settings = settings
        self._http = httpx.Client(
            base_url=settings.governance_url or "", timeout=settings.timeout_s, transport=transport
        )
        self.breaker = CircuitBreaker(
            "governance", failure_threshold=settings.failure_threshold, reset_after_s=settings.reset_after_s
        )

    def evaluate(self, service: str, proposed: dict[str, Any], rationale: str) -> GovernanceVerdict:
        request = {"service_id": service, "proposed_configuration": proposed, "optimization_rationale": rationale}
        try:
            raw = call_json(
                self._http,
                self.breaker,
                "POST",
                "/api/v1/policies/evaluate",
                json=request,
                retries=self.settings.retries,
            )
            answer = _Answer.model_validate(raw)
        except (Unavailable, ValidationError) as exc:
            reason = str(exc) if isinstance(exc, Unavailable) else f"unreadable answer ({exc.error_count()} problems)"
            fail_open = self.settings.governance_fail_open
            return GovernanceVerdict(
                approved=fail_open,
                source="fallback",
                rationale=f"governance unavailable ({reason}): "
                + ("going ahead unchecked (governance_fail_open)" if fail_open else "denied by default"),
            )
        return GovernanceVerdict(
            approved=answer.approved,
            violations=answer.violations,
            rationale=answer.decision_rationale,
            source="service",
        )

    def close(self) -> None:
        self._http.close()
