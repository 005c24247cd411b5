"""The tenant's user/agent directory, live connections (admin) and server info."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from .. import __version__
from ..errors import CloseCode, NotFound
from .deps import Caller, Ctx, require_admin
from .schemas import USER_ID, ConnectionInfo, ConnectionList, ServerInfo, User, UserList

router = APIRouter(prefix="/v1", tags=["directory", "admin"])


@router.get("/users", response_model=UserList, summary="Users and agents of the tenant")
async def list_users(ctx: Ctx, who: Caller, limit: Annotated[int, Query(ge=1, le=100)] = 50,
                     cursor: Annotated[str | None, Query(pattern=USER_ID)] = None) -> UserList:
    rows = ctx.store.users(who.tenant, cursor, limit + 1)
    online = {s.principal.user_id for s in ctx.node.sessions.values()
              if s.principal is not None and s.principal.tenant == who.tenant}
    users = [User(online=r["user_id"] in online, **r) for r in rows[:limit]]
    return UserList(users=users,
                    next_cursor=rows[limit - 1]["user_id"] if len(rows) > limit else None)


@router.get("/admin/connections", response_model=ConnectionList,
            summary="Live WebSocket sessions of the tenant (admin)")
async def list_connections(ctx: Ctx, who: Caller) -> ConnectionList:
    require_admin(who)
    out = []
    for s in ctx.node.sessions.values():
        p = s.principal
        if p is not None and p.tenant == who.tenant:
            out.append(ConnectionInfo(session_id=s.session_id, user_id=p.user_id, kind=p.kind,
                                      remote=s.remote, rooms=sorted(s.rooms)))
    return ConnectionList(connections=out)


@router.delete("/admin/connections/{session_id}", status_code=204, response_class=Response,
               summary="Disconnect a session (close code 4502, admin)")
async def disconnect(ctx: Ctx, who: Caller,
                     session_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]) -> Response:
    require_admin(who)
    session = ctx.node.sessions.get(session_id)
    if session is None or session.principal is None or session.principal.tenant != who.tenant:
        raise NotFound(f"no session {session_id}")
    ctx.gateway.stats.forced_disconnects += 1
    session.outbox.owner.close(CloseCode.FORCED, "disconnected by an administrator")
    return Response(status_code=204)


@router.get("/server", response_model=ServerInfo, summary="Version, uptime, settings (admin)")
async def server_info(ctx: Ctx, who: Caller) -> ServerInfo:
    require_admin(who)
    return ServerInfo(version=__version__, started_at=int(ctx.started_at * 1000),
                      uptime_s=time.time() - ctx.started_at,
                      connections=len(ctx.gateway.connections),
                      rooms_loaded=len(ctx.rooms), config=ctx.settings.summary())


