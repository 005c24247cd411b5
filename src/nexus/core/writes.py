"""Room writes and reads shared by every edge: post, edit, delete, extension events, find
and history pages. The WebSocket handlers, the HTTP API and (later) agents, plugins and MCP
call these; none of them talks to the pipeline or the log on its own."""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from ..errors import BadRequest, Conflict, Forbidden, NotFound
from ..protocol import MessageDelete, MessageEdit, MessageSend
from ..protocol.decoder import ID_MAX_BYTES
from ..protocol.requests import RequestId
from ..store.keys import log_prefix
from .access import AccessRules
from .caller import Caller
from .pipeline import DELETED, EDITED, MESSAGE, MessagePipeline, PendingEntry
from .rooms import Room


class LogReader(Protocol):
    def message_location(self, msg_id: str) -> tuple[bytes, int] | None: ...
    def read_record(self, rkey: str, seq: int) -> bytes | None: ...
    def read_range(self, rkey: str, after: int, upto: int, limit: int) -> list[bytes]: ...
    def read_before(self, rkey: str, before: int, limit: int) -> list[bytes]: ...


class RoomWrites:
    def __init__(self, pipeline: MessagePipeline, log: LogReader, access: AccessRules) -> None:
        self._pipeline = pipeline
        self._log = log
        self._access = access

    # -- writes --------------------------------------------------------------
    def persist_room(self, room: Room) -> None:
        """Write a room created by a join with the next commit."""
        self._pipeline.persist_room(room)

    def post(self, caller: Caller, room: Room, req: MessageSend) -> None:
        """Queue a message from ``caller`` into ``room``; the caller gets the ack or error."""
        if (req.client_msg_id is not None or room.meta.get("archived")) and not self._writable(
            caller, room, req.id, req.client_msg_id
        ):
            return
        if req.reply_to is not None:
            where = self._log.message_location(req.reply_to)
            if where is None or where[0] != log_prefix(room.key):
                raise NotFound(f"reply_to: no message {req.reply_to} in room {room.name}")
        principal = caller.principal
        assert principal is not None, "a write needs an authenticated caller"
        self._pipeline.submit(
            PendingEntry(
                caller,
                principal,
                req.id,
                room,
                MESSAGE,
                req.client_msg_id,
                body=req.body,
                meta=req.meta,
                reply_to=req.reply_to,
            )
        )

    def edit(self, caller: Caller, room: Room, req: MessageEdit) -> None:
        self._change(caller, room, req.id, req.message_id, req.client_msg_id, EDITED, req.body)

    def delete(self, caller: Caller, room: Room, req: MessageDelete) -> None:
        self._change(caller, room, req.id, req.message_id, req.client_msg_id, DELETED, None)

    def append(
        self,
        caller: Caller,
        room: Room,
        kind: str,
        fields: dict[str, Any],
        *,
        client_msg_id: str | None = None,
        rid: RequestId = None,
        patch: tuple[int, dict[str, Any]] | None = None,
    ) -> None:
        """Queue an extension's sequenced event (``task.created``, ``tool.call``...).

        ``patch`` = (seq, fields) also sets ``fields`` on the room's earlier entry ``seq``
        in the same commit (a streamed reply's ``message.started`` gets its final text)."""
        if kind in (MESSAGE, EDITED, DELETED):
            raise ValueError(f"{kind} entries are written by post, edit and delete")
        if not self._writable(caller, room, rid, client_msg_id):
            return
        self._pipeline.submit(
            PendingEntry(
                caller,
                _principal(caller),
                rid,
                room,
                kind,
                client_msg_id,
                fields=fields,
                target_seq=patch[0] if patch else 0,
                patch=patch[1] if patch else None,
            )
        )

    def _change(
        self,
        caller: Caller,
        room: Room,
        rid: RequestId,
        message_id: str,
        client_msg_id: str | None,
        kind: str,
        body: str | None,
    ) -> None:
        if not self._writable(caller, room, rid, client_msg_id):
            return
        principal = _principal(caller)
        seq, record = self.find(room, message_id)
        if record.get("type") != MESSAGE:
            raise BadRequest(f"{message_id} is not a message")
        if record.get("deleted"):
            raise Conflict(f"message {message_id} was deleted")
        if not self._access.may_change_message(principal, room, record):
            raise Forbidden("only the sender or a room admin may change this message")
        self._pipeline.submit(
            PendingEntry(
                caller,
                principal,
                rid,
                room,
                kind,
                client_msg_id,
                body=body,
                target_id=message_id,
                target_seq=seq,
            )
        )

    def _writable(
        self, caller: Caller, room: Room, rid: RequestId, client_msg_id: str | None
    ) -> bool:
        """False when this is a resend already answered; Forbidden when the room is archived.

        The resend check comes first: a retry of something that committed gets its ack
        even if the room or the message changed since."""
        if client_msg_id is not None and self._pipeline.answered_duplicate(
            caller, rid, client_msg_id
        ):
            return False
        if room.meta.get("archived"):
            raise Forbidden(f"room {room.name} is archived")
        return True

    # -- reads ---------------------------------------------------------------
    def find(self, room: Room, message_id: str) -> tuple[int, dict[str, Any]]:
        """(seq, current record) of entry ``message_id`` in ``room``, or NotFound."""
        raw = None
        where = None
        if len(message_id.encode("utf-8", "surrogatepass")) <= ID_MAX_BYTES:
            where = self._log.message_location(message_id)
        if where is not None and where[0] == log_prefix(room.key):
            raw = self._log.read_record(room.key, where[1])
        if where is None or raw is None:
            raise NotFound(f"no message {message_id[:64]} in room {room.name}")
        record: dict[str, Any] = orjson.loads(raw)
        return where[1], record

    def history(
        self, room: Room, *, before: int | None = None, after: int | None = None, limit: int
    ) -> tuple[list[bytes], bool]:
        """A page of stored records (ascending) and whether more lie beyond it.

        With ``after``: the oldest ``limit`` entries past it; otherwise the newest ``limit``
        before ``before`` (or the newest of all). Only entries already delivered to members
        are read, so a page never shows what a member has not seen live."""
        top = room.delivered
        if after is not None:
            records = self._log.read_range(room.key, after, top, limit + 1)
            return records[:limit], len(records) > limit
        upto = top + 1 if before is None else min(before, top + 1)
        records = self._log.read_before(room.key, upto, limit + 1)
        more = len(records) > limit
        return (records[-limit:] if more else records), more


def _principal(caller: Caller) -> Any:
    principal = caller.principal
    assert principal is not None, "a write needs an authenticated caller"
    return principal
