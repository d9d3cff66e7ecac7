"""Quality evaluation of the services configured in `evaluation.services`: one round now, or periodically.

    llm-optimizer evaluation run                      # one round, and print what it scored
    llm-optimizer evaluation schedule create          # one workflow running a round every evaluation.interval_s
    llm-optimizer evaluation schedule delete          # stop it

A round scores the sampled events that came without a quality score, with each service's evaluator
(docs/configuration.md, `evaluation`; docs/operations.md, "Quality evaluation"); the worker must be running.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from integrations import llm_grader  # noqa: F401  (registers the "llm_judge" evaluator)
from llm_optimizer.errors import OptimizerError
from llm_optimizer.evaluation import build
from llm_optimizer.ids import QUALITY_EVALUATION_ID
from llm_optimizer.payloads import EvaluationRound, QualityReport
from llm_optimizer.settings import Settings
from runtime.temporal import exit_process
from starter import periodic


def evaluation_round(settings: Settings) -> EvaluationRound:
    """The configured services, each evaluator built once so that a wrong name or option fails here, named."""
    services = settings.evaluation.services
    if not services:
        raise OptimizerError("evaluation.services is empty: nothing to evaluate (see docs/configuration.md)")
    for name, configured in services.items():
        try:
            build(configured.evaluator, configured.options)
        except OptimizerError as exc:
            raise OptimizerError(f"evaluation.services.{name}: {exc}") from None
    return EvaluationRound(services=sorted(services))


JOB = periodic.Periodic(
    workflow="QualityEvaluation",
    schedule_id=QUALITY_EVALUATION_ID,
    make_input=lambda settings, args: evaluation_round(settings),
    every=lambda settings, args: timedelta(seconds=settings.evaluation.interval_s),
    result_type=list[QualityReport],
    summary="Quality evaluation: score the events that came without a quality score",
)


def build_parser(prog: str = "python -m starter.evaluation") -> argparse.ArgumentParser:
    return periodic.build_parser(prog, __doc__)


def main(argv: list[str] | None = None, prog: str = "python -m starter.evaluation") -> int:
    return periodic.main(JOB, prog, __doc__, argv)


if __name__ == "__main__":
    exit_process(main())
