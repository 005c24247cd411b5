"""Search over room history and memory records over HTTP (docs/memory.md).

Routes are thin: ``core.memory.Memory`` decides visibility and writes the memory events
through the one pipeline as the caller.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from ..core.memory import Memory
from ..errors import NotFound
from ..protocol.decoder import ID_MAX_BYTES, QUERY_MAX_CHARS
from .deps import ApiContext, Caller, Ctx
from .schemas import ROOM_NAME

router = APIRouter(tags=["memory"])
MemoryId = Annotated[str, Path(min_length=1, max_length=ID_MAX_BYTES)]


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    room: str = Field(pattern=ROOM_NAME)
    first_seq: int | None = Field(default=None, ge=0)
    last_seq: int | None = Field(default=None, ge=0)


class MemoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=4096)
    scope: Literal["tenant", "room", "user", "agent"] | None = None
    room: str | None = Field(default=None, pattern=ROOM_NAME, description="scope room")
    agent: str | None = Field(default=None, max_length=128, description="scope agent")
    source: Source | None = None
    valid_from: int | None = Field(default=None, ge=0, le=1 << 53, description="ms since the epoch")
    valid_until: int | None = Field(
        default=None, ge=0, le=1 << 53, description="ms since the epoch"
    )


class MemoryPatch(BaseModel):
    """The fields given replace the superseded record's (null clears valid_until)."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, min_length=1, max_length=4096)
    source: Source | None = None
    valid_from: int | None = Field(default=None, ge=0, le=1 << 53)
    valid_until: int | None = Field(default=None, ge=0, le=1 << 53)


def _memory(ctx: ApiContext) -> Memory:
    if ctx.memory is None:
        raise NotFound("search and memory are not enabled on this server")
    return ctx.memory


@router.get("/v1/search", summary="Search the messages of the rooms the caller may see")
async def search(
    ctx: Ctx,
    who: Caller,
    q: Annotated[str, Query(min_length=1, max_length=QUERY_MAX_CHARS)],
    room: Annotated[str | None, Query(pattern=ROOM_NAME)] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> dict[str, Any]:
    hits = await _memory(ctx).search(who, q, room=room, limit=limit)
    return {"q": q, "hits": hits}


@router.post("/v1/memory", status_code=201, summary="Write a memory record")
async def create_memory(ctx: Ctx, who: Caller, body: MemoryCreate) -> dict[str, Any]:
    return await _memory(ctx).write(who, body.model_dump(exclude_none=True))


@router.get("/v1/memory", summary="List or search the memory records the caller may see")
async def list_memory(
    ctx: Ctx,
    who: Caller,
    q: Annotated[str | None, Query(max_length=QUERY_MAX_CHARS)] = None,
    scope: Annotated[Literal["tenant", "room", "user", "agent"] | None, Query()] = None,
    room: Annotated[str | None, Query(pattern=ROOM_NAME)] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
    history: Annotated[bool, Query(description="superseded and expired records too")] = False,
) -> dict[str, Any]:
    records = await _memory(ctx).find(who, q, scope=scope, room=room, limit=limit, history=history)
    return {"memories": records}


@router.get("/v1/memory/{memory_id}", summary="One memory record")
async def get_memory(ctx: Ctx, who: Caller, memory_id: MemoryId) -> dict[str, Any]:
    return await _memory(ctx).get(who, memory_id)


@router.patch("/v1/memory/{memory_id}", summary="Supersede a memory record with a new one")
async def update_memory(
    ctx: Ctx, who: Caller, memory_id: MemoryId, body: MemoryPatch
) -> dict[str, Any]:
    fields = {k: getattr(body, k) for k in body.model_fields_set}
    if body.source is not None:
        fields["source"] = body.source.model_dump()
    return await _memory(ctx).update(who, memory_id, fields)


@router.delete("/v1/memory/{memory_id}", summary="Forget a memory record")
async def forget_memory(ctx: Ctx, who: Caller, memory_id: MemoryId) -> dict[str, Any]:
    return await _memory(ctx).forget(who, memory_id)
