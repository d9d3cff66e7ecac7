"""`QualityEvaluation`: one round of scoring events that arrived without a quality score, for each configured
service. A Temporal Schedule starts a round every `evaluation.interval_s` (`python -m starter.evaluation start`);
evaluation never sits on the applications' request path."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.options import ACTIVITY

with workflow.unsafe.imports_passed_through():
    from llm_optimizer.control import EvaluationRound, QualityReport, QualityRequest


@workflow.defn(name="QualityEvaluation")
class QualityEvaluation:
    @workflow.run
    async def run(self, round_: EvaluationRound) -> list[QualityReport]:
        reports = []
        for service in round_.services:  # one after the other: a shared LLM judge is not flooded
            request = QualityRequest(service=service, now=workflow.now(), lookback_s=round_.lookback_s)
            options = {**ACTIVITY, "start_to_close_timeout": timedelta(seconds=request.time_budget_s + 60)}
            reports.append(
                await workflow.execute_activity("evaluate_quality", request, result_type=QualityReport, **options)
            )
        return reports
