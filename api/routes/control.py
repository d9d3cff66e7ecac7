"""Controls of the optimization loop: each is the `control` update of the service's `OptimizationCycle`, so the
answer is what the workflow acknowledged (accepted, duplicate or refused) with its status right after.

A request's `request_id` (or its `Idempotency-Key` header) makes a retried control count once.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Request
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.backend import Backend
from api.security import allowed
from llm_optimizer.auth import Permission, Principal
from llm_optimizer.errors import ControlRefused
from llm_optimizer.ids import cycle_id, running_cycles_query, service_of_cycle
from llm_optimizer.payloads import VERSION_PATTERN, ControlAck, ControlCommand, CycleStatus

router = APIRouter(prefix="/api/v1", tags=["control"])


class ControlBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    reason: str = ""
    request_id: str | None = Field(default=None, validation_alias=AliasChoices("request_id", "requestId"))


class ServiceControl(ControlBody):
    service: str | None = None
    services: list[str] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> ServiceControl:
        if self.service and self.services:
            raise ValueError("give `service` or `services`, not both")
        return self

    def targets(self) -> list[str] | None:
        return [self.service] if self.service else self.services


class TriggerBody(ServiceControl):
    @model_validator(mode="after")
    def _needs_target(self) -> TriggerBody:
        if not self.targets():
            raise ValueError("name the `service` (or `services`) to optimize")
        return self


class RollbackBody(ControlBody):
    service: str
    # A malformed version is a 422 here; one that is not registered for the service, the cycle refuses (a 422 too).
    target_version: str | None = Field(
        default=None, pattern=VERSION_PATTERN, validation_alias=AliasChoices("target_version", "targetVersion")
    )


class ControlResult(BaseModel):
    acks: list[ControlAck]


async def _running_cycles(client: Client, task_queue: str) -> list[str]:
    """The services whose cycle runs on this deployment's task queue."""
    return sorted([service_of_cycle(w.id) async for w in client.list_workflows(running_cycles_query(task_queue))])


async def _control(
    request: Request,
    name: str,
    services: list[str] | None,
    payload: dict[str, Any],
    idempotency_key: str | None,
) -> ControlResult:
    backend: Backend = request.app.state.backend
    principal: Principal = request.state.principal
    try:
        client = await backend.temporal()
        targets = (
            services if services is not None else await _running_cycles(client, backend.settings.temporal.task_queue)
        )
    except (RPCError, OSError, TimeoutError, RuntimeError) as exc:
        raise HTTPException(503, f"Temporal is unavailable: {exc}") from None
    request_id = payload.pop("request_id", None) or idempotency_key or str(uuid.uuid4())
    reason = payload.get("reason") or f"{name} by {principal.name} over the HTTP API"
    payload = {**payload, "reason": reason}

    async def one(service: str) -> ControlAck:
        command = ControlCommand(name=name, payload={**payload, "request_id": f"{request_id}/{service}"})
        handle = client.get_workflow_handle(cycle_id(service))
        try:
            return await asyncio.wait_for(
                handle.execute_update("control", command, result_type=ControlAck), backend.timeout_s
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise HTTPException(404, f"no optimization cycle is running for service {service!r}") from None
            raise HTTPException(503, f"Temporal refused the update: {exc}") from None
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type == ControlRefused.__name__:
                # The cycle refused the command: its message names the field, the value and why.
                raise HTTPException(422, f"{service}: {cause.message}") from None
            raise HTTPException(502, f"{service}: the cycle failed the command ({cause or exc})") from None
        except TimeoutError:
            raise HTTPException(504, f"{service}: no answer within {backend.timeout_s:g} s") from None

    return ControlResult(acks=list(await asyncio.gather(*(one(s) for s in targets))))


@router.post("/optimize/trigger", response_model=ControlResult, dependencies=[allowed(Permission.trigger_optimization)])
async def trigger(request: Request, body: TriggerBody, idempotency_key: str | None = Header(default=None)):
    """Run a cycle now for each named service."""
    return await _control(request, "trigger", body.targets(), _payload(body), idempotency_key)


@router.post("/config/rollback", response_model=ControlResult, dependencies=[allowed(Permission.rollback)])
async def rollback(request: Request, body: RollbackBody, idempotency_key: str | None = Header(default=None)):
    """Roll the service back: a running canary is rolled back; otherwise to `target_version` or the parent."""
    payload = _payload(body) | {"target_version": body.target_version}
    return await _control(request, "rollback", [body.service], payload, idempotency_key)


@router.post("/admin/pause", response_model=ControlResult, dependencies=[allowed(Permission.admin)])
async def pause(request: Request, body: ServiceControl, idempotency_key: str | None = Header(default=None)):
    """Pause the named services' loops, or every running loop: no new decisions until resumed."""
    return await _control(request, "pause", body.targets(), _payload(body), idempotency_key)


@router.post("/admin/resume", response_model=ControlResult, dependencies=[allowed(Permission.admin)])
async def resume(request: Request, body: ServiceControl, idempotency_key: str | None = Header(default=None)):
    """Resume the named services' loops (or every running loop) after a pause or an emergency stop."""
    return await _control(request, "resume", body.targets(), _payload(body), idempotency_key)


@router.post("/admin/emergency-stop", response_model=ControlResult, dependencies=[allowed(Permission.admin)])
async def emergency_stop(request: Request, body: ServiceControl, idempotency_key: str | None = Header(default=None)):
    """Stop every running loop (or the named ones) and roll back any canary in flight."""
    return await _control(request, "emergency_stop", body.targets(), _payload(body), idempotency_key)


@router.get("/cycles/{service}", response_model=CycleStatus, dependencies=[allowed(Permission.view_metrics)])
async def cycle_status(request: Request, service: str) -> CycleStatus:
    """The cycle's `status` query: state, live version, rollout in flight, last decision, pause or stop."""
    backend: Backend = request.app.state.backend
    try:
        client = await backend.temporal()
        handle = client.get_workflow_handle(cycle_id(service))
        return await asyncio.wait_for(handle.query("status", result_type=CycleStatus), backend.timeout_s)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(404, f"no optimization cycle for service {service!r}") from None
        raise HTTPException(503, f"Temporal is unavailable: {exc}") from None
    except (OSError, TimeoutError, RuntimeError) as exc:
        raise HTTPException(503, f"Temporal is unavailable: {exc}") from None


def _payload(body: ControlBody) -> dict[str, Any]:
    return {"reason": body.reason, "request_id": body.request_id}
