"""The operator's controls of an `OptimizationCycle`, declared once: `CONTROLS` says, for each, its name, the request
it takes, what the Temporal UI says of it and what it does. That one table makes the signals (fire and forget: the
`temporal` CLI, the starters; `control_signals` adds one handler per control to the workflow class), the commands of
the `control` update (the HTTP API, which returns what the workflow acknowledged, with the `status` right after)
and the update's description. A signal and a command run the same `run_control`: taken through `take` (accepted,
refused with why, or a duplicate of a request id), applied, audited, shown.

Every handler takes its inputs as they come (`*inputs`: any number, any JSON), so that no input can fail a workflow
task: what is not one valid JSON object is refused, shown in `status` and audited; the `control` update answers a
refusal with a ControlRefused error (docs/operations.md). Deterministic: workflow code only."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError
from temporalio import workflow
from temporalio.api.failure.v1 import ApplicationFailureInfo, Failure
from temporalio.exceptions import FailureError

from workflows.cycle_books import CycleBooks
from workflows.cycle_rollback import missing_target

with workflow.unsafe.imports_passed_through():
    from llm_optimizer.errors import ControlRefused, PayloadRefused
    from llm_optimizer.payloads import (
        ControlCommand,
        EmergencyStopRequest,
        ObjectivesUpdate,
        PauseRequest,
        ResumeRequest,
        RollbackRequest,
        SignalBase,
        TriggerRequest,
        describe_refusal,
        operator_request,
        shown,
    )
    from workflows.handlers import refuse, take

Books = TypeVar("Books", bound=CycleBooks)


@dataclass(frozen=True)
class Control:
    """One operator control: its name (the signal's and the command's), its request, what the Temporal UI says of
    the signal, and what an accepted request does (a refusal's why, or None)."""

    name: str
    model: type[SignalBase]
    description: str
    apply: Callable[[CycleBooks, Any], Awaitable[str | None]]


async def _pause(cycle: CycleBooks, request: PauseRequest) -> None:
    if cycle.carried.paused_reason is None:
        cycle.carried.paused_reason = request.reason or "paused by an operator"


async def _resume(cycle: CycleBooks, request: ResumeRequest) -> None:
    cycle.carried.paused_reason = None
    cycle.carried.stopped_reason = None


async def _trigger(cycle: CycleBooks, request: TriggerRequest) -> None:
    cycle.trigger_reason = request.reason or "operator"


async def _emergency_stop(cycle: CycleBooks, request: EmergencyStopRequest) -> None:
    cycle.carried.stopped_reason = request.reason or "emergency stop"
    if cycle.rollout_handle is not None or cycle.exploration_handle is not None:
        await cycle.signal_children("emergency_stop", {"reason": cycle.carried.stopped_reason})


async def _rollback(cycle: CycleBooks, request: RollbackRequest) -> str | None:
    if request.target_version is not None:
        missing = await missing_target(cycle, request.target_version)
        if missing is not None:
            return missing
    if cycle.rollout_handle is not None and request.target_version is None:
        await cycle.signal_children("rollback", {"reason": request.reason})
    else:
        cycle.rollback_request = request  # the loop applies it (workflows/cycle_rollback.py)
    return None


async def _set_objectives(cycle: CycleBooks, request: ObjectivesUpdate) -> None:
    changes = {
        k: v
        for k, v in {
            "objectives": request.objectives,
            "constraints": request.constraints,
            "strategy": request.strategy,
        }.items()
        if v is not None
    }
    cycle.input = cycle.input.model_copy(update=changes)
    if cycle.lean:
        cycle.publish_watch()  # the watcher holds the live config to the new limits from now on


# Signals answer nothing: a refused one is listed in `status` and audited. The `control` update answers.
SIGNAL_NOTE = " Fire and forget; the `control` update does the same and answers (a refusal says why)."

CONTROLS: dict[str, Control] = {
    c.name: c
    for c in [
        Control(
            "pause",
            PauseRequest,
            'No new cycle starts until `resume`; a rollout in flight goes on. {"reason"}.',
            _pause,
        ),
        Control("resume", ResumeRequest, "Undo a pause or an emergency stop: cycles run again. {}", _resume),
        Control("trigger", TriggerRequest, 'Run a cycle now instead of at the next interval. {"reason"}', _trigger),
        Control(
            "emergency_stop",
            EmergencyStopRequest,
            'Roll back any rollout in flight at once and stay STOPPED until `resume`. {"reason"}',
            _emergency_stop,
        ),
        Control(
            "rollback",
            RollbackRequest,
            'Back to the parent of the live version, or to "target_version"; during a rollout, roll it back.'
            ' {"reason", "target_version"}',
            _rollback,
        ),
        Control(
            "set_objectives",
            ObjectivesUpdate,
            'Change "objectives" (weights), "constraints" (limits) or "strategy" (conservative, balanced, '
            "aggressive) for the cycles that start from now on; a running cycle ends with what it started with.",
            _set_objectives,
        ),
    ]
}

CONTROL_DESCRIPTION = (
    f'The operator\'s control, answered: {{"name": {"|".join(CONTROLS)}, "payload": {{...}}}} -> accepted or '
    "duplicate, with the status; a refusal is one line saying why."
)


async def run_control(cycle: CycleBooks, control: Control, inputs: Sequence[Any]) -> tuple[str, str | None]:
    """One control, as a signal or a command of the `control` update: (outcome, refusal)."""
    request, outcome, refusal = take(cycle.carried, control.name, inputs, control.model)
    if request is not None:
        why = await control.apply(cycle, request)
        if why is not None:
            outcome, refusal = "refused", refuse(cycle.carried, control.name, why)
    await _record_signal(cycle, control.name, inputs, outcome, refusal)
    return outcome, refusal


async def _record_signal(
    cycle: CycleBooks, name: str, inputs: Sequence[Any], outcome: str, refusal: str | None
) -> None:
    # Added after histories were recorded: patched() keeps those replaying.
    if workflow.patched("audit-signals"):
        payload = inputs[0] if len(inputs) == 1 else list(inputs) or None
        details: dict[str, Any] = {"payload": payload, "outcome": outcome}
        if refusal is not None:
            # A refused input may hold what Postgres cannot store (NUL, Infinity): kept as bounded JSON text.
            details = {"payload": json.dumps(payload, default=repr)[:2000], "outcome": outcome, "refusal": refusal}
        await cycle.audit("signal", name, details, flush=True)
    cycle.show()


def _signal(control: Control) -> Callable[..., Awaitable[None]]:
    async def handler(self: CycleBooks, *inputs: Any) -> None:
        await run_control(self, control, inputs)

    handler.__name__ = control.name
    return workflow.signal(name=control.name, description=control.description + SIGNAL_NOTE)(handler)


def control_signals(cls: type[Books]) -> type[Books]:
    """Give the workflow class one signal handler per control, named after it (applied before `workflow.defn`)."""
    for control in CONTROLS.values():
        setattr(cls, control.name, _signal(control))
    return cls


# ---- the `control` update's command and refusals ----


def control_refused(refusal: str) -> FailureError:
    """How the `control` update refuses: an ApplicationError of type ControlRefused, non-retryable, whose message is
    the one line naming the field and value (docs/operations.md). Its failure is built here, so it carries no cause
    and no Python stack trace: the caller (the API, `temporal workflow update execute`) shows just that line."""
    failure = Failure(
        message=refusal,
        application_failure_info=ApplicationFailureInfo(type=ControlRefused.__name__, non_retryable=True),
    )
    return FailureError(refusal, failure=failure)


def command_of(inputs: Sequence[Any]) -> tuple[ControlCommand, Control]:
    """The `control` update's one input as a ControlCommand naming a known control, or a ControlRefused failure."""
    try:
        if len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise PayloadRefused(f'takes one JSON object {{"name", "payload"}}, got {shown(list(inputs))}')
        try:
            command = ControlCommand.model_validate(inputs[0])
        except ValidationError as err:
            raise PayloadRefused(describe_refusal(err)) from None
        if command.name not in CONTROLS:
            raise PayloadRefused(f"name = {shown(command.name)}: not one of {', '.join(CONTROLS)}")
    except PayloadRefused as err:
        raise control_refused(f"control refused: {err}") from None
    return command, CONTROLS[command.name]


def validate_command(inputs: Sequence[Any]) -> None:
    """The validator's check, before acceptance (a refused command leaves nothing in the history). Whether a rollback
    target exists needs the registry, so the handler checks that."""
    command, control = command_of(inputs)
    try:
        operator_request(control.model, (command.payload,))
    except PayloadRefused as err:
        raise control_refused(f"{command.name} refused: {err}") from None
