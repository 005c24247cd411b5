"""Room messages over HTTP: paged history, one entry, and writes that go through the same
pipeline as gateway sends (sequenced, committed, fanned out to WebSocket members)."""

from __future__ import annotations

import re
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query

from ..errors import BadRequest, TooLarge
from ..protocol import MessageDelete as DeleteReq
from ..protocol import MessageEdit as EditReq
from ..protocol import MessageSend
from ..protocol.decoder import ID_MAX_BYTES
from .deps import ApiContext, Caller, Ctx, http_reply, json_size, visible_room
from .schemas import (
    ROOM_NAME,
    Entry,
    EntryPage,
    MessageDelete,
    MessageEdit,
    MessagePost,
    WriteAck,
)

router = APIRouter(prefix="/v1/rooms/{room}/messages", tags=["messages"])
RoomName = Annotated[str, Path(pattern=ROOM_NAME)]
MessageId = Annotated[str, Path(min_length=1, max_length=ID_MAX_BYTES)]
CURSOR = re.compile(r"[ab][0-9]{1,19}")  # ASCII digits only: "b²" is not a cursor


def _parse_cursor(cursor: str | None) -> tuple[str, int] | None:
    """Cursors are ``b<seq>`` (older than seq) or ``a<seq>`` (newer than seq)."""
    if cursor is None:
        return None
    if not CURSOR.fullmatch(cursor):
        raise BadRequest("cursor must be b<seq> or a<seq>")
    return cursor[0], int(cursor[1:])


def _check_sizes(ctx: ApiContext, body: str | None, meta: dict[str, object] | None) -> None:
    s = ctx.settings
    if body is not None:
        json_size(body, "body")  # refuses lone surrogates before they reach the log
        if len(body.encode("utf-8")) > s.max_body_bytes:
            raise TooLarge(f"body exceeds {s.max_body_bytes} bytes")
    if meta is not None and json_size(meta, "meta") > s.max_meta_bytes:
        raise TooLarge(f"meta exceeds {s.max_meta_bytes} bytes")


def _ack(event: dict[str, object]) -> WriteAck:
    return WriteAck.model_validate(
        {k: event[k] for k in ("room", "seq", "message_id", "client_msg_id", "duplicate")}
    )


@router.get(
    "",
    response_model=EntryPage,
    response_model_exclude_unset=True,
    summary="Page through the room log",
)
async def list_messages(
    ctx: Ctx,
    who: Caller,
    room: RoomName,
    limit: Annotated[int, Query(ge=1, description="lowered to history_max_limit")] = 50,
    cursor: Annotated[str | None, Query(max_length=20, description="b<seq> or a<seq>")] = None,
) -> EntryPage:
    state = visible_room(ctx, who, room)
    limit = min(limit, ctx.settings.history_max_limit)
    parsed = _parse_cursor(cursor)
    if parsed is not None and parsed[0] == "a":
        records, more = ctx.writes.history(state, after=parsed[1], limit=limit)
    else:
        before = parsed[1] if parsed is not None else None
        records, more = ctx.writes.history(state, before=before, limit=limit)
    entries = [orjson.loads(r) for r in records]
    nxt = None
    if more and entries:
        nxt = (
            f"a{entries[-1]['seq']}"
            if parsed is not None and parsed[0] == "a"
            else f"b{entries[0]['seq']}"
        )
    return EntryPage(
        messages=[Entry.model_validate(e) for e in entries], has_more=more, next_cursor=nxt
    )


@router.get(
    "/{message_id}",
    response_model=Entry,
    response_model_exclude_unset=True,
    summary="Get one entry by id",
)
async def get_message(ctx: Ctx, who: Caller, room: RoomName, message_id: MessageId) -> Entry:
    state = visible_room(ctx, who, room)
    _, record = ctx.writes.find(state, message_id)
    return Entry.model_validate(record)


@router.post(
    "",
    response_model=WriteAck,
    status_code=201,
    summary="Post a message as the caller (acknowledged once durable)",
)
async def post_message(ctx: Ctx, who: Caller, room: RoomName, body: MessagePost) -> WriteAck:
    state = visible_room(ctx, who, room)
    with ctx.tracer.start_as_current_span("nexus.pipeline.validate"):
        _check_sizes(ctx, body.body, body.meta)
        reply = http_reply(who)
        ctx.writes.post(
            reply,
            state,
            MessageSend(
                None,
                room,
                body.body,
                client_msg_id=body.client_msg_id,
                reply_to=body.reply_to,
                meta=body.meta,
            ),
        )
    return _ack(await reply.result())


@router.patch("/{message_id}", response_model=WriteAck, summary="Edit a message")
async def edit_message(
    ctx: Ctx, who: Caller, room: RoomName, message_id: MessageId, body: MessageEdit
) -> WriteAck:
    state = visible_room(ctx, who, room)
    _check_sizes(ctx, body.body, None)
    reply = http_reply(who)
    ctx.writes.edit(reply, state, EditReq(None, room, message_id, body.body, body.client_msg_id))
    return _ack(await reply.result())


@router.delete("/{message_id}", response_model=WriteAck, summary="Delete a message")
async def delete_message(
    ctx: Ctx, who: Caller, room: RoomName, message_id: MessageId, body: MessageDelete | None = None
) -> WriteAck:
    state = visible_room(ctx, who, room)
    reply = http_reply(who)
    ctx.writes.delete(
        reply, state, DeleteReq(None, room, message_id, body.client_msg_id if body else None)
    )
    return _ack(await reply.result())
