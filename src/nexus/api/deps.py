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

from ..auth import Principal
from ..config import Settings
from ..core.access import AccessRules
from ..core.agent_control import AgentControl
from ..core.agents import AgentRegistry
from ..core.directory import UserDirectory
from ..core.memory import Memory
from ..core.plugin_control import PluginControl
from ..core.room_admin import RoomAdmin
from ..core.rooms import Room, RoomDirectory
from ..core.sessions import LiveSessions
from ..core.tasks.service import TaskService
from ..core.writes import RoomWrites
from ..errors import BadRequest, Unauthorized, Unavailable, error_for
from ..observability.health import Health
from ..store import LmdbStore
from .guard import PRINCIPAL_KEY

WRITE_TIMEOUT_S = 10.0
bearer = HTTPBearer(auto_error=False, description="A JWT, as for the WebSocket gateway")


@dataclass
class ApiContext:
    """The core services the routes use (built in app.py; no gateway internals)."""

    settings: Settings
    store: LmdbStore
    rooms: RoomDirectory
    access: AccessRules
    writes: RoomWrites
    room_admin: RoomAdmin
    directory: UserDirectory
    sessions: LiveSessions
    health: Health
    agents: AgentRegistry
    agent_control: AgentControl
    tracer: Tracer = field(default_factory=NoOpTracer)
    started_at: float = field(default_factory=time.time)
    tasks: TaskService | None = None
    memory: Memory | None = None
    plugins: PluginControl | None = None


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(context)]


def principal(
    request: Request, ctx: Ctx, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    """The caller, verified by the RequestGuard before the body was read."""
    who: Principal | None = request.scope.get("state", {}).get(PRINCIPAL_KEY)
    if who is None:  # only reachable if the guard is not installed in front of the app
        raise Unauthorized("missing bearer token")
    ctx.directory.note(who)
    return who


Caller = Annotated[Principal, Depends(principal)]


def visible_room(ctx: ApiContext, who: Principal, name: str) -> Room:
    """The caller's tenant's room ``name`` if the caller may see it, else NotFound."""
    return ctx.access.require_visible(who, ctx.rooms.find(who.tenant, name), name)


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
            raise error_for(event["code"], event["message"])
        return event
