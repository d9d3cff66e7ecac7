"""Operate the optimization loop of a service from the command line.

    python -m starter.cycle register --service chat --model gpt-4o --provider openai   # first config, assigned
    python -m starter.cycle start --service chat [--candidates gpt-4o-mini,my-vllm-qwen-ft] \
        [--candidate-configs candidates.yaml]   # e.g. [{name: short-prompt, prompt_template: "..."}]
    python -m starter.cycle status --service chat
    python -m starter.cycle history --service chat
    python -m starter.cycle pause|resume|trigger|emergency-stop --service chat [--reason "..."]
    python -m starter.cycle rollback --service chat [--target v3] [--reason "..."]
    python -m starter.cycle set-objectives --service chat --json '{"strategy": "conservative"}'
    python -m starter.cycle schedule create|list|delete --service chat [--every 15m]

The same controls work from the `temporal` CLI (docs/operations.md), e.g.
    temporal workflow signal --workflow-id optimization-cycle/chat --name pause --input '{"reason": "maintenance"}'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError

from llm_optimizer import yamlsafe
from llm_optimizer.candidates import CandidateConfig
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.control import CycleInput, CycleRecord, CycleStatus
from llm_optimizer.errors import OptimizerError
from llm_optimizer.events import describe_validation_error
from llm_optimizer.resolution import Assignment
from llm_optimizer.settings import Settings, load_settings
from starter.client import connect_client, ensure_schedule, exit_process
from storage import configs_repo
from storage.db import connect, migrate
from workflows.optimization_cycle import cycle_workflow_id
from workflows.search_attributes import SERVICE

SIGNALS = {"pause": "pause", "resume": "resume", "trigger": "trigger", "emergency-stop": "emergency_stop"}


def load_candidate_configs(path: str | None) -> list[CandidateConfig]:
    """Config candidates from a YAML file: a list of {name, model?, provider?, prompt_template?, params?}."""
    if not path:
        return []
    try:
        data = yamlsafe.safe_load(Path(path).read_text(), what=f"candidate configs {path}")
    except OSError as exc:
        raise OptimizerError(f"--candidate-configs {path}: {exc.strerror}") from None
    if not isinstance(data, list):
        raise OptimizerError(f"--candidate-configs {path}: expected a list of candidates, got {type(data).__name__}")
    try:
        return [CandidateConfig.model_validate(item) for item in data]
    except ValidationError as exc:
        raise OptimizerError(f"--candidate-configs {path}: {describe_validation_error(exc)}") from None


def cycle_input_from_settings(
    settings: Settings, service: str, candidates: list[str], configs: list[CandidateConfig] | None = None
) -> CycleInput:
    opt = settings.optimization
    return CycleInput(
        service=service,
        strategy=opt.strategy,
        interval_s=opt.interval_s,
        fast_path_s=opt.fast_path_interval_s,
        time_scale=opt.time_scale,
        candidate_models=candidates,
        candidate_configs=configs or [],
        canary=opt.canary,
        exploration=opt.exploration,
    )


async def start_cycle(client: Client, task_queue: str, inp: CycleInput) -> WorkflowHandle:
    """Start the service's cycle; idempotent: a running cycle is kept as it is."""
    return await client.start_workflow(
        "OptimizationCycle",
        inp,
        id=cycle_workflow_id(inp.service),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([SearchAttributePair(SERVICE, inp.service)]),
    )


def register_initial(settings: Settings, service: str, spec: ConfigSpec) -> str:
    """Register `spec` and make it the active version if the service has none."""
    migrate(settings.database_url)
    with connect(settings.database_url) as conn:
        version = configs_repo.register(conn, service, spec, created_by="operator")
        if configs_repo.get_assignment(conn, service) is None:
            configs_repo.set_assignment(
                conn, Assignment(service=service, active_version=version.version), updated_by="operator"
            )
        conn.commit()
    return version.version


def parse_every(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhd])", text)
    if not match:
        raise OptimizerError(f"--every {text!r}: expected a number and a unit, like 15m, 1h or 30s")
    return timedelta(seconds=int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]])


async def main_async(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.command == "register":
        version = register_initial(settings, args.service, ConfigSpec(model=args.model, provider=args.provider))
        print(f"{args.service}: registered {version}")
        return 0
    client = await connect_client(settings)
    handle = client.get_workflow_handle(cycle_workflow_id(args.service))
    candidates = [c for c in (args.candidates or "").split(",") if c]
    if args.command == "start":
        if not settings.optimization.enabled:
            raise OptimizerError("optimization.enabled is false: not starting a cycle")
        inp = cycle_input_from_settings(
            settings, args.service, candidates, load_candidate_configs(args.candidate_configs)
        )
        handle = await start_cycle(client, settings.temporal.task_queue, inp)
        print(f'cycle running as {handle.id} (Temporal UI: search Service="{args.service}")')
    elif args.command == "status":
        print((await handle.query("status", result_type=CycleStatus)).model_dump_json(indent=2))
    elif args.command == "history":
        records = await handle.query("history", result_type=list[CycleRecord])
        print(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
    elif args.command in SIGNALS:
        await handle.signal(SIGNALS[args.command], {"reason": args.reason, "request_id": str(uuid.uuid4())})
        print(f"sent {SIGNALS[args.command]} to {handle.id}")
    elif args.command == "rollback":
        payload = {"reason": args.reason, "target_version": args.target, "request_id": str(uuid.uuid4())}
        await handle.signal("rollback", payload)
        print(f"sent rollback to {handle.id}")
    elif args.command == "set-objectives":
        await handle.signal("set_objectives", json.loads(args.json))
        print(f"sent set_objectives to {handle.id}; refusals, if any, show in `status`")
    elif args.command == "schedule":
        return await schedule(client, settings, args, candidates)
    return 0


async def schedule(client: Client, settings: Settings, args: argparse.Namespace, candidates: list[str]) -> int:
    """Batch/daemon mode: a Temporal Schedule runs one-shot cycles instead of a long-running one."""
    schedule_id = f"optimization-schedule/{args.service}"
    if args.action == "create":
        inp = cycle_input_from_settings(settings, args.service, candidates).model_copy(update={"run_once": True})
        created = await ensure_schedule(
            client,
            schedule_id,
            "OptimizationCycle",
            inp.model_copy(update={"interval_s": 1.0}),
            workflow_id=f"optimization-batch/{args.service}",
            task_queue=settings.temporal.task_queue,
            every=parse_every(args.every),
        )
        if not created:
            print(f"schedule {schedule_id} exists; left as it is")
            return 0
        print(f"created schedule {schedule_id}: a one-shot cycle every {args.every}")
    elif args.action == "list":
        async for entry in await client.list_schedules():
            print(entry.id)
    else:
        await client.get_schedule_handle(schedule_id).delete()
        print(f"deleted schedule {schedule_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m starter.cycle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command",
        choices=["register", "start", "status", "history", "rollback", "set-objectives", "schedule", *SIGNALS],
    )
    parser.add_argument("action", nargs="?", choices=["create", "list", "delete"], help="for `schedule`")
    parser.add_argument("--service", required=True)
    parser.add_argument("--model")
    parser.add_argument("--provider")
    parser.add_argument("--candidates", help="comma-separated models worth trying (any names)")
    parser.add_argument(
        "--candidate-configs",
        metavar="FILE",
        help="YAML list of config candidates: {name, model?, provider?, prompt_template?, params?}",
    )
    parser.add_argument("--reason", default="")
    parser.add_argument("--target", help="rollback target version (default: the parent of the live one)")
    parser.add_argument("--json", default="{}", help="for set-objectives")
    parser.add_argument("--every", default="15m", help="for `schedule create`")
    args = parser.parse_args(argv)
    if args.command == "register" and not (args.model and args.provider):
        parser.error("register needs --model and --provider")
    if args.command == "schedule" and not args.action:
        parser.error("schedule needs create, list or delete")
    try:
        return asyncio.run(main_async(args))
    except (OptimizerError, RPCError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    exit_process(main())
