"""Rooms, their members and presence."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from ..core.rooms import Room as RoomState
from ..errors import TooLarge
from .deps import ApiContext, Caller, Ctx, json_size, visible_room
from .schemas import (
    ROOM_NAME,
    USER_ID,
    Member,
    MemberList,
    MemberPut,
    Presence,
    Room,
    RoomCreate,
    RoomList,
    RoomUpdate,
)

router = APIRouter(prefix="/v1/rooms", tags=["rooms"])
RoomName = Annotated[str, Path(pattern=ROOM_NAME)]
UserId = Annotated[str, Path(pattern=USER_ID)]
Limit = Annotated[int, Query(ge=1, le=100)]
RoomCursor = Annotated[str | None, Query(pattern=ROOM_NAME, description="a room name")]
UserCursor = Annotated[str | None, Query(pattern=USER_ID, description="a user id")]
MAX_METADATA_BYTES = 4096


def room_view(ctx: ApiContext, room: RoomState) -> Room:
    meta = room.meta
    return Room(
        name=room.name,
        tenant=room.tenant,
        created_by=meta["created_by"],
        created_at=meta["created_at"],
        topic=meta.get("topic"),
        metadata=meta.get("metadata") or {},
        private=bool(meta.get("private")),
        archived=meta.get("archived"),
        retention=meta.get("retention"),
        seq=room.delivered,
        first_seq=ctx.store.first_seq(room.key),
        online=len(room.presence),
    )


def _check_metadata(metadata: dict[str, Any] | None) -> None:
    if metadata is not None and json_size(metadata, "metadata") > MAX_METADATA_BYTES:
        raise TooLarge(f"metadata exceeds {MAX_METADATA_BYTES} bytes")


@router.get("", response_model=RoomList, summary="List the tenant's rooms")
async def list_rooms(
    ctx: Ctx, who: Caller, limit: Limit = 50, cursor: RoomCursor = None
) -> RoomList:
    rows = ctx.store.list_rooms(who.tenant, cursor, limit + 1)
    rooms = []
    for meta in rows[:limit]:
        room = ctx.rooms.find(who.tenant, meta["name"])
        if room is not None and ctx.access.may_see(who, room):
            rooms.append(room_view(ctx, room))
    more = len(rows) > limit
    return RoomList(rooms=rooms, next_cursor=rows[limit - 1]["name"] if more else None)


@router.post("", response_model=Room, status_code=201, summary="Create a room")
async def create_room(ctx: Ctx, who: Caller, body: RoomCreate) -> Room:
    _check_metadata(body.metadata)
    room = await ctx.room_admin.create(
        who,
        body.name,
        topic=body.topic,
        metadata=body.metadata,
        private=body.private,
        retention=body.retention.model_dump() if body.retention else None,
    )
    return room_view(ctx, room)


@router.get("/{room}", response_model=Room, summary="Get a room")
async def get_room(ctx: Ctx, who: Caller, room: RoomName) -> Room:
    return room_view(ctx, visible_room(ctx, who, room))


@router.patch("/{room}", response_model=Room, summary="Update topic, metadata, privacy, retention")
async def update_room(ctx: Ctx, who: Caller, room: RoomName, body: RoomUpdate) -> Room:
    state = visible_room(ctx, who, room)
    _check_metadata(body.metadata)
    changes = body.model_dump(exclude_unset=True)
    if "retention" in changes and body.retention is not None:
        changes["retention"] = body.retention.model_dump()
    return room_view(ctx, await ctx.room_admin.update(who, state, changes))


@router.delete("/{room}", response_model=Room, summary="Archive a room (read-only from then on)")
async def archive_room(ctx: Ctx, who: Caller, room: RoomName) -> Room:
    state = visible_room(ctx, who, room)
    return room_view(ctx, await ctx.room_admin.archive(who, state))


@router.get("/{room}/members", response_model=MemberList, summary="List members")
async def list_members(
    ctx: Ctx, who: Caller, room: RoomName, limit: Limit = 50, cursor: UserCursor = None
) -> MemberList:
    state = visible_room(ctx, who, room)
    rows = ctx.store.members(state.key, cursor, limit + 1)
    more = len(rows) > limit
    return MemberList(
        members=[Member(**r) for r in rows[:limit]],
        next_cursor=rows[limit - 1]["user_id"] if more else None,
    )


@router.put("/{room}/members/{user_id}", response_model=Member, summary="Add or change a member")
async def put_member(
    ctx: Ctx, who: Caller, room: RoomName, user_id: UserId, body: MemberPut
) -> Member:
    state = visible_room(ctx, who, room)
    return Member(**await ctx.room_admin.put_member(who, state, user_id, body.role))


@router.delete(
    "/{room}/members/{user_id}", status_code=204, response_class=Response, summary="Remove a member"
)
async def delete_member(ctx: Ctx, who: Caller, room: RoomName, user_id: UserId) -> Response:
    state = visible_room(ctx, who, room)
    await ctx.room_admin.remove_member(who, state, user_id)
    return Response(status_code=204)


@router.get("/{room}/presence", response_model=Presence, summary="Who is in the room now")
async def presence(ctx: Ctx, who: Caller, room: RoomName) -> Presence:
    state = visible_room(ctx, who, room)
    return Presence.model_validate({"room": state.name, "members": state.members()})
