"""What every route needs: the shared objects, the caller's principal, tenant-scoped rooms."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

import orjson
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry.trace import NoOpTracer, Tracer

from ..auth import Principal
from ..config import Settings
from ..core.access import AccessRules
from ..core.agent_control import AgentControl
from ..core.agents import AgentRegistry
from ..core.approvals import Approvals
from ..core.caller import OneWrite
from ..core.directory import UserDirectory
from ..core.memory import Memory
from ..core.plugin_control import PluginControl
from ..core.room_admin import RoomAdmin
from ..core.rooms import Room, RoomDirectory
from ..core.sessions import LiveSessions
from ..core.skill_control import SkillControl
from ..core.tasks.service import TaskService
from ..core.writes import RoomWrites
from ..errors import BadRequest, Unauthorized
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
    skills: SkillControl | None = None
    approvals: Approvals | None = None  # agents' destructive tool calls waiting for a member


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


def http_reply(who: Principal) -> OneWrite:
    """The caller of one HTTP write: the pipeline's ack or error resolves ``result()``."""
    return OneWrite(who, WRITE_TIMEOUT_S)
