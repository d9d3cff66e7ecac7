"""Exploration: the arms of an A/B/n exploration registered as versions, and each round's settlement of them against
the quality floor (`llm_optimizer/exploration.py`; docs/architecture.md, "Exploration")."""

from __future__ import annotations

import psycopg
from temporalio import activity

from activities.heartbeats import heartbeating
from llm_optimizer.candidates import candidate_spec
from llm_optimizer.exploration import ArmResult, ArmStats, settle
from llm_optimizer.payloads import ExplorationArm, ExploreRound, ExploreRoundRequest, PrepareArmsRequest
from storage import analysis_repo, audit_repo, configs_repo
from storage.db import Database


class ExplorationActivities:
    """`prepare_arms` and `explore_round`, on the worker's pool."""

    def __init__(self, db: Database):
        self.db = db

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
