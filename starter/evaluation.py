"""Quality evaluation of the services configured in `evaluation.services`: one round now, or on a Schedule.

python -m starter.evaluation run                      # one round, and print what it scored
python -m starter.evaluation schedule create          # a round every evaluation.interval_s
python -m starter.evaluation schedule delete
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import uuid
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
)

from integrations import llm_judge  # noqa: F401  (registers the "llm_judge" evaluator)
from llm_optimizer.control import EvaluationRound, QualityReport
from llm_optimizer.errors import OptimizerError
from llm_optimizer.evaluation import build
from llm_optimizer.settings import Settings, load_settings
from starter.client import connect_client

SCHEDULE_ID = "quality-evaluation"


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


async def create_schedule(client: Client, settings: Settings) -> None:
    """Idempotent: an existing schedule is left as it is."""
    with contextlib.suppress(ScheduleAlreadyRunningError):
        await client.create_schedule(
            SCHEDULE_ID,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    "QualityEvaluation",
                    evaluation_round(settings),
                    id=SCHEDULE_ID,
                    task_queue=settings.temporal.task_queue,
                ),
                spec=ScheduleSpec(
                    intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.evaluation.interval_s))]
                ),
            ),
        )


async def main_async(args: argparse.Namespace) -> int:
    settings = load_settings()
    client = await connect_client(settings)
    if args.command == "run":
        reports = await client.execute_workflow(
            "QualityEvaluation",
            evaluation_round(settings),
            id=f"quality-evaluation/{uuid.uuid4().hex[:8]}",
            task_queue=settings.temporal.task_queue,
            result_type=list[QualityReport],
        )
        print(json.dumps([r.model_dump() for r in reports], indent=2))
    elif args.action == "create":
        await create_schedule(client, settings)
        print(f"schedule {SCHEDULE_ID}: a round every {settings.evaluation.interval_s} s")
    else:
        await client.get_schedule_handle(SCHEDULE_ID).delete()
        print(f"deleted schedule {SCHEDULE_ID}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m starter.evaluation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["run", "schedule"])
    parser.add_argument("action", nargs="?", choices=["create", "delete"])
    args = parser.parse_args(argv)
    if args.command == "schedule" and not args.action:
        parser.error("schedule needs create or delete")
    try:
        return asyncio.run(main_async(args))
    except OptimizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
