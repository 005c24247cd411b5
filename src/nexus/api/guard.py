"""The HTTP API's front door (ASGI): authenticate, rate-limit and bound bodies before reading.

FastAPI reads a request body before it resolves dependencies, so a route's own auth
check comes after an attacker's 200 MB upload has been buffered. This layer runs first:

- a ``Content-Length`` above ``http_max_body_bytes`` is answered 413 at once; a chunked
  body is read only up to that many bytes (413 past it), then replayed to the app;
- ``/v1/`` and ``/mcp`` requests must carry a valid bearer token (401 otherwise) before
  any body byte is read; the principal is handed to the routes in ``scope["state"]``;
- writes (POST, PUT, PATCH, DELETE under ``/v1/``, and every MCP message: a POST to
  ``/mcp``) draw from the same per-user bucket as the user's WebSocket requests (429 with
  ``Retry-After``).

Errors are the API's usual ``{"error": {"code", "message"}}`` bodies.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from ..auth import Principal, TokenVerifier
from ..core.rate_limits import UserRateLimits
from ..errors import BadRequest, NexusError, RateLimited, TooLarge, Unauthorized

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PRINCIPAL_KEY = "nexus.principal"
# PUT under these carries a plugin module or a skill archive: their own body cap
UPLOAD_PREFIXES = ("/v1/plugins/", "/v1/skills/")
MCP_PATH = "/mcp"


async def send_error(
    send: Send, exc: NexusError, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    detail: dict[str, Any] = {"code": exc.code, "message": exc.message}
    detail.update(exc.details())
    body = orjson.dumps({"error": detail})
    await send(
        {
            "type": "http.response.start",
            "status": exc.http_status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def retry_after_header(exc: RateLimited) -> tuple[bytes, bytes]:
    return b"retry-after", str(max(1, math.ceil(exc.retry_after_ms / 1000))).encode()


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        upload_max_body: int = 0,
        verifier: TokenVerifier,
        user_limits: UserRateLimits,
        on_auth_failure: Callable[[str], None],
    ) -> None:
        self._app = app
        self._max_body = max_body
        # Plugin installs carry a module (base64), skill installs an archive: PUT
        # /v1/plugins/... and /v1/skills/... get their own cap (each route checks its own).
        self._upload_max = max(upload_max_body, max_body)
        self._verifier = verifier
        self._limits = user_limits
        self._on_auth_failure = on_auth_failure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        try:
            length = self._content_length(scope)
            path = scope["path"]
            if path.startswith("/v1/") or path == MCP_PATH:
                who = self._authenticate(scope)
                scope.setdefault("state", {})[PRINCIPAL_KEY] = who
                if scope["method"] in WRITE_METHODS:
                    self._limits.take((who.tenant, who.user_id))
            limit = self._max_body
            if scope["method"] == "PUT" and scope["path"].startswith(UPLOAD_PREFIXES):
                limit = self._upload_max
            if length is not None and length > limit:
                raise TooLarge(f"request body exceeds {limit} bytes")
            body = await self._read_body(receive, limit) if length != 0 else b""
        except RateLimited as exc:
            await send_error(send, exc, [retry_after_header(exc)])
            return
        except NexusError as exc:
            headers = [(b"www-authenticate", b"Bearer")] if exc.http_status == 401 else None
            await send_error(send, exc, headers)
            return
        if body is None:
            return  # the client went away while sending its body
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # the disconnect, when it comes

        await self._app(scope, replay, send)

    @staticmethod
    def _content_length(scope: Scope) -> int | None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():  # bytes.isdigit: ASCII digits only
                    raise BadRequest("Content-Length is not a byte count")
                return int(value[:19])  # 19+ digits is more than any limit anyway
        return None

    def _authenticate(self, scope: Scope) -> Principal:
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.decode("latin-1").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("missing bearer token")
            return self._verifier.verify(token.strip())
        except NexusError as exc:
            self._on_auth_failure(exc.message)
            raise

    async def _read_body(self, receive: Receive, limit: int) -> bytes | None:
        """The whole body (at most ``max_body`` bytes), or None if the client went away."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"request body exceeds {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)
