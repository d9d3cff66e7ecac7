"""The config registry over HTTP: resolution (sticky per key), the assignment, history, export and import."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.backend import Backend
from api.security import allowed
from llm_optimizer.auth import Permission
from llm_optimizer.configs import ConfigSpec, ConfigVersion
from llm_optimizer.errors import ValidationFailed
from llm_optimizer.resolution import Assignment
from storage import audit_repo, configs_repo
from storage.config_client import ResolvedConfig

router = APIRouter(prefix="/api/v1/config", tags=["config"])
VIEW = allowed(Permission.view_config)


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


@router.get("/export", response_class=PlainTextResponse, dependencies=[VIEW])
async def export(request: Request, service: str | None = Query(default=None, description="one service")) -> str:
    """Every version and the active version of the service (of every service without `service`, one YAML document
    each), as YAML that `POST /import` reads back: the seeds' `curl .../config/export > backup.yaml`."""
    return await _backend(request).run(configs_repo.export_yaml, service)


@router.post("/import", dependencies=[allowed(Permission.modify_config)])
async def import_(request: Request) -> dict:
    """Register the versions of an exported YAML document (idempotent); sets the active version if none is."""
    text = (await request.body()).decode("utf-8", errors="replace")
    try:
        versions = await _backend(request).run(configs_repo.import_yaml, text)
    except ValidationFailed as exc:
        raise HTTPException(422, str(exc)) from None
    return {"imported": [v.version for v in versions]}


@router.get("/{service}", response_model=ResolvedConfig, dependencies=[VIEW])
async def resolve(request: Request, service: str, key: str = Query(min_length=1, max_length=256)) -> ResolvedConfig:
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
async def assignment(request: Request, service: str) -> AssignmentView:
    """The live assignment and the specs it names: the typed client caches this and resolves keys itself."""
    backend = _backend(request)

    def read(conn) -> AssignmentView:
        current = configs_repo.get_assignment(conn, service)
        if current is None:
            raise HTTPException(404, f"service {service!r} has no config assigned; register one first")
        versions = [v for v in (current.active_version, current.canary_version) if v]
        specs = {v: configs_repo.get_version(conn, service, v).spec for v in versions}
        return AssignmentView(assignment=current, specs=specs, ttl_s=backend.settings.server.cache_ttl_s)

    return await backend.run(read)


@router.get("/{service}/history", response_model=History, dependencies=[VIEW])
async def history(request: Request, service: str) -> History:
    """Every version (oldest first), the live assignment and the latest rollouts (newest first)."""

    def read(conn) -> History:
        return History(
            service=service,
            assignment=configs_repo.get_assignment(conn, service),
            versions=configs_repo.list_versions(conn, service),
            rollouts=audit_repo.list_rollouts(conn, service),
        )

    return await _backend(request).run(read)
