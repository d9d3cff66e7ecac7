"""`QualityEvaluation`: scoring events that arrived without a quality score, for each configured service; evaluation
never sits on the applications' request path.

One round and return (`python -m starter.evaluation run`), or, with `every_s`, one long-running workflow that runs a
round every `every_s` with its own timer and continues as new (`python -m starter.evaluation schedule create`): one
entry in the workflow list instead of one per round.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.options import ACTIVITY, within

with workflow.unsafe.imports_passed_through():
    from activities.evaluation import EvaluationActivities
    from llm_optimizer.payloads import EvaluationRound, QualityReport, QualityRequest
    from workflows.details import clock, minutes

ROUNDS_PER_HISTORY = 100  # about 11 events a round: a short history to replay


@workflow.defn(name="QualityEvaluation")
class QualityEvaluation:
    @workflow.init
    def __init__(self, round_: EvaluationRound) -> None:
        self.round = round_
        self.last: list[QualityReport] = []

    @workflow.run
    async def run(self, round_: EvaluationRound) -> list[QualityReport]:
        reports = await self._one_round(round_)
        if round_.every_s is None:
            return reports
        for _ in range(ROUNDS_PER_HISTORY):
            await workflow.sleep(timedelta(seconds=round_.every_s), summary=f"next round in {minutes(round_.every_s)}")
            await self._one_round(round_)
            if workflow.info().is_continue_as_new_suggested():
                break
        workflow.continue_as_new(self.round)

    async def _one_round(self, round_: EvaluationRound) -> list[QualityReport]:
        reports = []
        for service in round_.services:  # one after the other: a shared LLM judge is not flooded
            request = QualityRequest(service=service, now=workflow.now(), lookback_s=round_.lookback_s)
            reports.append(
                await workflow.execute_activity_method(
                    EvaluationActivities.evaluate_quality,
                    request,
                    summary=f"score {service}'s unscored events of the last {minutes(round_.lookback_s)}",
                    **within(ACTIVITY, request.time_budget_s + 60),
                )
            )
        self.round = self.round.model_copy(update={"rounds_done": self.round.rounds_done + 1})
        self.last = reports
        workflow.set_current_details(self._details())
        return reports

    def _details(self) -> str:
        every = f"every {minutes(self.round.every_s)}" if self.round.every_s else "once"
        lines = [
            f"**Quality evaluation, round {self.round.rounds_done}** ({every}), at {clock(workflow.now())}:",
            "",
        ]
        # A list, not a table: the Temporal UI's Markdown runs table cells together.
        for r in self.last:
            lines.append(
                f"- **{r.service}** ({r.evaluator}): {r.evaluated} scored, {r.skipped} skipped, {r.unavailable} "
                f"waiting, ${r.cost_usd:.4f}"
            )
        return "\n".join(lines)

    @workflow.query(description="The last round's report of each service: scored, skipped, waiting, cost.")
    def status(self, *inputs: object) -> list[QualityReport]:
        return self.last
