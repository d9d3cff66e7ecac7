"""The Temporal client, configured the same way for the worker, the starters and the API."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import Any, NoReturn

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from llm_optimizer.settings import Settings
from runtime.search_attributes import SEARCH_ATTRIBUTES
from runtime.tracing import interceptors, shutdown_tracing


def exit_process(code: int) -> NoReturn:
    """End a short-lived command that used a Temporal client: flush what it wrote, then skip interpreter teardown.

    The client's Rust threads can outlive the event loop, and CPython finalizing around them may abort with
    "PyGILState_Release: thread state ... must be current" (temporalio/sdk-python#300), turning a command that
    succeeded into exit code -6."""
    shutdown_tracing()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def ensure_schedule(
    client: Client,
    schedule_id: str,
    workflow: str,
    inp: Any,
    *,
    workflow_id: str,
    task_queue: str,
    every: timedelta,
    summary: str | None = None,
    details: str | None = None,
) -> bool:
    """A Schedule starting `workflow` every `every`, each run with `summary` and `details` for the Temporal UI;
    idempotent (a Job or a script may run it again): an existing schedule is kept as it is. True if it was created
    now."""
    try:
        await client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    workflow,
                    inp,
                    id=workflow_id,
                    task_queue=task_queue,
                    static_summary=summary,
                    static_details=details,
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
            ),
        )
    except ScheduleAlreadyRunningError:
        return False
    return True


async def connect_client(settings: Settings, runtime: Runtime | None = None) -> Client:
    """The client (and, through it, any worker on it) traces when `tracing.enabled`."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
        interceptors=interceptors(settings.tracing),
    )


async def ensure_search_attributes(client: Client) -> None:
    """Register the project's search attributes on the namespace; those already there are left alone."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        existing = set(listed.custom_attributes)
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:  # the time-skipping test server cannot list them
            raise
        existing = set()
    missing = {
        name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
        for name, kind in SEARCH_ATTRIBUTES.items()
        if name not in existing
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
