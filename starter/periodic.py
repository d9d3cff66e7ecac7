"""The shared shape of the workflows an operator runs now or periodically (storage maintenance, quality
evaluation): `run` executes one and prints its result; `schedule create` starts the one long-running workflow that
runs it every interval with its own timer (one entry in the workflow list, not one per run); `schedule delete`
stops it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from llm_optimizer.errors import OptimizerError
from llm_optimizer.settings import Settings, load_settings
from runtime.temporal import connect_client
from workflows.details import minutes


@dataclass(frozen=True)
class Periodic:
    workflow: str  # the workflow type
    schedule_id: str  # the long-running workflow's id (and the id of the Temporal Schedule earlier versions used)
    make_input: Callable[[Settings, argparse.Namespace], BaseModel]  # its `every_s` is set for the periodic run
    every: Callable[[Settings, argparse.Namespace], timedelta]
    result_type: Any
    summary: str  # what the Temporal UI says it is

    def details(self, every: timedelta) -> str:
        return (
            f"{self.summary}, every {minutes(every.total_seconds())}: one long-running workflow with its own timer "
            "that continues as new, so the workflow list is not filled with one entry per run. `schedule delete` "
            "stops it (docs/operations.md)."
        )


async def create_schedule(
    client: Client, settings: Settings, job: Periodic, args: argparse.Namespace | None = None
) -> timedelta:
    """Start the job's long-running workflow; idempotent: a running one is kept as it is. A Temporal Schedule of
    the same id (how earlier versions ran it) is deleted, so that it does not run twice."""
    args = args or argparse.Namespace()
    every = job.every(settings, args)
    try:
        await client.get_schedule_handle(job.schedule_id).delete()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    inp = job.make_input(settings, args).model_copy(update={"every_s": every.total_seconds()})
    await client.start_workflow(
        job.workflow,
        inp,
        id=job.schedule_id,
        task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"{job.summary}, every {minutes(every.total_seconds())}",
        static_details=job.details(every),
    )
    return every


async def _main_async(job: Periodic, args: argparse.Namespace) -> int:
    settings = load_settings()
    client = await connect_client(settings)
    if args.command == "run":
        result = await client.execute_workflow(
            job.workflow,
            job.make_input(settings, args),
            id=f"{job.schedule_id}/{uuid.uuid4().hex[:8]}",
            task_queue=settings.temporal.task_queue,
            result_type=job.result_type,
            static_summary=f"{job.summary}, once (python -m starter)",
        )
        shown = [r.model_dump() for r in result] if isinstance(result, list) else result.model_dump()
        print(json.dumps(shown, indent=2, default=str))
    elif args.action == "create":
        every = await create_schedule(client, settings, job, args)
        print(f"workflow {job.schedule_id}: {job.workflow} every {minutes(every.total_seconds())}")
    else:
        try:
            await client.get_workflow_handle(job.schedule_id).cancel()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            print(f"{job.schedule_id} is not running")
            return 0
        print(f"stopped {job.schedule_id}")
    return 0


def build_parser(prog: str, doc: str, parser_hook=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "command", choices=["run", "schedule"], help="run: once now, and print the result; schedule: periodically"
    )
    parser.add_argument(
        "action", nargs="?", choices=["create", "delete"], help="for schedule: start or stop the periodic workflow"
    )
    if parser_hook:
        parser_hook(parser)
    return parser


def main(job: Periodic, prog: str, doc: str, argv: list[str] | None, parser_hook=None) -> int:
    parser = build_parser(prog, doc, parser_hook)
    args = parser.parse_args(argv)
    if args.command == "schedule" and not args.action:
        parser.error("schedule needs create or delete")
    try:
        return asyncio.run(_main_async(job, args))
    except OptimizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
