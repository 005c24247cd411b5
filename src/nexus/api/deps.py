"""What every route needs: the shared objects, the caller's principal, tenant-scoped rooms."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry.trace import NoOpTracer, Tracer

from ..auth import Principal, TokenVerifier
from ..config import Settings
from ..core.rooms import Room, RoomDirectory
from ..errors import (
    BadRequest, Forbidden, Internal, NexusError, NotFound, Unauthorized, Unavailable,
)
from ..gateway.node import Node
from ..gateway.server import Gateway
from ..store import LmdbStore
from .guard import PRINCIPAL_KEY

WRITE_TIMEOUT_S = 10.0
bearer = HTTPBearer(auto_error=False, description="A JWT, as for the WebSocket gateway")


@dataclass
class ApiContext:
    settings: Settings
    node: Node
    gateway: Gateway
    verifier: TokenVerifier
    tracer: Tracer = field(default_factory=NoOpTracer)
    started_at: float = field(default_factory=time.time)

    @property
    def store(self) -> LmdbStore:
        return self.node.store

    @property
    def rooms(self) -> RoomDirectory:
        return self.node.rooms


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(context)]


def principal(request: Request, ctx: Ctx,
              creds: Annotated[HTTPAuthorizationCredentials | None,
                               Depends(bearer)]) -> Principal:
    who: Principal | None = request.scope.get("state", {}).get(PRINCIPAL_KEY)
    if who is not None:  # verified by the RequestGuard before the body was read
        ctx.node.note_user(who)
        return who
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        ctx.gateway.stats.auth_failed("missing bearer token")
        raise Unauthorized("missing bearer token")
    try:
        who = ctx.verifier.verify(creds.credentials)
    except NexusError as exc:
        ctx.gateway.stats.auth_failed(exc.message)
        raise
    ctx.node.note_user(who)
    return who


Caller = Annotated[Principal, Depends(principal)]


def require_admin(who: Principal) -> None:
    if "admin" not in who.roles:
        raise Forbidden("requires the admin role")


def visible_room(ctx: ApiContext, who: Principal, name: str) -> Room:
    """The caller's tenant's room ``name`` if the caller may see it, else NotFound."""
    room = ctx.rooms.find(who.tenant, name)
    if room is None or not ctx.node.may_see(who, room):
        raise NotFound(f"no room {name}")
    return room


def json_size(value: object, what: str) -> int:
    """Encoded size of a client-given JSON value; BadRequest if it cannot be stored as JSON
    (integers beyond 64 bits, lone surrogates)."""
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError as exc:
        raise BadRequest(f"{what} is not storable JSON: {exc}") from None


class HttpReply:
    """Receives the pipeline's answer (ack or error) for one HTTP write."""

    def __init__(self, who: Principal) -> None:
        self._principal = who
        self.future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    @property
    def principal(self) -> Principal | None:
        return self._principal

    def send(self, payload: bytes) -> None:
        if not self.future.done():
            self.future.set_result(orjson.loads(payload))

    async def result(self) -> dict[str, Any]:
        try:
            event = await asyncio.wait_for(self.future, WRITE_TIMEOUT_S)
        except TimeoutError:
            raise Unavailable("the write was not committed in time") from None
        if event["type"] == "error":
            raise Internal(event["message"]) if event["code"] == "internal" else \
                NexusError(event["message"])
        return event
