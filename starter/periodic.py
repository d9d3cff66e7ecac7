"""The shared shape of the one-shot workflows an operator runs now or on a Temporal Schedule (storage maintenance,
quality evaluation): `run` executes one and prints its result; `schedule create|delete` manages the Schedule."""

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

from llm_optimizer.errors import OptimizerError
from llm_optimizer.settings import Settings, load_settings
from starter.client import connect_client, ensure_schedule


@dataclass(frozen=True)
class Periodic:
    workflow: str  # the workflow type, also the schedule id's stem
    schedule_id: str
    make_input: Callable[[Settings, argparse.Namespace], BaseModel]
    every: Callable[[Settings, argparse.Namespace], timedelta]
    result_type: Any


async def create_schedule(
    client: Client, settings: Settings, job: Periodic, args: argparse.Namespace | None = None
) -> timedelta:
    """Idempotent: an existing schedule is kept as it is."""
    args = args or argparse.Namespace()
    every = job.every(settings, args)
    await ensure_schedule(
        client,
        job.schedule_id,
        job.workflow,
        job.make_input(settings, args),
        workflow_id=job.schedule_id,
        task_queue=settings.temporal.task_queue,
        every=every,
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
        )
        shown = [r.model_dump() for r in result] if isinstance(result, list) else result.model_dump()
        print(json.dumps(shown, indent=2, default=str))
    elif args.action == "create":
        every = await create_schedule(client, settings, job, args)
        print(f"schedule {job.schedule_id}: {job.workflow} every {every}")
    else:
        await client.get_schedule_handle(job.schedule_id).delete()
        print(f"deleted schedule {job.schedule_id}")
    return 0


def main(job: Periodic, prog: str, doc: str, argv: list[str] | None, parser_hook=None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "schedule"])
    parser.add_argument("action", nargs="?", choices=["create", "delete"])
    if parser_hook:
        parser_hook(parser)
    args = parser.parse_args(argv)
    if args.command == "schedule" and not args.action:
        parser.error("schedule needs create or delete")
    try:
        return asyncio.run(_main_async(job, args))
    except OptimizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
