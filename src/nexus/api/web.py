"""Serves the web app (``nexus.web``'s static files) at ``/app/`` on the HTTP port.

The files are public: the app signs in with a token the user gives it, which it sends in
the WebSocket ``auth`` message and as a bearer token to ``/v1/`` (the request guard
checks only those paths). ``/app/config.json`` tells the page where the gateway listens,
since its port may differ from the one the page came from (and is picked at start when
configured as 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from ..web import STATIC_DIR

APP_PATH = "/app"
# No inline script or style, nothing from other origins; the gateway is another port, so
# WebSocket URLs are allowed by scheme.
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (
        b"content-security-policy",
        b"default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class _StaticRoute:
    """What ``scope["route"]`` holds for a static file, as FastAPI's routes put themselves
    there: the HTTP metrics label it ``/app/{path}`` instead of ``unmatched``."""

    path = f"{APP_PATH}/{{path}}"


class _WithHeaders:
    """Adds the security headers to every response of the wrapped ASGI app."""

    def __init__(self, app: StaticFiles) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = _StaticRoute

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self._app(scope, receive, send_with_headers)


def mount_web_app(app: FastAPI, *, ws_port: Callable[[], int], ws_path: str = "/ws") -> None:
    """Add ``/`` (a redirect), ``/app/config.json`` and the static files under ``/app/``."""

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{APP_PATH}/", status_code=307)

    @app.get(f"{APP_PATH}/config.json", tags=["web"], summary="Where the web app connects")
    async def web_config() -> JSONResponse:
        body: dict[str, Any] = {"ws_port": ws_port(), "ws_path": ws_path}
        return JSONResponse(body, headers={"cache-control": "no-store"})

    static = StaticFiles(directory=STATIC_DIR, html=True)
    app.mount(APP_PATH, _WithHeaders(static), name="web")
