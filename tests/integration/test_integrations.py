"""The model registry and governance clients against scripted HTTP servers, their fallbacks, and the decide activity
using both on the real database."""

from __future__ import annotations

import psycopg
import pytest
from helpers.decisions import decide_request, inp
from helpers.fixture_prices import fixture_book
from helpers.registry import live_on_gpt_4o
from helpers.scripted_http import Answer, scripted_server
from helpers.servers import settings_for
from temporalio.testing import ActivityEnvironment

from activities import LoopActivitySet
from integrations.governance import GovernanceClient
from integrations.model_registry import ModelRegistryClient
from llm_optimizer.decision import (
    Action,
    Constraints,
    GovernanceVerdict,
    PolicyViolation,
    Profile,
    apply_governance,
    decide,
)
from llm_optimizer.settings import IntegrationSettings

MODELS = {
    "models": [
        {"model_id": "gpt-4o", "provider": "openai", "pricing": {"input_per_1m": 1.0, "output_per_1m": 4.0}},
        {
            "model_id": "house-7b",
            "provider": "inhouse",
            "region": "eu-west-1",
            "pricing": {"input_per_1m": 0.01, "output_per_1m": 0.02},
        },
        {"model_id": "old-1", "provider": "x", "pricing": {"input_per_1m": 0, "output_per_1m": 0}, "status": "retired"},
    ]
}
DENIED = {
    "approved": False,
    "violations": [{"policy_id": "gdpr-eu", "policy_name": "EU residency", "severity": "deny", "description": "US"}],
    "decision_rationale": "EU users must use EU-hosted models",
}


def integration_settings(**values) -> IntegrationSettings:
    return IntegrationSettings(retries=1, failure_threshold=2, timeout_s=1.0, **values)


def test_registry_prices_win_and_an_outage_falls_back_to_the_local_catalog():
    local = fixture_book()
    with scripted_server([Answer(body=MODELS)]) as registry:
        client = ModelRegistryClient(integration_settings(model_registry_url=registry.url))
        view = client.catalog(local)
        client.catalog(local)  # within model_registry_refresh_s: served from memory
    assert len(registry.requests) == 1 and registry.requests[0][:2] == ("GET", "/api/v1/models")
    assert view.catalog.price("gpt-4o").input_per_1m == 1.0  # the registry's price over the catalog's
    assert view.catalog.price("gpt-4o").source == "registry"
    assert view.catalog.price("gpt-4o-mini") == local.price("gpt-4o-mini")  # the rest stays
    assert local.price("gpt-4o").input_per_1m == 2.5  # the shared book is left as it was
    assert view.registry_models == ["gpt-4o", "house-7b"]  # retired models are not offered
    assert view.source == "prices: model registry (3 models) > price list pricing.yaml (25)"
    assert view.regions == {"house-7b": "eu-west-1"}
    with scripted_server([Answer(502, {"error": "bad gateway"})]) as registry:
        down = ModelRegistryClient(integration_settings(model_registry_url=registry.url)).catalog(local)
    assert down.catalog.price("gpt-4o") == local.price("gpt-4o") and down.registry_models == []
    assert down.source.startswith("prices: model registry unavailable (") and "HTTP 502" in down.source
    assert down.source.endswith(") > price list pricing.yaml (25)")


def test_governance_approves_denies_and_falls_back():
    warned = {**DENIED, "approved": True, "violations": [{**DENIED["violations"][0], "severity": "warn"}]}
    with scripted_server([Answer(body=DENIED), Answer(body=warned), Answer(503, {})]) as governance:
        client = GovernanceClient(integration_settings(governance_url=governance.url))
        denied = client.evaluate("chat", {"model": "m"}, "cheaper")
        approved = client.evaluate("chat", {"model": "m"}, "cheaper")
        unavailable = client.evaluate("chat", {"model": "m"}, "cheaper")
    assert not denied.approved and denied.violations[0].policy_id == "gdpr-eu" and denied.source == "service"
    assert approved.approved and approved.violations[0].severity == "warn"
    assert not unavailable.approved and unavailable.source == "fallback"
    assert "denied by default" in unavailable.rationale
    assert governance.requests[0][2] == {
        "service_id": "chat",
        "proposed_configuration": {"model": "m"},
        "optimization_rationale": "cheaper",
    }
    with scripted_server([Answer(503, {})]) as governance:
        settings = integration_settings(governance_url=governance.url, governance_fail_open=True)
        open_verdict = GovernanceClient(settings).evaluate("chat", {}, "")
    assert open_verdict.approved and "going ahead unchecked" in open_verdict.rationale


def measured(model: str, *, cost: float = 0.001, region: str | None = None) -> Profile:
    """A candidate measured as well as the live config (a canary may start from it)."""
    return Profile(
        model=model,
        provider="q",
        requests=4000,
        error_rate=0.01,
        latency_p95_ms=1500,
        quality_mean=0.92,
        quality_sd=0.3,
        quality_n=4000,
        cost_per_request=cost,
        region=region,
    )


def test_a_denied_rollout_becomes_no_action_and_other_actions_are_untouched():
    canary = decide(inp(candidates=[measured("new")]))
    assert canary.action is Action.canary
    verdict = GovernanceVerdict(approved=False, violations=[PolicyViolation(**DENIED["violations"][0])])
    blocked = apply_governance(canary, verdict)
    assert blocked.action is Action.none and blocked.candidate == canary.candidate
    assert blocked.rationale.startswith("governance denied new: gdpr-eu (deny): US")
    assert blocked.checks[-1].name == "governance" and not blocked.checks[-1].passed
    rollback = decide(inp(critical_findings=["Sentinel: critical outage"]))
    assert apply_governance(rollback, verdict) == rollback


def test_approved_regions_need_a_known_approved_region():
    eu = measured("eu-model", region="eu-west-1")
    us = measured("us-model", cost=0.0005, region="us-east-1")
    unknown = measured("somewhere", cost=0.0001)
    chosen = decide(inp(candidates=[eu, us, unknown], constraints=Constraints(approved_regions=["eu-west-1"])))
    assert chosen.candidate.model == "eu-model"
    details = {c.name: c.detail for c in chosen.checks}
    assert details["candidate us-model"] == "region us-east-1 is not approved"
    assert details["candidate somewhere"] == "region unknown is not approved"


def test_warn_mode_lets_an_unapproved_model_through_with_a_warning():
    warned = decide(
        inp(candidates=[measured("new")], constraints=Constraints(approved_models=["big"], governance_mode="warn"))
    )
    assert warned.action is Action.canary
    warning = next(c for c in warned.checks if c.name == "governance new")
    assert warning.detail == "allowed with a warning (governance_mode warn): not an approved model"


@pytest.mark.parametrize("governance_answer", [Answer(body=DENIED), Answer(500, {})])
async def test_decide_uses_the_registry_and_asks_governance(stack, database_url, governance_answer):
    live_on_gpt_4o(database_url, "chat")
    with scripted_server([Answer(body=MODELS)]) as registry, scripted_server([governance_answer]) as governance:
        settings = settings_for(
            stack,
            database_url,
            integrations={"model_registry_url": registry.url, "governance_url": governance.url, "retries": 0},
        )
        request = decide_request("chat")
        decision = await ActivityEnvironment().run(LoopActivitySet(settings, fixture_book()).decisions.decide, request)
    # house-7b is offered by the registry only; priced from it, it is the cheapest candidate to explore, and governance
    # denies its arm.
    assert governance.requests[0][2]["proposed_configuration"] == {"model": "house-7b", "provider": "inhouse"}
    assert decision.action is Action.none and not decision.arms
    [fate] = [f for f in decision.candidates if f.model == "house-7b"]
    assert fate.fate == "skipped" and fate.reason.startswith("governance denied it")
    governance_check = next(c for c in decision.checks if c.name == "governance")
    assert not governance_check.passed
    expected = "gdpr-eu" if governance_answer.status == 200 else "denied by default"
    assert expected in governance_check.detail
    prices = next(c for c in decision.checks if c.name == "prices")
    assert prices.detail == "prices: model registry (3 models) > price list pricing.yaml (25)"
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT action, rationale FROM decisions WHERE decision_id = %s", (decision.decision_id,))
        action, rationale = stored.fetchone()
    assert action == "none" and rationale.startswith("governance denied house-7b")
