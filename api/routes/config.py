"""The config registry over HTTP: resolution (sticky per key), the assignment, history, export and import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.backend import Backend
from api.security import allowed
from llm_optimizer.auth import Permission
from llm_optimizer.configs import ConfigSpec, ConfigVersion
from llm_optimizer.errors import ExportTooLarge, ValidationFailed, VersionConflict
from llm_optimizer.events import Name
from llm_optimizer.resolution import Assignment, ResolvedConfig
from storage import audit_repo, configs_repo

router = APIRouter(prefix="/api/v1/config", tags=["config"])
VIEW = allowed(Permission.view_config)
# A service name as the registry stores it: anything else (a NUL, `..`, 500 characters) is a 422 naming the value.
ServicePath = Annotated[Name, Path(description="the service's name")]


class AssignmentView(BaseModel):
    """Everything a client needs to resolve any key locally until `ttl_s` passes."""

    assignment: Assignment
    specs: dict[str, ConfigSpec]
    ttl_s: float


class History(BaseModel):
    service: str
    assignment: Assignment | None
    versions: list[ConfigVersion]
    rollouts: list[dict]


def _backend(request: Request) -> Backend:
    return request.app.state.backend


@router.get(
    "/export",
    response_class=PlainTextResponse,
    dependencies=[VIEW],
    responses={422: {"description": "the export would be over its bound: export one service at a time"}},
)
async def export(
    request: Request, service: Annotated[Name | None, Query(description="one service")] = None
) -> StreamingResponse:
    """Every version and the active version of the service (of every service without `service`, one YAML document
    each), as YAML that `POST /import` reads back: a backup is `curl .../config/export > backup.yaml` (docs/api.md).

    Streamed a page of versions at a time; refused (422) before anything is sent when the specs it would hold are
    over the export bound (docs/api.md, "Limits and refusals"). The last line is `# end of export: N services`, so
    a cut-off download can be told from a complete one."""
    backend = _backend(request)
    try:
        plan = await backend.run(configs_repo.export_plan, service)
    except ExportTooLarge as exc:
        raise HTTPException(422, str(exc)) from None

    async def documents() -> AsyncIterator[str]:
        for index, (name, versions) in enumerate(plan):
            yield ("---\n" if index else "") + await backend.run(configs_repo.export_start, name, versions)
            after = None
            while True:
                text, after = await backend.run(configs_repo.export_page, name, after)
                yield text
                if after is None:
                    break
        yield f"# end of export: {len(plan)} services\n"

    return StreamingResponse(documents(), media_type="text/plain; charset=utf-8")


@router.post(
    "/import",
    dependencies=[allowed(Permission.modify_config)],
    responses={
        409: {"description": "a version the service already has, with another spec"},
        422: {"description": "not a valid export (the problem named), or refused YAML"},
    },
)
async def import_(request: Request) -> dict:
    """Register the versions of an exported YAML document (idempotent); sets the active version if none is.
    All or nothing: the first problem refuses the whole import."""
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = body[exc.start : exc.start + 1]
        raise HTTPException(422, f"the body is not UTF-8 text (byte {exc.start}: {bad!r})") from None
    try:
        versions = await _backend(request).run(configs_repo.import_yaml, text)
    except VersionConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except ValidationFailed as exc:
        raise HTTPException(422, str(exc)) from None
    return {"imported": [v.version for v in versions]}


@router.get("/{service}", response_model=ResolvedConfig, dependencies=[VIEW])
async def resolve(
    request: Request, service: ServicePath, key: str = Query(min_length=1, max_length=256)
) -> ResolvedConfig:
    """The config that serves `key` (sticky: the same key gets the same version while the split holds)."""
    configs = _backend(request).configs
    resolved = configs.resolve_cached(service, key)
    if resolved is None:
        try:
            resolved = await run_in_threadpool(configs.resolve, service, key)
        except ValidationFailed as exc:
            raise HTTPException(404, str(exc)) from None
    return resolved


@router.get("/{service}/assignment", response_model=AssignmentView, dependencies=[VIEW])
async def assignment(request: Request, service: ServicePath) -> AssignmentView:
    """The live assignment and the specs it names: the typed client caches this and resolves keys itself."""
    backend = _backend(request)

    def read(conn) -> AssignmentView:
        current = configs_repo.get_assignment(conn, service)
        if current is None:
            raise HTTPException(404, f"service {service!r} has no config assigned; register one first")
        versions = [v for v in (current.active_version, current.canary_version, *current.explore) if v]
        specs = {v: configs_repo.get_version(conn, service, v).spec for v in versions}
        return AssignmentView(assignment=current, specs=specs, ttl_s=backend.settings.server.cache_ttl_s)

    return await backend.run(read)


@router.get("/{service}/history", response_model=History, dependencies=[VIEW])
async def history(request: Request, service: ServicePath) -> History:
    """Every version (oldest first), the live assignment and the latest rollouts (newest first)."""

    def read(conn) -> History:
        return History(
            service=service,
            assignment=configs_repo.get_assignment(conn, service),
            versions=configs_repo.list_versions(conn, service),
            rollouts=audit_repo.list_rollouts(conn, service),
        )

    return await _backend(request).run(read)
