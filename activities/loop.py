"""Activities of OptimizationCycle, CanaryRollout, ABExperiment and StorageMaintenance: thin adapters to the domain.

Each opens a connection, reads summaries, calls a pure function, writes the result; each is idempotent (keyed by
decision id, rollout id and stage, or audit id), so a retry after a crash writes nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar, get_args

import psycopg
from temporalio import activity

from activities import metrics, orchestrator
from integrations.governance import GovernanceClient
from integrations.model_registry import ModelRegistryClient
from llm_optimizer.assessment import Assessment, assess
from llm_optimizer.control import (
    AuditRecord,
    DecideRequest,
    EvaluateRequest,
    JudgeRequest,
    MaintenanceReport,
    MaintenanceRequest,
    Observation,
    ObserveRequest,
    PrepareCanaryRequest,
    PreparedCanary,
    RolloutRecord,
    StageVerdict,
    ThresholdCheck,
    ThresholdRequest,
    TrafficRequest,
)
from llm_optimizer.decision import (
    Check,
    Decision,
    DecisionInput,
    Guards,
    Profile,
    apply_governance,
    decide,
    violations,
)
from llm_optimizer.experiments import ABResult, ArmCounts, evaluate_ab
from llm_optimizer.judge import CanaryVerdict, judge
from llm_optimizer.pricing import PricingCatalog
from llm_optimizer.resilience import CircuitBreaker
from llm_optimizer.resolution import Assignment
from llm_optimizer.settings import Settings
from llm_optimizer.strategies import PRESETS
from llm_optimizer.tuning import TaskType, tune
from storage import analysis_repo, audit_repo, configs_repo, rollups_repo, rules_repo
from storage.db import psycopg_url

T = TypeVar("T")
CRITICAL_ALERT = "Sentinel: critical"


class LoopActivities:
    def __init__(self, settings: Settings, catalog: PricingCatalog):
        self.settings = settings
        self.catalog = catalog
        integrations = settings.integrations
        self.registry = ModelRegistryClient(integrations) if integrations.model_registry_url else None
        self.governance = GovernanceClient(integrations) if integrations.governance_url else None
        self.orchestrator_breaker = CircuitBreaker(
            "orchestrator", failure_threshold=integrations.failure_threshold, reset_after_s=integrations.reset_after_s
        )

    async def _db(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run `work` in a thread, in one transaction on a fresh connection."""

        def run() -> T:
            with (
                psycopg.connect(
                    psycopg_url(self.settings.database_url),
                    connect_timeout=int(self.settings.database.connect_timeout_s),
                ) as conn,
                conn.transaction(),
            ):
                return work(conn)

        return await asyncio.to_thread(run)

    # ---- OptimizationCycle ----

    @activity.defn(name="observe")
    async def observe(self, request: ObserveRequest) -> Observation:
        def work(conn: psycopg.Connection) -> Observation:
            assignment = configs_repo.get_assignment(conn, request.service)
            parent = None
            if assignment is not None:
                parent = configs_repo.get_version(conn, request.service, assignment.active_version).parent_version
            return Observation(
                service=request.service,
                active_version=assignment.active_version if assignment else None,
                parent_version=parent,
                canary_version=assignment.canary_version if assignment else None,
            )

        return await self._db(work)

    @activity.defn(name="check_thresholds")
    async def check_thresholds(self, request: ThresholdRequest) -> ThresholdCheck:
        """The fast path: the live config against the hard limits, and Sentinel's high and critical alerts."""

        def work(conn: psycopg.Connection) -> ThresholdCheck:
            reasons = _take_anomalies(conn, request.service, activity.info().workflow_id or "")
            assignment = configs_repo.get_assignment(conn, request.service)
            if assignment is not None:
                for p in analysis_repo.profiles(conn, request.service, request.window_start, request.window_end):
                    if p.config_version == assignment.active_version and p.requests >= 50:
                        reasons += violations(p, request.constraints, None)
            return ThresholdCheck(violated=bool(reasons), reasons=reasons)

        return await self._db(work)

    @activity.defn(name="decide")
    async def decide(self, request: DecideRequest) -> Decision:
        def work(conn: psycopg.Connection) -> tuple[Decision, DecisionInput]:
            inp, notes = self.decision_input(conn, request)
            decision = decide(inp)
            decision = decision.model_copy(
                update={"checks": [*notes.checks, *decision.checks], "rule_state": notes.rule_state}
            )
            if self.governance is not None and decision.candidate is not None:
                proposed = {"model": decision.candidate.model, "provider": decision.candidate.provider}
                verdict = self.governance.evaluate(request.service, proposed, decision.rationale)
                decision = apply_governance(decision, verdict)
            audit_repo.record_decision(conn, decision, request.cycle_id)
            return decision, inp

        decision, inp = await self._db(work)
        metrics.DECISIONS.labels(request.service, decision.action.value).inc()
        if inp.current.cost_per_request is not None:
            metrics.COST_PER_REQUEST.labels(request.service).set(inp.current.cost_per_request)
        if "cost_per_request" in decision.expected_impact:
            metrics.ESTIMATED_SAVINGS.labels(request.service).set(
                -decision.expected_impact["cost_per_request"].estimate
            )
        return decision

    def decision_input(self, conn: psycopg.Connection, request: DecideRequest) -> tuple[DecisionInput, Assessment]:
        """Everything the decision engine needs, read from the registry and the events of the window; and the
        assessment of the live config (analyzers and rules), whose findings go into the input."""
        assignment = configs_repo.get_assignment(conn, request.service)
        assert assignment is not None, "observe found an assignment before decide runs"
        active = configs_repo.get_version(conn, request.service, assignment.active_version)
        seen = analysis_repo.profiles(conn, request.service, request.window_start, request.now)
        current = next(
            (p for p in seen if p.config_version == active.version),
            Profile(model=active.spec.model, provider=active.spec.provider, config_version=active.version),
        )
        assessment = self.assess_live(conn, request, active.version, current)
        view = self.registry.catalog(self.catalog) if self.registry is not None else None
        catalog = view.catalog if view is not None else self.catalog
        if view is not None:
            assessment.checks.append(Check(name="prices", kind="constraint", passed=True, detail=view.source))
        tokens_in, tokens_out = current.tokens_in_mean or 0.0, current.tokens_out_mean or 0.0
        candidates: dict[str, Profile] = {}
        regions = view.regions if view is not None else {}
        for p in seen:  # the best-observed profile of each other model
            if (
                p.model != current.model
                and p.requests > candidates.get(p.model, Profile(model="", provider="")).requests
            ):
                candidates[p.model] = p.model_copy(update={"region": regions.get(p.model)})
        offered = [*request.candidate_models, *(view.registry_models if view is not None else [])]
        for model in dict.fromkeys(offered):
            price = catalog.price(model)
            if model not in candidates and model != current.model and price is not None:
                # Not observed yet: priced from the catalog at the live config's token mix.
                candidates[model] = Profile(
                    model=model,
                    provider=price.provider,
                    cost_per_request=price.cost(int(tokens_in), int(tokens_out)),
                    region=regions.get(model),
                )
        settings = self.settings.optimization
        scale = request.time_scale
        day_start = request.now.replace(hour=0, minute=0, second=0, microsecond=0)
        inp = DecisionInput(
            service=request.service,
            now=request.now,
            current_version=active.version,
            parent_version=active.parent_version,
            current=current,
            reference_quality=request.memory.reference_quality
            if request.memory.reference_quality is not None
            else (current.quality_mean if current.quality_known else None),
            candidates=list(candidates.values()),
            critical_findings=[f for f in request.findings if f.startswith(CRITICAL_ALERT)] + assessment.critical,
            findings=[f for f in request.findings if not f.startswith(CRITICAL_ALERT)] + assessment.high,
            alerts=assessment.alerts,
            spent_today_usd=analysis_repo.spent_since(conn, request.service, day_start, request.now)
            if request.constraints.daily_budget_usd or request.constraints.monthly_budget_usd
            else None,
            spent_month_usd=analysis_repo.spent_since(conn, request.service, day_start.replace(day=1), request.now)
            if request.constraints.monthly_budget_usd
            else None,
            constraints=request.constraints,
            objectives=request.objectives,
            preset=PRESETS[request.strategy],
            guards=Guards(
                change_cooldown=timedelta(seconds=settings.change_cooldown_s * scale),
                max_rollbacks_per_day=settings.max_rollbacks_per_day,
                rolled_back_retry_after=timedelta(seconds=settings.rolled_back_retry_after_s * scale),
            ),
            memory=request.memory,
        )
        return inp, assessment

    def assess_live(
        self, conn: psycopg.Connection, request: DecideRequest, version: str, current: Profile
    ) -> Assessment:
        """The live config's latest requests in the window against its own requests of the window before."""
        length = request.now - request.window_start
        now_samples = analysis_repo.samples(conn, request.service, version, request.window_start, request.now)
        before = analysis_repo.samples(
            conn, request.service, version, request.window_start - length, request.window_start
        )
        canary = self.settings.optimization.canary
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

    @activity.defn(name="prepare_canary")
    async def prepare_canary(self, request: PrepareCanaryRequest) -> PreparedCanary:
        """Register the candidate as a new version derived from the live one (same content: same version). When
        the live config names its task type (`extra.task_type`), its generation parameters are tuned too, from the
        live version's answers of the last hour (how many hit max_tokens, how long they are)."""

        def work(conn: psycopg.Connection) -> PreparedCanary:
            base = configs_repo.get_version(conn, request.service, request.base_version)
            spec = base.spec.model_copy(update={"model": request.model, "provider": request.provider})
            description = f"decision {request.decision_id}"
            task = base.spec.extra.get("task_type")
            if task in get_args(TaskType):
                stats = analysis_repo.output_stats(conn, request.service, base.version, base.spec.params.max_tokens)
                tuned = tune(task, base.spec.params, stats)
                spec = spec.model_copy(update={"params": tuned.params})
                description += "".join(f"; {reason}" for reason in tuned.reasons)
            version = configs_repo.register(
                conn,
                request.service,
                spec,
                parent_version=base.version,
                created_by="optimizer",
                description=description,
            )
            return PreparedCanary(version=version.version, spec=version.spec)

        return await self._db(work)

    @activity.defn(name="audit")
    async def audit(self, record: AuditRecord) -> None:
        await self._db(lambda conn: audit_repo.record_event(conn, record))
        if record.event_type == "signal" and record.details.get("outcome") == "accepted":
            if record.triggered_by == "emergency_stop":
                metrics.EMERGENCY_STOPS.labels(record.service).inc()
            elif record.triggered_by == "rollback":
                metrics.ROLLBACKS.labels(record.service).inc()

    # ---- CanaryRollout ----

    @activity.defn(name="set_traffic")
    async def set_traffic(self, request: TrafficRequest) -> None:
        """Write the split to the registry, then push it to the orchestrator if one is configured."""
        assignment = Assignment(
            service=request.service,
            active_version=request.active_version,
            canary_version=request.canary_version,
            canary_percent=request.percent if request.canary_version else 0.0,
        )

        def work(conn: psycopg.Connection) -> dict:
            configs_repo.set_assignment(conn, assignment, updated_by=request.rollout_id)
            active = configs_repo.get_version(conn, request.service, request.active_version)
            canary = (
                configs_repo.get_version(conn, request.service, request.canary_version)
                if request.canary_version
                else None
            )
            return orchestrator.payload(request, active, canary)

        body = await self._db(work)
        integrations = self.settings.integrations
        if integrations.orchestrator_url:
            await orchestrator.push(
                integrations.orchestrator_url, integrations.timeout_s, request, body, self.orchestrator_breaker
            )

    @activity.defn(name="judge_stage")
    async def judge_stage(self, request: JudgeRequest) -> CanaryVerdict:
        def work(conn: psycopg.Connection) -> CanaryVerdict:
            base_start, base_end = request.baseline_window or (request.window_start, request.window_end)
            baseline = analysis_repo.arm_sample(conn, request.service, request.baseline_version, base_start, base_end)
            canary = analysis_repo.arm_sample(
                conn, request.service, request.canary_version, request.window_start, request.window_end
            )
            verdict = judge(baseline, canary, request.thresholds)
            audit_repo.record_verdict(
                conn,
                request.rollout_id,
                StageVerdict(stage=request.stage, attempt=request.attempt, percent=request.percent, verdict=verdict),
            )
            return verdict

        return await self._db(work)

    @activity.defn(name="evaluate_experiment")
    async def evaluate_experiment(self, request: EvaluateRequest) -> ABResult:
        """Count each arm's requests and successes since the start, evaluate, and record the state."""

        def work(conn: psycopg.Connection) -> ABResult:
            arms = {
                version: ArmCounts(requests=n, successes=ok)
                for version, n, ok in conn.execute(
                    "SELECT config_version, count(*), count(*) FILTER (WHERE status = 'ok' AND quality_score >= %s) "
                    "FROM events WHERE service = %s AND config_version IN (%s, %s) AND ts >= %s AND ts < %s "
                    "GROUP BY config_version",
                    (
                        request.success_quality,
                        request.service,
                        request.control_version,
                        request.treatment_version,
                        request.since,
                        request.until,
                    ),
                ).fetchall()
            }
            empty = ArmCounts(requests=0, successes=0)
            result = evaluate_ab(
                arms.get(request.control_version, empty),
                arms.get(request.treatment_version, empty),
                request.policy,
                (request.until - request.since).total_seconds(),
            )
            audit_repo.record_experiment(conn, request, result)
            return result

        return await self._db(work)

    @activity.defn(name="maintain_storage")
    async def maintain_storage(self, request: MaintenanceRequest) -> MaintenanceReport:
        """Roll up to `now - lateness`, then expire raw events past the retention (idempotent)."""
        until = request.now - timedelta(seconds=request.lateness_s)

        def work(conn: psycopg.Connection) -> MaintenanceReport:
            rows = {rollup: rollups_repo.roll_up(conn, rollup, until) for rollup in rollups_repo.ROLLUPS}
            expired = rollups_repo.expire(conn, request.now, timedelta(days=request.retention_days))
            return MaintenanceReport(rollup_rows=rows, expired_events=expired)

        return await self._db(work)

    @activity.defn(name="record_rollout")
    async def record_rollout(self, record: RolloutRecord) -> None:
        await self._db(lambda conn: audit_repo.record_rollout(conn, record))
        outcome = "started" if record.state == "running" else record.state
        metrics.ROLLOUTS.labels(record.service, outcome).inc()
        if record.state == "rolled_back":
            metrics.ROLLBACKS.labels(record.service).inc()

    def all(self) -> list[Callable]:
        return [
            self.observe,
            self.check_thresholds,
            self.decide,
            self.prepare_canary,
            self.audit,
            self.set_traffic,
            self.judge_stage,
            self.record_rollout,
            self.evaluate_experiment,
            self.maintain_storage,
        ]


def _take_anomalies(conn: psycopg.Connection, service: str, handler: str) -> list[str]:
    """Claim the service's unhandled high and critical Sentinel anomalies (each is acted on once)."""
    rows = conn.execute(
        "UPDATE anomalies SET handled_by = %s WHERE service = %s AND handled_by IS NULL "
        "AND severity IN ('high', 'critical') RETURNING anomaly_type, severity",
        (handler, service),
    ).fetchall()
    return [f"Sentinel: {severity} {kind}" for kind, severity in rows]
