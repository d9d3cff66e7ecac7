"""Authentication (API keys), authorization (role permissions), per-key rate limits, the body size limit, the
refusal of NUL characters in URLs, and where an HTTP request's dead letters are positioned."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable

from fastapi import Depends, HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_optimizer.auth import Permission, Principal
from llm_optimizer.errors import BodyTooLarge


def _key_of(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    return request.headers.get("x-api-key") or None


def require(permission: Permission) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller's principal if its key is live, allowed `permission` and within its rate."""

    async def dependency(request: Request) -> Principal:
        key = _key_of(request)
        if key is None:
            raise HTTPException(
                401, "an API key is required (Authorization: Bearer <key> or X-API-Key)", {"WWW-Authenticate": "Bearer"}
            )
        principal = await request.app.state.backend.principal(key)
        if principal is None:
            raise HTTPException(401, "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
        if not principal.may(permission):
            raise HTTPException(403, f"role {principal.role.value!r} lacks the permission {permission.value!r}")
        retry_after = request.app.state.backend.rate_limiter.retry_after(principal)
        if retry_after:
            raise HTTPException(
                429,
                f"rate limit of {principal.rate_limit_per_s:g} requests/s exceeded for key {principal.key_id}",
                {"Retry-After": str(retry_after)},
            )
        request.state.principal = principal
        return principal

    return dependency


def allowed(permission: Permission):
    return Depends(require(permission))


def dead_letter_prefix(key_id: str, idempotency_key: str | None, body: bytes) -> str:
    """Where the dead letters of an event batch go: `http/<key id>/<Idempotency-Key or a fresh id>/<body hash>/`,
    then the index. Scoped by the caller's key, so that another client's Idempotency-Key cannot collide; by the
    body's hash, so that a retry of the same body dead-letters nothing twice while a reused key with a different
    body still writes its dead letters (the positions are unique: a collision would silently drop them)."""
    digest = hashlib.sha256(body).hexdigest()[:16]
    return f"http/{key_id}/{idempotency_key or uuid.uuid4()}/{digest}/"


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, by Content-Length or counted while it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send, int(length))
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, received)

    async def _refuse(self, send: Send, size: int) -> None:
        body = (
            f'{{"detail": "request body of {size} bytes or more is larger than server.max_body_bytes '
            f'({self.max_bytes})"}}'
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class NoNulInUrl:
    """ASGI middleware: 400 for a URL whose path or query holds a NUL character (`%00`). Postgres cannot compare or
    store text with a NUL, so such a name could only end as a database error (a 500) further in."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"")
            for part, value, bad in (
                ("path", scope.get("path", ""), "\x00" in scope.get("path", "")),
                ("query", query.decode("latin-1"), b"%00" in query or b"\x00" in query),
            ):
                if bad:
                    await _problem(send, 400, part, value, "contains a NUL character (%00), which no name may hold")
                    return
        await self.app(scope, receive, send)


async def _problem(send: Send, status: int, field: str, value: str, reason: str) -> None:
    """A refusal in the shape of the API's 422s: `{"detail": [{"field", "value", "reason"}]}`."""
    shown = value if len(value) <= 200 else value[:197] + "..."
    body = json.dumps({"detail": [{"field": field, "value": shown, "reason": reason}]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
