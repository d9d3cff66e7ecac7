"""The audit trail: decisions, loop transitions, rollouts and their stage verdicts. Every write is idempotent: a
rewrite of a decision or an event keeps the first row, of a rollout or a stage verdict takes the latest content."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

from llm_optimizer.decision import Decision
from llm_optimizer.exploration import ArmResult
from llm_optimizer.payloads import AuditRecord, ExploreRoundRequest, RolloutRecord, StageVerdict


def record_decision(conn: psycopg.Connection, decision: Decision, cycle_id: str) -> None:
    conn.execute(
        "INSERT INTO decisions (decision_id, service, cycle_id, made_at, action, rationale, confidence, "
        "current_version, proposed_version, expected_impact, checks, candidates) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (decision_id) DO NOTHING",
        (
            decision.decision_id,
            decision.service,
            cycle_id,
            decision.made_at,
            decision.action.value,
            decision.rationale,
            decision.confidence,
            decision.current_version,
            decision.target_version or (decision.candidate.key if decision.candidate else None),
            Jsonb({k: v.model_dump() for k, v in decision.expected_impact.items()}),
            Jsonb([c.model_dump() for c in decision.checks]),
            Jsonb([c.model_dump(mode="json") for c in decision.candidates]),
        ),
    )


def record_exploration_round(conn: psycopg.Connection, request: ExploreRoundRequest, arms: list[ArmResult]) -> None:
    """One audit row per round of an exploration: every arm's evidence and fate (idempotent per round end)."""
    record_event(
        conn,
        AuditRecord(
            id=f"{request.exploration_id}@{request.until.isoformat()}",
            service=request.service,
            at=request.until,
            event_type="exploration_round",
            triggered_by=request.exploration_id,
            details={"final": request.final, "arms": [a.model_dump(mode="json") for a in arms]},
        ),
    )


def record_event(conn: psycopg.Connection, record: AuditRecord) -> None:
    conn.execute(
        "INSERT INTO optimization_events (id, service, ts, event_type, triggered_by, details) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (record.id, record.service, record.at, record.event_type, record.triggered_by, Jsonb(record.details)),
    )


def record_rollout(conn: psycopg.Connection, record: RolloutRecord) -> None:
    conn.execute(
        "INSERT INTO rollouts (rollout_id, service, from_version, to_version, strategy, state, reason, finished_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END) "
        "ON CONFLICT (rollout_id) DO UPDATE SET state = EXCLUDED.state, reason = EXCLUDED.reason, "
        "finished_at = coalesce(rollouts.finished_at, EXCLUDED.finished_at), "
        "from_version = EXCLUDED.from_version, to_version = EXCLUDED.to_version",
        (
            record.rollout_id,
            record.service,
            record.from_version,
            record.to_version,
            record.strategy,
            record.state,
            record.reason,
            record.finished,
        ),
    )


def record_verdict(conn: psycopg.Connection, rollout_id: str, verdict: StageVerdict, judged_by_try: int = 1) -> None:
    """One row per judgement, `(rollout_id, stage, attempt)` (the workflow's count of judgements within a stage):
    the write of the latest try of its judge wins (`judged_by_try`, Temporal's activity attempt). A Temporal retry of
    `judge_stage` carries the same key, so a worker that wrote `inconclusive: data late` and died before its
    completion reached Temporal is followed by a retry that may judge for real once the data has landed; the
    workflow acts on the retry's verdict, and the row must say the same, even if the first try, cut off from
    Temporal but not from Postgres, writes again after it."""
    conn.execute(
        "INSERT INTO rollout_verdicts (rollout_id, stage, attempt, percent, verdict, reasons, metrics, judged_by_try) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (rollout_id, stage, attempt) DO UPDATE SET percent = EXCLUDED.percent, "
        "verdict = EXCLUDED.verdict, reasons = EXCLUDED.reasons, metrics = EXCLUDED.metrics, judged_at = now(), "
        "judged_by_try = EXCLUDED.judged_by_try WHERE rollout_verdicts.judged_by_try <= EXCLUDED.judged_by_try",
        (
            rollout_id,
            verdict.stage,
            verdict.attempt,
            verdict.percent,
            verdict.verdict.verdict,
            Jsonb(verdict.verdict.reasons),
            Jsonb([c.model_dump() for c in verdict.verdict.checks]),
            judged_by_try,
        ),
    )


def list_rollouts(conn: psycopg.Connection, service: str, limit: int = 100) -> list[dict]:
    """The service's latest rollouts, newest first."""
    columns = ("rollout_id", "from_version", "to_version", "strategy", "state", "reason", "started_at", "finished_at")
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM rollouts WHERE service = %s ORDER BY started_at DESC LIMIT %s",
        (service, limit),
    ).fetchall()
    return [dict(zip(columns, row, strict=True)) for row in rows]
