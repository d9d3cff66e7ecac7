"""Authentication (API keys), authorization (role permissions), per-key rate limits and the body size limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_optimizer.auth import Permission, Principal


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


class BodyTooLarge(Exception):
    pass


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
