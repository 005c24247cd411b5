"""The FastAPI application: routes, error mapping, metrics, tracing and request ids."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException
from starlette.routing import Route

from .. import __version__
from ..auth import TokenVerifier
from ..core.rate_limits import UserRateLimits
from ..errors import NexusError, RateLimited
from ..observability.metrics import HttpMetrics
from . import agents, approvals, directory, memory, messages, plugins, rooms, skills, tasks
from .deps import ApiContext
from .guard import MCP_PATH, RequestGuard, retry_after_header
from .mcp import McpServer
from .schemas import ErrorBody
from .web import mount_web_app

log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "bad_request: invalid input"),
        (401, "unauthorized: missing or invalid token"),
        (403, "forbidden: the caller's roles do not allow it"),
        (404, "not_found: no such resource in the caller's tenant"),
        (409, "conflict"),
        (413, "too_large"),
        (429, "rate_limited / limit_exceeded"),
        (500, "internal: the server could not do it (e.g. storage failed)"),
        (503, "unavailable: shutting down or overloaded"),
    )
}
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "bad_request",
    409: "conflict",
    413: "too_large",
    415: "bad_request",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    detail: dict[str, Any] = {"code": code, "message": message}
    detail.update(extra)
    return JSONResponse({"error": detail}, status_code=status)


def create_api(
    ctx: ApiContext,
    *,
    verifier: TokenVerifier,
    user_limits: UserRateLimits,
    on_auth_failure: Callable[[str], None],
    registry: CollectorRegistry,
    http_metrics: HttpMetrics,
    mcp: McpServer | None = None,
    ws_port: Callable[[], int] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Nexus HTTP API",
        version=__version__,
        description="Rooms, members, messages, presence, directory and admin. "
        "Errors are `{error: {code, message}}` with the WebSocket "
        "protocol's codes.",
    )
    app.state.ctx = ctx
    for r in (rooms.router, messages.router, directory.router, agents.router):
        app.include_router(r, responses=ERROR_RESPONSES)
    app.include_router(tasks.router, responses=ERROR_RESPONSES)
    app.include_router(memory.router, responses=ERROR_RESPONSES)
    app.include_router(plugins.router, responses=ERROR_RESPONSES)
    app.include_router(skills.router, responses=ERROR_RESPONSES)
    if mcp is not None:
        # An ASGI endpoint (the SDK's Streamable HTTP transports), behind the same guard.
        app.router.routes.append(
            Route(MCP_PATH, endpoint=mcp, methods=["GET", "POST", "DELETE"], name="mcp")
        )
    app.include_router(approvals.router, responses=ERROR_RESPONSES)
    # The web app (static files, no token needed to load them) and where it connects.
    mount_web_app(app, ws_port=ws_port or (lambda: ctx.settings.port))
    # Added before the observing middleware below, so it runs inside it (its refusals are
    # counted and traced like any response).
    app.add_middleware(
        RequestGuard,
        max_body=ctx.settings.http_max_body_bytes,
        upload_max_body=max(
            ctx.settings.plugin_module_max_bytes * 4 // 3 + 256 * 1024,
            ctx.settings.skill_archive_max_bytes,
        ),
        verifier=verifier,
        user_limits=user_limits,
        on_auth_failure=on_auth_failure,
    )

    @app.exception_handler(NexusError)
    async def nexus_error(_: Request, exc: NexusError) -> JSONResponse:
        response = error_response(exc.http_status, exc.code, exc.message, **exc.details())
        if isinstance(exc, RateLimited):
            name, value = retry_after_header(exc)
            response.headers[name.decode()] = value.decode()
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, "bad_request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(
            exc.status_code, HTTP_CODES.get(exc.status_code, "bad_request"), str(exc.detail)
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in HTTP request")
        return error_response(500, "internal", "internal error")

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id", "")[:64] or secrets.token_hex(8)
        started = time.perf_counter()
        with ctx.tracer.start_as_current_span(
            f"HTTP {request.method}",
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": request.method, "nexus.request_id": request_id},
        ) as span:
            response = await call_next(request)
            route = getattr(request.scope.get("route"), "path", None) or (
                MCP_PATH if request.url.path == MCP_PATH else "unmatched"
            )
            span.update_name(f"HTTP {request.method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", response.status_code)
        http_metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        response.headers["x-request-id"] = request_id
        log.debug(
            "%s %s -> %d in %.1f ms",
            request.method,
            route,
            response.status_code,
            (time.perf_counter() - started) * 1000,
            extra={"request_id": request_id},
        )
        return response

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> JSONResponse:
        status, body = ctx.health.live()
        return JSONResponse(body, status_code=status)

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Readiness (503 while draining)",
        responses={503: {"description": "draining"}},
    )
    async def readyz() -> JSONResponse:
        status, body = ctx.health.ready()
        return JSONResponse(body, status_code=status)

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={401: {"model": ErrorBody}},
    )
    async def metrics(request: Request) -> Response:
        token = ctx.settings.metrics_token
        if token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return error_response(401, "unauthorized", "metrics need the metrics token")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            # Validation failures answer 400 with the common error body, not FastAPI's 422.
            for path in schema.get("paths", {}).values():
                for op in path.values():
                    op.get("responses", {}).pop("422", None)
            schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
            schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
