"""Quality evaluation of events that arrived without a quality score: score a sample, record each evaluation in
`quality_evaluations`, and write the score into the event so that aggregates, analyzers and the canary judge see it.

Idempotent: an event is scored once per evaluator (primary key), and an event's own score is never overwritten.
The sample is chosen by a hash of the event id, so a retried round picks the same events.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any, NamedTuple

import psycopg
from psycopg.types.json import Jsonb
from temporalio import activity

from activities.heartbeats import heartbeating
from integrations import llm_grader  # noqa: F401  (registers the "llm_judge" evaluator)
from integrations.http import Unavailable
from llm_optimizer.errors import ValidationFailed
from llm_optimizer.evaluation import Evaluation, EvaluationInput, Evaluator, NotEvaluable, build
from llm_optimizer.payloads import QualityReport, QualityRequest
from llm_optimizer.settings import Settings
from runtime import metrics
from storage.db import psycopg_url

SIGNALS = ("rating", "thumbs", "retried", "correction")

_PENDING = """
SELECT e.event_id, e.config_version, t.request_text, t.response_text, t.reference_text, e.user_feedback, e.attributes
FROM events e
LEFT JOIN event_texts t ON t.event_id = e.event_id AND t.ts = e.ts
WHERE e.service = %(service)s AND e.ts >= %(since)s AND e.quality_score IS NULL
  AND (hashtext(e.event_id) & 2147483647) %% 10000 < %(per_10k)s
  AND NOT EXISTS (SELECT 1 FROM quality_evaluations q WHERE q.event_id = e.event_id AND q.evaluator = %(evaluator)s)
ORDER BY e.ts
LIMIT %(limit)s
"""


class EvaluationActivities:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._evaluators: dict[str, Evaluator] = {}  # kept across rounds: an LLM judge's cache and circuit breaker

    def evaluator(self, service: str) -> Evaluator:
        if service not in self._evaluators:
            configured = self.settings.evaluation.services.get(service)
            if configured is None:
                raise ValidationFailed(
                    f"service = {service!r}: not in evaluation.services (configured: "
                    f"{', '.join(self.settings.evaluation.services) or 'none'})",
                    field="service",
                    value=service,
                )
            self._evaluators[service] = build(configured.evaluator, configured.options)
        return self._evaluators[service]

    @activity.defn(name="evaluate_quality")
    @heartbeating
    async def evaluate_quality(self, request: QualityRequest) -> QualityReport:
        return await asyncio.to_thread(self._evaluate, request)

    def _evaluate(self, request: QualityRequest) -> QualityReport:
        evaluator = self.evaluator(request.service)
        configured = self.settings.evaluation.services[request.service]
        report = QualityReport(service=request.service, evaluator=evaluator.name)
        deadline = time.monotonic() + request.time_budget_s
        with psycopg.connect(psycopg_url(self.settings.database_url)) as conn:
            pending = conn.execute(
                _PENDING,
                {
                    "service": request.service,
                    "since": request.now - timedelta(seconds=request.lookback_s),
                    "per_10k": round(configured.sampling_rate * 10_000),
                    "evaluator": evaluator.name,
                    "limit": self.settings.evaluation.batch_size,
                },
                prepare=False,
            ).fetchall()
            rows: list[_Scored] = []
            for index, (event_id, version, req, resp, ref, feedback, attributes) in enumerate(pending):
                if time.monotonic() > deadline:
                    report.unavailable += len(pending) - index
                    report.note = "time budget spent; the rest waits for the next round"
                    break
                item = EvaluationInput(
                    request=req or "", response=resp or "", reference=ref, signals=_signals(feedback, attributes)
                )
                try:
                    result = evaluator.evaluate(item)
                except NotEvaluable as exc:
                    rows.append(_Scored(event_id, evaluator.name, request.service, version, skipped_reason=str(exc)))
                    report.skipped += 1
                    continue
                except Unavailable as exc:
                    report.unavailable += len(pending) - index
                    report.note = str(exc)
                    break
                rows.append(_Scored(event_id, evaluator.name, request.service, version, result))
                report.evaluated += 1
                report.cost_usd += result.cost_usd
            _record(conn, rows)
            conn.commit()
        metrics.record_evaluations(report)
        return report

    def all(self) -> list:
        return [self.evaluate_quality]


def _signals(feedback: float | None, attributes: dict[str, Any] | None) -> dict[str, Any]:
    signals = {k: v for k, v in (attributes or {}).items() if k in SIGNALS}
    if feedback is not None:
        signals["user_feedback"] = feedback
    return signals


class _Scored(NamedTuple):
    event_id: str
    evaluator: str
    service: str
    config_version: str | None
    result: Evaluation | None = None  # None: not scored (skipped_reason says why)
    skipped_reason: str | None = None

    def row(self) -> tuple:
        r = self.result
        return (
            self.event_id,
            self.evaluator,
            self.service,
            self.config_version,
            r.overall if r else None,
            Jsonb(r.dimensions if r else {}),
            r.method if r else self.evaluator,
            r.confidence if r else None,
            r.cost_usd if r else 0.0,
            self.skipped_reason,
        )


def _record(conn: psycopg.Connection, scored: list[_Scored]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO quality_evaluations (event_id, evaluator, service, config_version, overall_score, "
            "dimension_scores, evaluation_method, confidence, cost_usd, skipped_reason) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_id, evaluator) DO NOTHING",
            [s.row() for s in scored],
        )
        cur.executemany(
            "UPDATE events SET quality_score = %s WHERE event_id = %s AND quality_score IS NULL",
            [(s.result.overall, s.event_id) for s in scored if s.result is not None],
        )
