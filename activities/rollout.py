"""Rollouts: the canary's version registered, the registry's traffic split written (and pushed to the orchestrator),
each stage judged once its window has landed, the rollout's record, and whether a version exists (an operator's
rollback target). The canary, the exploration's slice and every rollback change traffic through `set_traffic`.
"""

from __future__ import annotations

from typing import cast, get_args

import psycopg
from temporalio import activity

from activities.heartbeats import heartbeating
from activities.windows import landed
from integrations import orchestrator
from llm_optimizer.canary_judge import ArmSample, CanaryVerdict, judge, late
from llm_optimizer.candidates import candidate_spec
from llm_optimizer.concurrent_control import time_matched
from llm_optimizer.payloads import (
    JudgeRequest,
    PrepareCanaryRequest,
    PreparedCanary,
    RolloutRecord,
    StageVerdict,
    TrafficRequest,
)
from llm_optimizer.resolution import Assignment
from llm_optimizer.settings import Settings
from llm_optimizer.tuning import TaskType, tune
from runtime import metrics
from runtime.resilience import CircuitBreaker
from storage import analysis_repo, audit_repo, configs_repo
from storage.db import Database


class RolloutActivities:
    """`prepare_canary`, `set_traffic`, `judge_stage`, `record_rollout` and `version_exists`, with the integrations'
    settings, the orchestrator's circuit breaker and the worker's pool."""

    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        integrations = settings.integrations
        self.orchestrator_breaker = CircuitBreaker(
            "orchestrator", failure_threshold=integrations.failure_threshold, reset_after_s=integrations.reset_after_s
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
        _, why_late = await landed(self.db, request.service, request.window_end, request.data_wait_s)
        attempt = activity.info().attempt  # a later try's row wins over an earlier try's late write

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
                judged_by_try=attempt,
            )
            return verdict

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


def _count_rollout(record: RolloutRecord) -> None:
    outcome = "started" if record.state == "running" else record.state
    metrics.ROLLOUTS.labels(record.service, outcome).inc()
    if record.state == "rolled_back":
        metrics.ROLLBACKS.labels(record.service).inc()
