r"""Operate the optimization loop of a service from the command line.

    llm-optimizer cycle register --service chat --model gpt-4o --provider openai   # first config, assigned
    llm-optimizer cycle start --service chat [--candidates gpt-4o-mini,my-vllm-qwen-ft] \
        [--candidate-configs candidates.yaml]   # e.g. [{name: short-prompt, prompt_template: "..."}]
    llm-optimizer cycle status --service chat
    llm-optimizer cycle history --service chat
    llm-optimizer cycle pause|resume|trigger|emergency-stop --service chat [--reason "..."]
    llm-optimizer cycle rollback --service chat [--target v3] [--reason "..."]
    llm-optimizer cycle set-objectives --service chat --json '{"strategy": "conservative"}'
    llm-optimizer cycle schedule create|list|delete --service chat [--every 15m]

`register` stores the first config of a service and assigns it; `start` runs the service's OptimizationCycle (one
long-running workflow, idempotent); `status` and `history` print what it is doing and what it did; `schedule` runs
one-shot cycles from a Temporal Schedule instead (batch mode).

Each control is the cycle's `control` update: it prints what the cycle answered, and a refusal's one-line reason
(exit code 1). The same from the `temporal` CLI (docs/operations.md), e.g.
    temporal workflow update execute --workflow-id optimization-cycle/chat --name control \
        --input '{"name": "pause", "payload": {"reason": "maintenance"}}'
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
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError

from llm_optimizer import ids, yamlsafe
from llm_optimizer.candidates import CandidateConfig
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.errors import OptimizerError
from llm_optimizer.events import describe_validation_error
from llm_optimizer.payloads import ControlAck, CycleInput, CycleRecord, CycleStatus
from llm_optimizer.resolution import Assignment
from llm_optimizer.settings import Settings, load_settings
from runtime.search_attributes import SERVICE
from runtime.temporal import connect_client, ensure_schedule, exit_process
from storage import configs_repo
from storage.db import connect, migrate
from workflows.details import minutes

# Command-line name -> the control's name (the `control` update's "name", and the signal of the same name).
CONTROLS = {
    "pause": "pause",
    "resume": "resume",
    "trigger": "trigger",
    "emergency-stop": "emergency_stop",
    "rollback": "rollback",
    "set-objectives": "set_objectives",
}


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


def cycle_summary(inp: CycleInput) -> tuple[str, str]:
    """What the Temporal UI says of a cycle from its start: a one-line summary and Markdown details."""
    scale = inp.time_scale
    candidates = [*inp.candidate_models, *(c.name for c in inp.candidate_configs)]
    c = inp.constraints
    limits = [f"quality floor {c.quality_floor_ratio:g} x the reference"]
    if c.p95_latency_max_ms is not None:
        limits.append(f"p95 latency at most {c.p95_latency_max_ms:g} ms")
    if c.error_rate_max is not None:
        limits.append(f"error rate at most {c.error_rate_max * 100:g}%")
    kind = "One-shot optimization cycle" if inp.run_once else "Optimization loop"
    details = "\n".join(
        [
            f"**{kind} of `{inp.service}`**: observe the live config's traffic, decide whether another config is "
            "cheaper, faster or better within the limits, and roll it out in judged stages (CanaryRollout children).",
            "",
            f"- Every {minutes(inp.interval_s * scale)} (strategy {inp.strategy.value}); the threshold watcher checks "
            f"the hard limits every {minutes(inp.fast_path_s * scale)} and triggers a cycle on a breach.",
            f"- Limits: {'; '.join(limits)}.",
            f"- Candidates: {', '.join(candidates) or 'none offered'}.",
            "- Controls: the `control` update (answers), or the signals of the same names; `status` and `history` "
            "queries (docs/operations.md).",
        ]
    )
    return f"{kind} of {inp.service} ({inp.strategy.value}, every {minutes(inp.interval_s * scale)})", details


async def start_cycle(client: Client, task_queue: str, inp: CycleInput) -> WorkflowHandle:
    """Start the service's cycle; idempotent: a running cycle is kept as it is."""
    summary, details = cycle_summary(inp)
    return await client.start_workflow(
        "OptimizationCycle",
        inp,
        id=ids.cycle_id(inp.service),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([SearchAttributePair(SERVICE, inp.service)]),
        static_summary=summary,
        static_details=details,
    )


async def send_control(handle: WorkflowHandle, name: str, payload: dict) -> int:
    """Run one control as the cycle's `control` update; print its answer, or the refusal's one line (exit 1)."""
    try:
        ack = await handle.execute_update("control", {"name": name, "payload": payload}, result_type=ControlAck)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        print(f"error: {getattr(cause, 'message', None) or cause or err}", file=sys.stderr)
        return 1
    status = ack.status
    print(f"{name} {ack.outcome} by {handle.id}: state {status.state.value}, live {status.active_version or '-'}")
    return 0


def control_payload(args: argparse.Namespace) -> dict:
    """The control's payload from the command line; a request_id makes a retried command count once."""
    if args.command == "set-objectives":
        try:
            payload = json.loads(args.json)
        except json.JSONDecodeError as exc:
            raise OptimizerError(f"--json {args.json!r}: not JSON ({exc.msg} at character {exc.pos})") from None
        if not isinstance(payload, dict):
            raise OptimizerError(f'--json {args.json!r}: expected a JSON object such as {{"strategy": "balanced"}}')
        return payload
    payload = {"reason": args.reason, "request_id": str(uuid.uuid4())}
    if args.command == "rollback" and args.target:
        payload["target_version"] = args.target
    return payload


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
    handle = client.get_workflow_handle(ids.cycle_id(args.service))
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
    elif args.command in CONTROLS:
        return await send_control(handle, CONTROLS[args.command], control_payload(args))
    elif args.command == "schedule":
        return await schedule(client, settings, args, candidates)
    return 0


async def schedule(client: Client, settings: Settings, args: argparse.Namespace, candidates: list[str]) -> int:
    """Batch/daemon mode: a Temporal Schedule runs one-shot cycles instead of a long-running one."""
    schedule_id = ids.schedule_id(args.service)
    if args.action == "create":
        inp = cycle_input_from_settings(settings, args.service, candidates).model_copy(update={"run_once": True})
        summary, details = cycle_summary(inp)
        created = await ensure_schedule(
            client,
            schedule_id,
            "OptimizationCycle",
            inp,  # run_once: each runs one cycle at once and returns
            workflow_id=ids.batch_cycle_id(args.service),
            task_queue=settings.temporal.task_queue,
            every=parse_every(args.every),
            summary=f"{summary.split(' (')[0]}, every {args.every} (Schedule {schedule_id})",
            details=details,
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


def build_parser(prog: str = "python -m starter.cycle") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command",
        choices=["register", "start", "status", "history", "schedule", *CONTROLS],
        help="what to do (see above); the controls answer with what the cycle did, or why it refused",
    )
    parser.add_argument("action", nargs="?", choices=["create", "list", "delete"], help="for `schedule`")
    parser.add_argument("--service", required=True, help="the service's name, as its events carry it")
    parser.add_argument("--model", help="for register: the model of the first config")
    parser.add_argument("--provider", help="for register: its provider (e.g. openai, anthropic)")
    parser.add_argument("--candidates", help="comma-separated models worth trying (any names)")
    parser.add_argument(
        "--candidate-configs",
        metavar="FILE",
        help="YAML list of config candidates: {name, model?, provider?, prompt_template?, params?}",
    )
    parser.add_argument("--reason", default="", help="for the controls: recorded in the audit trail")
    parser.add_argument("--target", help="rollback target version (default: the parent of the live one)")
    parser.add_argument(
        "--json", default="{}", help="for set-objectives: strategy, objectives or constraints (docs/operations.md)"
    )
    parser.add_argument("--every", default="15m", help="for `schedule create`: 30s, 15m, 1h, ... (default 15m)")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m starter.cycle") -> int:
    parser = build_parser(prog)
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
