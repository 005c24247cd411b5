"""The tenant's user/agent directory, live connections (admin) and server info."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from .. import __version__
from ..errors import CloseCode, NotFound
from .deps import Caller, Ctx
from .schemas import USER_ID, ConnectionInfo, ConnectionList, ServerInfo, User, UserList

router = APIRouter(prefix="/v1", tags=["directory", "admin"])


@router.get("/users", response_model=UserList, summary="Users and agents of the tenant")
async def list_users(
    ctx: Ctx,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(pattern=USER_ID)] = None,
) -> UserList:
    rows = ctx.store.users(who.tenant, cursor, limit + 1)
    online = ctx.sessions.online_users(who.tenant)
    users = [User(online=r["user_id"] in online, **r) for r in rows[:limit]]
    return UserList(
        users=users, next_cursor=rows[limit - 1]["user_id"] if len(rows) > limit else None
    )


@router.get(
    "/admin/connections",
    response_model=ConnectionList,
    summary="Live WebSocket sessions of the tenant (admin)",
)
async def list_connections(ctx: Ctx, who: Caller) -> ConnectionList:
    ctx.access.require_tenant_admin(who)
    return ConnectionList(
        connections=[
            ConnectionInfo(
                session_id=s.session_id,
                user_id=s.user_id,
                kind=s.kind,  # type: ignore[arg-type]
                remote=s.remote,
                rooms=list(s.rooms),
            )
            for s in ctx.sessions.sessions_of(who.tenant)
        ]
    )


@router.delete(
    "/admin/connections/{session_id}",
    status_code=204,
    response_class=Response,
    summary="Disconnect a session (close code 4502, admin)",
)
async def disconnect(
    ctx: Ctx, who: Caller, session_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]
) -> Response:
    ctx.access.require_tenant_admin(who)
    if not ctx.sessions.disconnect(
        who.tenant, session_id, CloseCode.FORCED, "disconnected by an administrator"
    ):
        raise NotFound(f"no session {session_id}")
    return Response(status_code=204)


@router.get("/server", response_model=ServerInfo, summary="Version, uptime, settings (admin)")
async def server_info(ctx: Ctx, who: Caller) -> ServerInfo:
    ctx.access.require_tenant_admin(who)
    return ServerInfo(
        version=__version__,
        started_at=int(ctx.started_at * 1000),
        uptime_s=time.time() - ctx.started_at,
        connections=ctx.sessions.connection_count(),
        rooms_loaded=len(ctx.rooms),
        config=ctx.settings.summary(),
    )
