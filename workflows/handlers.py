"""The one way the workflows' handlers take an operator's request: each is refused (not one valid JSON object, or
what its model refuses; kept with why, shown in `status`), a duplicate (its request_id was seen: signals may arrive
twice) or accepted. Deterministic: no I/O, shared by OptimizationCycle, CanaryRollout and Exploration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from llm_optimizer.errors import PayloadRefused
    from llm_optimizer.payloads import RequestLog, SignalBase, operator_request

Request = TypeVar("Request", bound=SignalBase)

SEEN_KEPT = 100  # request ids remembered: a retry comes within seconds, not a hundred requests later
REFUSALS_KEPT = 20
REFUSAL_CHARS = 500


class Taken(NamedTuple, Generic[Request]):
    """What `take` made of a request: the request if accepted, the outcome, and the refusal's line if refused."""

    request: Request | None
    outcome: Literal["accepted", "refused", "duplicate"]
    refusal: str | None


def refuse(log: RequestLog, name: str, why: str) -> str:
    """Keep `name`'s refusal (the newest REFUSALS_KEPT) and answer its line: `<name> refused: <why>`."""
    refusal = f"{name} refused: {why}"[:REFUSAL_CHARS]
    log.refusals = [*log.refusals, refusal][-REFUSALS_KEPT:]
    return refusal


def first_time(log: RequestLog, request_id: str | None) -> bool:
    """False for a request id seen before; a new one is remembered. A request without an id always counts."""
    if not request_id:
        return True
    if request_id in log.seen_request_ids:
        return False
    log.seen_request_ids = [*log.seen_request_ids, request_id][-SEEN_KEPT:]
    return True


def take(log: RequestLog, name: str, inputs: Sequence[Any], model: type[Request]) -> Taken[Request]:
    """The request in a handler's inputs (as they came: any number, any JSON), accepted, refused or a duplicate."""
    try:
        request = operator_request(model, inputs)
    except PayloadRefused as err:
        return Taken(None, "refused", refuse(log, name, str(err)))
    if not first_time(log, request.request_id):
        return Taken(None, "duplicate", None)
    return Taken(request, "accepted", None)
