"""Quality evaluation of events that arrived without a quality score: score a sample, record each evaluation in
`quality_evaluations`, and write the score into the event so that aggregates, analyzers and the canary judge see it.

Idempotent: an event is scored once per evaluator, and an event's own score is never overwritten
(storage.evaluations_repo); the sample is chosen by a hash of the event id, so a retried round picks the same events.
No connection is held while the evaluator works (an LLM judge may take the round's whole time budget): the round
reads its sample in one short transaction, scores it, and writes the scores in short transactions as it goes.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from temporalio import activity

from activities.heartbeats import heartbeating
from integrations import llm_grader  # noqa: F401  (registers the "llm_judge" evaluator)
from llm_optimizer.errors import NotEvaluable, Unavailable, ValidationFailed
from llm_optimizer.evaluation import EvaluationInput, Evaluator, build
from llm_optimizer.payloads import QualityReport, QualityRequest
from llm_optimizer.settings import Settings
from runtime import metrics
from storage import evaluations_repo
from storage.db import Database
from storage.evaluations_repo import Pending, Scored

SIGNALS = ("rating", "thumbs", "retried", "correction")
WRITE_EVERY_S = 5.0  # scores are written at least this often: a crash loses a few seconds of an LLM judge's work


class EvaluationActivities:
    def __init__(self, settings: Settings, db: Database | None = None):
        # `db`: the worker's pool (activities.ActivityRegistry); by default one of this object's own (`close`).
        self.settings = settings
        self._own_db = db is None
        self.db = db or Database(settings)
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
        """Score the round's sample within `time_budget_s`: read it (one short transaction), score each event with
        no connection held (heartbeating meanwhile), write the scores every `WRITE_EVERY_S` and at the end."""
        evaluator = self.evaluator(request.service)
        configured = self.settings.evaluation.services[request.service]
        report = QualityReport(service=request.service, evaluator=evaluator.name)
        deadline = time.monotonic() + request.time_budget_s
        pending = await self.db.run(
            lambda conn: evaluations_repo.pending(
                conn,
                request.service,
                evaluator.name,
                since=request.now - timedelta(seconds=request.lookback_s),
                per_10k=round(configured.sampling_rate * 10_000),
                limit=self.settings.evaluation.batch_size,
            )
        )
        scored: list[Scored] = []
        written_at = time.monotonic()
        for index, event in enumerate(pending):
            if scored and time.monotonic() - written_at >= WRITE_EVERY_S:
                await self.db.run(evaluations_repo.record, scored)
                scored, written_at = [], time.monotonic()
            if time.monotonic() > deadline:
                report.unavailable += len(pending) - index
                report.note = "time budget spent; the rest waits for the next round"
                break
            name, version = evaluator.name, event.config_version
            try:
                result = await asyncio.to_thread(evaluator.evaluate, _input(event))
            except NotEvaluable as exc:
                scored.append(Scored(event.event_id, name, request.service, version, skipped_reason=str(exc)))
                report.skipped += 1
                continue
            except Unavailable as exc:
                report.unavailable += len(pending) - index
                report.note = str(exc)
                break
            scored.append(Scored(event.event_id, name, request.service, version, result))
            report.evaluated += 1
            report.cost_usd += result.cost_usd
        if scored:
            await self.db.run(evaluations_repo.record, scored)
        metrics.record_evaluations(report)
        return report

    def all(self) -> list:
        return [self.evaluate_quality]

    def close(self) -> None:
        if self._own_db:
            self.db.close()


def _input(event: Pending) -> EvaluationInput:
    return EvaluationInput(
        request=event.request or "",
        response=event.response or "",
        reference=event.reference,
        signals=_signals(event.user_feedback, event.attributes),
    )


def _signals(feedback: float | None, attributes: dict[str, Any] | None) -> dict[str, Any]:
    signals = {k: v for k, v in (attributes or {}).items() if k in SIGNALS}
    if feedback is not None:
        signals["user_feedback"] = feedback
    return signals
