"""Activities of OptimizationCycle, CanaryRollout, Exploration and StorageMaintenance: thin adapters to the domain.

Each reads summaries through the storage repositories, calls a pure function, writes the result; each is
idempotent (keyed by decision id, rollout id and stage, or audit id), so a retry after a crash writes nothing twice.
Every use of the database is one short transaction on the worker's pool (`storage.db.Database`), and no
transaction is open across a network call: read, then call (governance, the model registry, the orchestrator,
Temporal), then write.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, cast, get_args

import psycopg
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError

from activities.heartbeats import beat_details, heartbeating
from integrations import orchestrator
from integrations.governance import GovernanceClient
from integrations.model_registry import ModelRegistryClient, RegistryPrices
from llm_optimizer.assessment import Assessment, assess
from llm_optimizer.canary_judge import ArmSample, CanaryVerdict, judge, late
from llm_optimizer.candidates import (
    Quote,
    budget_windows,
    candidate_profiles,
    candidate_spec,
    decision_input,
    guards_from,
    offered_candidates,
)
from llm_optimizer.concurrent_control import time_matched
from llm_optimizer.decision import (
    Check,
    Decision,
    DecisionInput,
    Profile,
    apply_governance,
    apply_governance_to_arms,
    broken_limits,
    decide,
    violations,
)
from llm_optimizer.exploration import ArmResult, ArmStats, settle
from llm_optimizer.payloads import (
    AuditRecord,
    CycleState,
    DecideRequest,
    ExplorationArm,
    ExploreRound,
    ExploreRoundRequest,
    JudgeRequest,
    MaintenanceReport,
    MaintenanceRequest,
    Observation,
    ObserveRequest,
    PrepareArmsRequest,
    PrepareCanaryRequest,
    PreparedCanary,
    RolloutRecord,
    StageVerdict,
    ThresholdBreach,
    ThresholdCheck,
    ThresholdRequest,
    ThresholdWatch,
    TrafficRequest,
    WatchInput,
    WatchReport,
)
from llm_optimizer.pricing import PriceBook, PricingCatalog, as_book
from llm_optimizer.resolution import Assignment
from llm_optimizer.settings import Settings
from llm_optimizer.strategies import PRESETS
from llm_optimizer.tuning import TaskType, tune
from runtime import metrics
from runtime.resilience import CircuitBreaker
from storage import (
    analysis_repo,
    anomalies_repo,
    audit_repo,
    configs_repo,
    partitions_repo,
    prices_repo,
    rollups_repo,
    rules_repo,
    watermarks_repo,
)
from storage.db import Database
from workflows.ids import THRESHOLD_BREACHED, running_cycles_query
from workflows.search_attributes import CYCLE_STATE

LANDED_POLL_S = 1.0  # how often a judge or an observation waiting for late data looks at the watermarks
# A breach of the same limits by the same version is signalled again only after this many of its windows: each
# signal runs a cycle, and one that can do nothing more would otherwise run every window while the breach lasts.
REPEAT_BREACH_WINDOWS = 10


class LoopActivities:
    def __init__(self, settings: Settings, catalog: PriceBook | PricingCatalog, db: Database | None = None):
        # `db`: the worker's pool (activities.ActivityRegistry); by default one of this object's own (`close`).
        self.settings = settings
        self.catalog = catalog
        self._own_db = db is None
        self.db = db or Database(settings)
        integrations = settings.integrations
        self.registry = ModelRegistryClient(integrations) if integrations.model_registry_url else None
        self.governance = GovernanceClient(integrations) if integrations.governance_url else None
        self.orchestrator_breaker = CircuitBreaker(
            "orchestrator", failure_threshold=integrations.failure_threshold, reset_after_s=integrations.reset_after_s
        )

    def close(self) -> None:
        if self._own_db:
            self.db.close()

    # ---- OptimizationCycle ----

    async def _landed(self, service: str, until: datetime, wait_s: float) -> tuple[watermarks_repo.Completeness, str]:
        """Wait, at most `wait_s` over all attempts, until `service`'s events up to `until` have landed
        (docs/architecture.md "Complete windows"). Returns the completeness and, if still late, why."""
        details = beat_details.get(None)
        waited = float(details[0]) if details and isinstance(details[0], int | float) else 0.0
        started = time.monotonic() - waited
        while True:
            done = await self.db.run(lambda conn: watermarks_repo.for_service(conn, service))
            waited = time.monotonic() - started
            if done.covers(until) or waited >= wait_s:
                break
            if details is not None:
                details[:] = [waited]  # a retry after a dead worker waits only what is left
            await asyncio.sleep(min(LANDED_POLL_S, wait_s - waited))
        behind = done.behind(until)
        metrics.DATA_LATE_SECONDS.labels(service).set(behind)
        if behind <= 0:
            return done, ""
        assert done.complete_until is not None
        return done, (
            f"topic {done.topic} has landed {service}'s events up to {done.complete_until:%H:%M:%S}, "
            f"{behind:.0f} s before the window's end {until:%H:%M:%S} (waited {waited:.0f} s)"
        )

    @activity.defn(name="observe")
    @heartbeating
    async def observe(self, request: ObserveRequest) -> Observation:
        """The registry's view of the service, once the observation window's events have landed (or the wait for
        them is over: then `data_late` says why)."""
        _, why_late = await self._landed(request.service, request.window_end, request.data_wait_s)

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

    @activity.defn(name="check_thresholds")
    @heartbeating
    async def check_thresholds(self, request: ThresholdRequest) -> ThresholdCheck:
        """The fast path: the live config against the hard limits, and Sentinel's high and critical alerts."""

        def work(conn: psycopg.Connection) -> ThresholdCheck:
            taken = anomalies_repo.take(conn, request.service, activity.info().workflow_id or "")
            reasons = [_alert_text(alert) for alert in taken]
            assignment = configs_repo.get_assignment(conn, request.service)
            if assignment is not None:
                for p in analysis_repo.profiles(conn, request.service, request.window_start, request.window_end):
                    if p.config_version == assignment.active_version and p.requests >= 50:
                        reasons += violations(p, request.constraints, None)
            return ThresholdCheck(violated=bool(reasons), reasons=reasons)

        return await self.db.run(work)

    @activity.defn(name="watch_thresholds")
    async def watch_thresholds(self, request: WatchInput) -> WatchReport:
        """The fast path of every running cycle on a task queue, off their histories (`ThresholdWatcher`): each
        idle cycle's live config is checked against its hard limits, and its Sentinel alerts looked at, every
        `window_s` of its memo; only a cycle with a breach is signalled (`threshold_breached`). Runs `run_s`,
        heartbeating; a retry after a crash starts over (a breach is signalled again at worst, and the cycle
        ignores a repeated `request_id`)."""
        client = activity.client()
        clock = asyncio.get_running_loop().time
        report = WatchReport()
        end, next_list = clock() + request.run_s, 0.0
        due: dict[str, float] = {}
        cycles: dict[str, tuple[ThresholdWatch, str | None]] = {}
        # Per cycle, the broken limits last signalled and until when the same ones are not signalled again.
        signalled: dict[str, tuple[tuple[str | None, frozenset[str]], float]] = {}
        while (now := clock()) < end:
            if now >= next_list:
                cycles = await _watched_cycles(client, request.task_queue)
                next_list = now + request.list_every_s
                due = {wid: due.get(wid, now + watch.window_s) for wid, (watch, _) in cycles.items()}
            for wid, (watch, state) in cycles.items():
                if state not in (None, CycleState.IDLE.value):  # busy: its next check is a window after it idles
                    due[wid] = now + watch.window_s
                    continue
                if due[wid] > now:
                    continue
                due[wid] = now + watch.window_s
                report.checks += 1
                found = await self.db.run(lambda conn, w=watch: _breach(conn, w))
                if found is None:
                    continue
                breach, anomaly_ids = found.breach, found.anomaly_ids
                last = signalled.get(wid)
                if not anomaly_ids and last is not None and last[0] == found.limits and now < last[1]:
                    # The same limits of the same version, already signalled: the cycle acted on them (a rollback,
                    # a backup, or an alert it does not repeat), and its own runs see them in their window.
                    report.repeats_held += 1
                    continue
                try:
                    await client.get_workflow_handle(wid).signal(THRESHOLD_BREACHED, breach)
                except RPCError as err:  # closed meanwhile: its alerts stay unclaimed for the next cycle
                    activity.logger.warning("could not signal %s: %s", wid, err)
                    continue
                signalled[wid] = (found.limits, now + REPEAT_BREACH_WINDOWS * watch.window_s)
                if anomaly_ids:  # each alert is acted on once: by the cycle it was signalled to
                    await self.db.run(anomalies_repo.claim, anomaly_ids, wid)
                found_text = "; ".join([*breach.alerts, *breach.reasons])
                report.breaches = [*report.breaches, f"{watch.service}: {found_text}"[:300]][-20:]
            activity.heartbeat(report.checks)
            try:  # a worker shutting down ends the watch at once (the workflow starts the next on another worker)
                await asyncio.wait_for(
                    activity.wait_for_worker_shutdown(),
                    timeout=max(0.05, min([next_list, end, *due.values()]) - clock()),
                )
                break
            except TimeoutError:
                pass
        report.cycles = sorted(watch.service for watch, _ in cycles.values())
        return report

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
        assessment = self.assess_live(conn, request, active.version, current)
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
    @heartbeating
    async def prepare_canary(self, request: PrepareCanaryRequest) -> PreparedCanary:
        """Register the candidate as a new version derived from the live one (same content: same version). When
        the live config names its task type (`extra.task_type`), its generation parameters are tuned too, from the
        live version's answers of the last hour (how many hit max_tokens, how long they are)."""

        def work(conn: psycopg.Connection) -> PreparedCanary:
            if request.known_version is not None:  # measured by an exploration: roll out exactly what was measured
                known = configs_repo.get_version(conn, request.service, request.known_version)
                return PreparedCanary(version=known.version, spec=known.spec)
            base = configs_repo.get_version(conn, request.service, request.base_version)
            spec = candidate_spec(base.spec, request.model, request.provider, request.changes)
            description = f"decision {request.decision_id}"
            task = base.spec.extra.get("task_type")
            if task in get_args(TaskType) and "params" not in request.changes:
                stats = analysis_repo.output_stats(conn, request.service, base.version, base.spec.params.max_tokens)
                tuned = tune(cast(TaskType, task), base.spec.params, stats)
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

        return await self.db.run(work)

    @activity.defn(name="prepare_arms")
    @heartbeating
    async def prepare_arms(self, request: PrepareArmsRequest) -> list[ExplorationArm]:
        """Register every arm of an exploration as a version derived from the live one (idempotent: same content,
        same version)."""

        def work(conn: psycopg.Connection) -> list[ExplorationArm]:
            base = configs_repo.get_version(conn, request.service, request.base_version)
            arms = []
            for arm in request.arms:
                spec = candidate_spec(base.spec, arm.model, arm.provider, arm.changes)
                version = configs_repo.register(
                    conn,
                    request.service,
                    spec,
                    parent_version=base.version,
                    created_by="optimizer",
                    description=f"exploration arm {arm.key} of decision {request.decision_id}",
                )
                arms.append(ExplorationArm(key=arm.key, version=version.version))
            return arms

        return await self.db.run(work)

    @activity.defn(name="explore_round")
    @heartbeating
    async def explore_round(self, request: ExploreRoundRequest) -> ExploreRound:
        """Every arm's and the live config's requests since the exploration began, settled against the floor."""

        def work(conn: psycopg.Connection) -> ExploreRound:
            stats = analysis_repo.arm_stats(
                conn,
                request.service,
                [request.live_version, *(a.version for a in request.arms)],
                request.since,
                request.until,
            )
            for a in request.arms:  # an arm deferred by an earlier exploration keeps everything it measured
                if a.since is not None and a.since < request.since:
                    stats.update(analysis_repo.arm_stats(conn, request.service, [a.version], a.since, request.until))
            live = stats.get(request.live_version) or ArmStats(key="live", version=request.live_version)
            reference = request.reference
            if request.reference_version == request.live_version and live.quality is not None:
                reference = live.quality  # the reference itself, over the same period: immune to drift
            arms = [
                stats.get(a.version, ArmStats(key=a.key, version=a.version)).model_copy(update={"key": a.key})
                for a in request.arms
            ]
            if reference is None or reference.mean <= 0:
                results = [
                    ArmResult(
                        key=a.key,
                        version=a.version,
                        fate="unproven",
                        requests=a.requests,
                        reason="no reference quality to hold the floor against",
                    )
                    for a in arms
                ]
            else:
                results = settle(
                    arms,
                    live,
                    reference,
                    request.policy,
                    previous={r.key: r for r in request.previous},
                    final=request.final,
                )
            audit_repo.record_exploration_round(conn, request, results)
            return ExploreRound(arms=results, live=live, reference=reference)

        return await self.db.run(work)

    @activity.defn(name="audit")
    async def audit(self, record: AuditRecord) -> int:
        """One row (the cycles recorded before `audit_batch`); answers how many rows it wrote."""
        return await self.audit_batch([record])

    @activity.defn(name="audit_batch")
    async def audit_batch(self, records: list[AuditRecord]) -> int:
        """A cycle's audit rows of one step (its transitions, a signal), in one transaction: one local activity
        in the history instead of one per row. Idempotent by record id; answers how many rows it was given."""

        def work(conn: psycopg.Connection) -> None:
            for record in records:
                audit_repo.record_event(conn, record)

        await self.db.run(work)
        for record in records:
            if record.event_type == "signal" and record.details.get("outcome") == "accepted":
                if record.triggered_by == "emergency_stop":
                    metrics.EMERGENCY_STOPS.labels(record.service).inc()
                elif record.triggered_by == "rollback":
                    metrics.ROLLBACKS.labels(record.service).inc()
        return len(records)

    # ---- CanaryRollout ----

    @activity.defn(name="set_traffic")
    @heartbeating
    async def set_traffic(self, request: TrafficRequest) -> str:
        """Write the split to the registry (with the rollout's final record, if any, in the same transaction), then
        push it to the orchestrator if one is configured. Answers the split in words (what the UI shows as the
        result, instead of a null)."""
        assignment = Assignment(
            service=request.service,
            active_version=request.active_version,
            canary_version=request.canary_version,
            canary_percent=request.percent if request.canary_version else 0.0,
            explore=request.explore,
        )

        def work(conn: psycopg.Connection) -> dict:
            for arm in request.explore:  # JSON names them: no foreign key does this check
                configs_repo.get_version(conn, request.service, arm)
            configs_repo.set_assignment(conn, assignment, updated_by=request.rollout_id)
            if request.record is not None:
                audit_repo.record_rollout(conn, request.record)
            active = configs_repo.get_version(conn, request.service, request.active_version)
            canary = (
                configs_repo.get_version(conn, request.service, request.canary_version)
                if request.canary_version
                else None
            )
            return orchestrator.payload(request, active, canary)

        body = await self.db.run(work)
        if request.record is not None:
            _count_rollout(request.record)
        integrations = self.settings.integrations
        if integrations.orchestrator_url:
            await orchestrator.push(
                integrations.orchestrator_url, integrations.timeout_s, request, body, self.orchestrator_breaker
            )
        return _split_in_words(assignment)

    @activity.defn(name="judge_stage")
    @heartbeating
    async def judge_stage(self, request: JudgeRequest) -> CanaryVerdict:
        """Judge the stage once its window has landed; `inconclusive: data late` if it has not within
        `data_wait_s`, or if the sample is the previous judgement's again (no event landed since)."""
        _, why_late = await self._landed(request.service, request.window_end, request.data_wait_s)

        def work(conn: psycopg.Connection) -> CanaryVerdict:
            if why_late:
                verdict = late(why_late)
            else:
                baseline, canary, comparison = _arms(conn, request)
                if request.previous_requests == (baseline.requests, canary.requests):
                    verdict = late(
                        f"the same {baseline.requests} baseline / {canary.requests} canary requests as the stage's "
                        "previous judgement: no event landed since",
                        baseline.requests,
                        canary.requests,
                    )
                else:
                    verdict = judge(baseline, canary, request.thresholds).model_copy(update={"comparison": comparison})
            audit_repo.record_verdict(
                conn,
                request.rollout_id,
                StageVerdict(stage=request.stage, attempt=request.attempt, percent=request.percent, verdict=verdict),
            )
            return verdict

        return await self.db.run(work)

    @activity.defn(name="maintain_storage")
    @heartbeating
    async def maintain_storage(self, request: MaintenanceRequest) -> MaintenanceReport:
        """Make the partitions of events ahead of `now`, roll up to `now - lateness`, then expire raw events past
        the retention, whole partitions at a time (idempotent)."""
        until = request.now - timedelta(seconds=request.lateness_s)
        unit = self.settings.database.event_partition
        ahead = partitions_repo.UNITS[unit] * self.settings.database.event_partitions_ahead

        def work(conn: psycopg.Connection) -> MaintenanceReport:
            made = partitions_repo.ensure(conn, request.now, request.now + ahead, unit)
            if made:
                activity.logger.info("made partitions of events: %s", ", ".join(made))
            rows = {rollup: rollups_repo.roll_up(conn, rollup, until) for rollup in rollups_repo.ROLLUPS}
            expired = rollups_repo.expire(conn, request.now, timedelta(days=request.retention_days))
            return MaintenanceReport(rollup_rows=rows, expired_events=expired)

        return await self.db.run(work)

    @activity.defn(name="record_rollout")
    @heartbeating
    async def record_rollout(self, record: RolloutRecord) -> str:
        await self.db.run(lambda conn: audit_repo.record_rollout(conn, record))
        _count_rollout(record)
        return f"{record.rollout_id}: {record.state}"  # the result the UI shows, instead of a null

    @activity.defn(name="version_exists")
    @heartbeating
    async def version_exists(self, service: str, version: str) -> bool:
        """Is `version` registered for `service`? The cycle checks an operator's rollback target with it."""
        return await self.db.run(configs_repo.has_version, service, version)

    def all(self) -> list[Callable]:
        return [
            self.observe,
            self.check_thresholds,
            self.watch_thresholds,
            self.decide,
            self.prepare_canary,
            self.prepare_arms,
            self.explore_round,
            self.audit,
            self.audit_batch,
            self.set_traffic,
            self.judge_stage,
            self.record_rollout,
            self.maintain_storage,
            self.version_exists,
        ]


def _arms(conn: psycopg.Connection, request: JudgeRequest) -> tuple[ArmSample, ArmSample, str]:
    """The judge's two samples: over the same moments (llm_optimizer/concurrent_control.py), or, after a
    blue-green switch that left the baseline no traffic, the baseline's own window before it."""
    service, start, end = request.service, request.window_start, request.window_end
    canary = analysis_repo.samples(conn, service, request.canary_version, start, end, limit=None)
    if request.baseline_window is not None:
        baseline = analysis_repo.samples(conn, service, request.baseline_version, *request.baseline_window, limit=None)
        return ArmSample.of(baseline), ArmSample.of(canary), "baseline: the traffic before the switch"
    baseline = analysis_repo.samples(conn, service, request.baseline_version, start, end, limit=None)
    matched = time_matched(baseline, canary, start.timestamp(), end.timestamp())
    return ArmSample.of(matched.baseline), ArmSample.of(matched.canary), matched.note


def _split_in_words(a: Assignment) -> str:
    """`chat: v3 5%, v2 the rest`, `chat: all to v2`: a traffic split as the UI shows the step's result."""
    shares = [f"{a.canary_version} {a.canary_percent:g}%"] if a.canary_version and a.canary_percent else []
    shares += [f"{version} {percent:g}%" for version, percent in a.explore.items()]
    return (
        f"{a.service}: {', '.join(shares)}, {a.active_version} the rest"
        if shares
        else f"{a.service}: all to {a.active_version}"
    )


async def _watched_cycles(client: Client, task_queue: str) -> dict[str, tuple[ThresholdWatch, str | None]]:
    """Running cycles on `task_queue` that publish what to watch (memo `thresholds`), with their CycleState."""
    cycles = {}
    async for execution in client.list_workflows(running_cycles_query(task_queue)):
        watch = await execution.memo_value("thresholds", None, type_hint=ThresholdWatch)
        if watch is not None:  # a cycle started before the watcher existed watches itself
            cycles[execution.id] = (watch, execution.typed_search_attributes.get(CYCLE_STATE))
    return cycles


class _Found(NamedTuple):
    """What one watch found of a cycle: the breach to signal, its Sentinel alerts' ids, and the broken limits by
    name with the version that broke them (what makes a breach the same as the last one signalled)."""

    breach: ThresholdBreach
    anomaly_ids: list[str]
    limits: tuple[str | None, frozenset[str]]


def _breach(conn: psycopg.Connection, watch: ThresholdWatch) -> _Found | None:
    """The cycle's breach (hard limits of the live config over the last window, unclaimed high and critical
    Sentinel alerts); None when all is well."""
    unclaimed = anomalies_repo.unclaimed(conn, watch.service)
    alerts = [_alert_text(alert) for alert in unclaimed]
    broken: dict[str, str] = {}
    assignment = configs_repo.get_assignment(conn, watch.service)
    if assignment is not None:
        until = datetime.now(UTC)
        since = until - timedelta(seconds=watch.window_s)
        for p in analysis_repo.profiles(conn, watch.service, since, until):
            if p.config_version == assignment.active_version and p.requests >= 50:
                broken |= broken_limits(p, watch.constraints, None)
    reasons = list(broken.values())
    if not reasons and not alerts:
        return None
    ids = [alert.anomaly_id for alert in unclaimed]
    # The same alerts signalled twice (a retried watch) are one request for the cycle.
    request_id = "alerts/" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32] if ids else None
    breach = ThresholdBreach(
        reasons=reasons[:50],
        version=assignment.active_version if assignment else None,
        alerts=alerts[:50],
        request_id=request_id,
    )
    return _Found(breach, ids, (breach.version, frozenset(broken)))


def _alert_text(alert: anomalies_repo.Alert) -> str:
    return f"Sentinel: {alert.severity} {alert.anomaly_type}"


def _count_rollout(record: RolloutRecord) -> None:
    outcome = "started" if record.state == "running" else record.state
    metrics.ROLLOUTS.labels(record.service, outcome).inc()
    if record.state == "rolled_back":
        metrics.ROLLBACKS.labels(record.service).inc()
