"""The cycle's observe and decide steps: the registry's view of the service once its window has landed, then the
decision on that window (the live config's assessment, the candidates and their prices, governance), recorded.

Each reads through the storage repositories and calls the pure `llm_optimizer` functions; no transaction is open
across a network call (the model registry's prices are fetched before the read, governance asked after it).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
from temporalio import activity

from activities.heartbeats import heartbeating
from activities.windows import landed
from integrations.governance import GovernanceClient
from integrations.model_registry import ModelRegistryClient, RegistryPrices
from llm_optimizer.assessment import Assessment, assess
from llm_optimizer.candidates import (
    Quote,
    budget_windows,
    candidate_profiles,
    decision_input,
    guards_from,
    offered_candidates,
)
from llm_optimizer.decision import (
    Check,
    Decision,
    DecisionInput,
    Profile,
    apply_governance,
    apply_governance_to_arms,
    decide,
)
from llm_optimizer.payloads import DecideRequest, Observation, ObserveRequest
from llm_optimizer.pricing import PriceBook, PricingCatalog, as_book
from llm_optimizer.settings import Settings
from llm_optimizer.strategies import PRESETS
from runtime import metrics
from storage import analysis_repo, audit_repo, configs_repo, prices_repo, rules_repo
from storage.db import Database


class DecisionActivities:
    """`observe` and `decide`, with what they need: the settings, the price book, the worker's pool, and the model
    registry's and governance's clients when they are configured."""

    def __init__(self, settings: Settings, catalog: PriceBook | PricingCatalog, db: Database):
        self.settings = settings
        self.catalog = catalog
        self.db = db
        integrations = settings.integrations
        self.registry = ModelRegistryClient(integrations) if integrations.model_registry_url else None
        self.governance = GovernanceClient(integrations) if integrations.governance_url else None

    @activity.defn(name="observe")
    @heartbeating
    async def observe(self, request: ObserveRequest) -> Observation:
        """The registry's view of the service, once the observation window's events have landed (or the wait for
        them is over: then `data_late` says why)."""
        _, why_late = await landed(self.db, request.service, request.window_end, request.data_wait_s)

        def work(conn: psycopg.Connection) -> Observation:
            assignment = configs_repo.get_assignment(conn, request.service)
            live = None
            if assignment is not None:
                live = configs_repo.get_version(conn, request.service, assignment.active_version)
            return Observation(
                service=request.service,
                active_version=assignment.active_version if assignment else None,
                parent_version=live.parent_version if live else None,
                canary_version=assignment.canary_version if assignment else None,
                active_model=live.spec.model if live else None,
                data_late=why_late or None,
            )

        return await self.db.run(work)

    @activity.defn(name="decide")
    @heartbeating
    async def decide(self, request: DecideRequest) -> Decision:
        # Read, then call governance outside any transaction (a network call never holds a connection), then write;
        # the model registry's prices are fetched before the read for the same reason.
        registry = await asyncio.to_thread(self.registry.prices) if self.registry is not None else None
        inp, notes = await self.db.run(lambda conn: self.decision_input(conn, request, registry))
        decision = decide(inp)
        decision = decision.model_copy(
            update={"checks": [*notes.checks, *decision.checks], "rule_state": notes.rule_state}
        )
        if self.governance is not None and decision.candidate is not None:
            proposed = {"model": decision.candidate.model, "provider": decision.candidate.provider}
            verdict = await asyncio.to_thread(self.governance.evaluate, request.service, proposed, decision.rationale)
            decision = apply_governance(decision, verdict)
        if self.governance is not None and decision.arms:
            verdicts = {}
            for arm in decision.arms:
                proposed = {"model": arm.model, "provider": arm.provider, **arm.changes}
                verdicts[arm.key] = await asyncio.to_thread(
                    self.governance.evaluate, request.service, proposed, decision.rationale
                )
            decision = apply_governance_to_arms(decision, verdicts)
        await self.db.run(lambda conn: audit_repo.record_decision(conn, decision, request.cycle_id))
        metrics.DECISIONS.labels(request.service, decision.action.value).inc()
        if inp.current.cost_per_request is not None:
            metrics.COST_PER_REQUEST.labels(request.service).set(inp.current.cost_per_request)
        if "cost_per_request" in decision.expected_impact:
            metrics.ESTIMATED_SAVINGS.labels(request.service).set(
                -decision.expected_impact["cost_per_request"].estimate
            )
        return decision

    def decision_input(
        self, conn: psycopg.Connection, request: DecideRequest, registry: RegistryPrices | None = None
    ) -> tuple[DecisionInput, Assessment]:
        """Read what the decision needs (the config registry, the window's profiles, prices, spend) and build its
        input with the pure `candidates.decision_input`; the assessment of the live config goes in as findings.
        `registry`: the model registry's prices and models, fetched by the caller before its transaction."""
        assignment = configs_repo.get_assignment(conn, request.service)
        assert assignment is not None, "observe found an assignment before decide runs"
        active = configs_repo.get_version(conn, request.service, assignment.active_version)
        seen = analysis_repo.profiles(conn, request.service, request.window_start, request.now)
        current = next(
            (p for p in seen if p.config_version == active.version),
            Profile(model=active.spec.model, provider=active.spec.provider, config_version=active.version),
        )
        assessment = assess_live(conn, self.settings, request, active.version, current)
        book = registry.over(self.catalog) if registry is not None else as_book(self.catalog)
        offered = offered_candidates(
            [*request.candidate_models, *(registry.registry_models if registry is not None else [])],
            request.candidate_configs,
        )
        # Observed cost is the lowest layer: only models no other layer prices, from their reported costs.
        unpriced = {c.model for c in offered if c.model and book.price(c.model) is None}
        day_start, month_start = budget_windows(request.now)
        pricing = self.settings.pricing
        book = prices_repo.with_observed(
            conn,
            book,
            unpriced,
            since=request.now - timedelta(seconds=pricing.observed_window_s),
            until=request.now,
            min_requests=pricing.observed_min_requests,
        )
        assessment.checks.append(Check(name="prices", kind="constraint", passed=True, detail=book.describe()))
        regions = registry.regions if registry is not None else {}

        def quote(model: str, tokens_in: float, tokens_out: float) -> Quote | None:
            price = book.price(model)
            if price is None:
                return None
            return Quote(
                provider=price.provider,
                cost_per_request=price.cost(int(tokens_in), int(tokens_out)),
                source=price.source,
            )

        candidates = [
            p.model_copy(update={"region": regions.get(p.model)}) if p.model in regions else p
            for p in candidate_profiles(offered, seen, current, request.memory, quote)
        ]
        budgets = request.constraints
        inp = decision_input(
            service=request.service,
            now=request.now,
            active_version=active.version,
            parent_version=active.parent_version,
            current=current,
            candidates=candidates,
            findings=request.findings,
            assessment_critical=assessment.critical,
            assessment_high=assessment.high,
            alerts=assessment.alerts,
            spent_today_usd=analysis_repo.spent_since(conn, request.service, day_start, request.now)
            if budgets.daily_budget_usd or budgets.monthly_budget_usd
            else None,
            spent_month_usd=analysis_repo.spent_since(conn, request.service, month_start, request.now)
            if budgets.monthly_budget_usd
            else None,
            constraints=request.constraints,
            objectives=request.objectives,
            preset=PRESETS[request.strategy],
            guards=guards_from(self.settings.optimization, request.exploration, request.time_scale),
            memory=request.memory,
        )
        return inp, assessment


def assess_live(
    conn: psycopg.Connection, settings: Settings, request: DecideRequest, version: str, current: Profile
) -> Assessment:
    """The live config's latest requests in the window against its own requests of the window before."""
    length = request.now - request.window_start
    now_samples = analysis_repo.samples(conn, request.service, version, request.window_start, request.now)
    before = analysis_repo.samples(conn, request.service, version, request.window_start - length, request.window_start)
    canary = settings.optimization.canary
    return assess(
        now_samples,
        before,
        current,
        rules_repo.for_service(conn, request.service),
        request.memory.rule_state,
        request.now,
        latency_threshold=canary.latency_increase,
        quality_threshold=canary.quality_decrease,
    )
