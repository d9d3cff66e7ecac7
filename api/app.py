"""The HTTP API application (FastAPI). `python -m api` serves it with uvicorn; the OpenAPI document is at
`/openapi.json` and the interactive reference at `/docs`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram

from api.backend import Backend
from api.routes import config, control, health, ingest
from api.security import BodyLimit, NoNulInUrl
from llm_optimizer.settings import Settings

REQUESTS = Counter("optimizer_api_requests_total", "HTTP API requests", ["route", "status"])
LATENCY = Histogram(
    "optimizer_api_request_seconds",
    "HTTP API request latency",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backend.open()
        try:
            yield
        finally:
            app.state.backend.close()

    app = FastAPI(
        title="llm-auto-optimizer",
        summary="Config resolution, event ingestion (JSON and OTLP) and control of the optimization loop.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.backend = Backend(settings)
    for router in (health.router, ingest.router, config.router, control.router):
        app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(NoNulInUrl)  # added last, so it runs first: before the body is read or a key looked up

    @app.middleware("http")
    async def measure(request: Request, call_next) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = route.path if route is not None else "unmatched"  # the template: bounded label cardinality
        REQUESTS.labels(path, str(response.status_code)).inc()
        LATENCY.labels(path).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the value, as everywhere else in the product.
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "value": e.get("input"), "reason": e["msg"]}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": problems}, status_code=422)

    return app
