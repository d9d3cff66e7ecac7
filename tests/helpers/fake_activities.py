"""Scripted stand-ins for the loop's activities, registered under the real activity names: OptimizationCycle and
CanaryRollout run on them with no Postgres, Kafka or registry, and a test reads back every request they made.

Decisions and verdicts are scripted in order; once a script runs out, the decision is `none` and the verdict
`healthy`. The traffic split is kept like the registry keeps it, so `observe` sees what `set_traffic` did.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from llm_optimizer.canary_judge import CanaryVerdict
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.decision import Action, Decision, Profile
from llm_optimizer.payloads import (
    AuditRecord,
    DecideRequest,
    JudgeRequest,
    Observation,
    ObserveRequest,
    PrepareCanaryRequest,
    PreparedCanary,
    RolloutRecord,
    ThresholdCheck,
    ThresholdRequest,
    TrafficRequest,
)
from workflows import CanaryRollout, OptimizationCycle

VerdictKind = Literal["healthy", "degraded", "inconclusive", "late"]


def decision(action: Action, service: str, *, now: datetime, **fields) -> Decision:
    return Decision(
        decision_id=str(uuid.uuid4()),
        service=service,
        made_at=now,
        action=action,
        rationale=f"scripted: {action.value}",
        **fields,
    )


def canary_of(model: str) -> dict:
    """The fields of a scripted canary decision for a model candidate (for `FakeLoop(decisions=...)`)."""
    return {"action": Action.canary, "candidate": Profile(model=model, provider="openai")}


def verdict(kind: VerdictKind, reason: str = "") -> CanaryVerdict:
    late = kind == "late"
    return CanaryVerdict(
        verdict="inconclusive" if late else kind,
        reasons=[reason or f"scripted {kind}"] if kind != "healthy" else [],
        checks=[],
        baseline_requests=1000,
        canary_requests=500,
        data_late=late,
    )


class FakeLoop:
    """The activities of the loop's features (`activities.LoopActivitySet`) the cycle and the rollout call, scripted."""

    def __init__(
        self,
        service: str,
        *,
        active: str | None = "v2",
        parent: str | None = "v1",
        decisions: list[dict] | None = None,
        verdicts: list[VerdictKind] | None = None,
        prepared_version: str = "v3",
        data_late: str | None = None,
    ) -> None:
        self.service = service
        self.active, self.parent, self.canary = active, parent, None
        self.decisions = list(decisions or [])
        self.verdicts = list(verdicts or [])
        self.prepared_version = prepared_version
        self.data_late = data_late
        self.observed: list[ObserveRequest] = []
        self.decided: list[DecideRequest] = []
        self.prepared: list[PrepareCanaryRequest] = []
        self.judged: list[JudgeRequest] = []
        self.traffic: list[TrafficRequest] = []
        self.records: list[RolloutRecord] = []
        self.audits: list[AuditRecord] = []

    @activity.defn(name="observe")
    async def observe(self, request: ObserveRequest) -> Observation:
        self.observed.append(request)
        return Observation(
            service=request.service,
            active_version=self.active,
            parent_version=self.parent,
            canary_version=self.canary,
            data_late=self.data_late,
        )

    @activity.defn(name="check_thresholds")
    async def check_thresholds(self, request: ThresholdRequest) -> ThresholdCheck:
        return ThresholdCheck(violated=False)

    @activity.defn(name="decide")
    async def decide(self, request: DecideRequest) -> Decision:
        self.decided.append(request)
        fields = self.decisions.pop(0) if self.decisions else {"action": Action.none}
        return decision(fields.pop("action"), request.service, now=request.now, **fields)

    @activity.defn(name="prepare_canary")
    async def prepare_canary(self, request: PrepareCanaryRequest) -> PreparedCanary:
        self.prepared.append(request)
        return PreparedCanary(
            version=self.prepared_version, spec=ConfigSpec(model=request.model, provider=request.provider)
        )

    @activity.defn(name="judge_stage")
    async def judge_stage(self, request: JudgeRequest) -> CanaryVerdict:
        self.judged.append(request)
        return verdict(self.verdicts.pop(0) if self.verdicts else "healthy")

    @activity.defn(name="set_traffic")
    async def set_traffic(self, request: TrafficRequest) -> str:
        self.traffic.append(request)
        self.active, self.canary = request.active_version, request.canary_version
        if request.record is not None:
            self.records.append(request.record)
        return "ok"

    @activity.defn(name="record_rollout")
    async def record_rollout(self, record: RolloutRecord) -> str:
        self.records.append(record)
        return record.state

    @activity.defn(name="audit")
    async def audit(self, record: AuditRecord) -> int:
        self.audits.append(record)
        return 1

    @activity.defn(name="audit_batch")
    async def audit_batch(self, records: list[AuditRecord]) -> int:
        self.audits.extend(records)
        return len(records)

    @activity.defn(name="version_exists")
    async def version_exists(self, service: str, version: str) -> bool:
        return version in {v for v in (self.active, self.parent, self.prepared_version) if v}

    def all(self) -> list:
        return [
            self.observe,
            self.check_thresholds,
            self.decide,
            self.prepare_canary,
            self.judge_stage,
            self.set_traffic,
            self.record_rollout,
            self.audit,
            self.audit_batch,
            self.version_exists,
        ]

    # ---- what a test reads back ----

    def splits(self) -> list[tuple[str, str | None, float]]:
        """Every traffic change, in order, as (active, canary, percent)."""
        return [(t.active_version, t.canary_version, t.percent) for t in self.traffic]

    def judged_stages(self) -> list[tuple[int, int]]:
        """Every judgement, in order, as (stage, attempt)."""
        return [(j.stage, j.attempt) for j in self.judged]


def fake_worker(client: Client, fakes: FakeLoop) -> Worker:
    """A worker of the cycle and the rollout on its own task queue (`worker.task_queue`), running `fakes`."""
    return Worker(
        client,
        task_queue=f"fake-{uuid.uuid4().hex[:8]}",
        workflows=[OptimizationCycle, CanaryRollout],
        activities=fakes.all(),
    )
