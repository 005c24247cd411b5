"""Subscriptions to room resources, mapped onto the log's seq.

A subscriber is told *that* a room moved (``notifications/resources/updated`` with the
room's newest seq in ``_meta["nexus/head_seq"]``), once per commit batch; it then reads
``nexus://rooms/{room}/messages?after_seq=<the last seq it has>``. The log is the
source, so a subscriber that was away resumes from its seq with no gap and no duplicate.
A subscription whose URI carries ``?after_seq=N`` is told at once if the room is already
past N.

Both protocol revisions: ``subscriptions/listen`` (2026-07-28: the request's response is
the stream) and ``resources/subscribe`` (2025-11-25: notifications ride the session's
standalone stream, until ``resources/unsubscribe`` or the session ends).

Only URIs the caller may read are honored (a room it may not see is left out of the
listen acknowledgment, and refused by ``resources/subscribe``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    EmptyResult,
    ResourceUpdatedNotification,
    ResourceUpdatedNotificationParams,
    SubscribeRequestParams,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from ...auth import Principal
from ...errors import NexusError
from ..deps import ApiContext, visible_room
from . import resources
from .identity import principal_of

log = logging.getLogger(__name__)

HEAD_KEY = "nexus/head_seq"
Tapper = Callable[[str, Callable[[str, int], None]], Callable[[], None]]


class RoomWatch:
    def __init__(
        self,
        api: ApiContext,
        tap: Tapper,
        *,
        max_streams: int = 1024,
        max_uris: int = 64,
        backlog: int = 256,
    ) -> None:
        self._api = api
        self._tap = tap
        self._max_streams = max_streams
        self._max_uris = max_uris  # per listen stream / per session
        self._backlog = backlog
        self._streams: set[MemoryObjectSendStream[tuple[str, int]]] = set()
        # handshake sessions: id(connection) -> uri -> untap
        self._sessions: dict[int, dict[str, Callable[[], None]]] = {}

    # -- what a URI watches ----------------------------------------------------------
    def _room_of(self, who: Principal, uri: str) -> tuple[str, int | None]:
        """(room key, after_seq) of a watchable URI the caller may read; NexusError else."""
        target = resources.parse(uri)
        if target.kind not in ("room", "messages"):
            raise MCPError(INVALID_PARAMS, f"only room resources can be watched, not {uri[:200]}")
        room = visible_room(self._api, who, target.name)
        after = resources.int_param(target.query, "after_seq", 0)
        return room.key, after

    def _head(self, rkey: str) -> int:
        return int(self._api.rooms.head(rkey))

    # -- 2026-07-28: subscriptions/listen ---------------------------------------------
    async def listen(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        sub_id = ctx.request_id
        if sub_id is None:
            raise MCPError(INVALID_REQUEST, "subscriptions/listen requires a request id")
        if len(self._streams) >= self._max_streams:
            raise MCPError(INTERNAL_ERROR, "subscription limit reached")
        who = principal_of(ctx.request)
        asked = list(params.notifications.resource_subscriptions or ())
        if len(asked) > self._max_uris:
            raise MCPError(INVALID_PARAMS, f"at most {self._max_uris} resources per stream")
        watched: dict[str, tuple[str, int | None]] = {}
        for uri in asked:
            try:
                watched[uri] = self._room_of(who, uri)
            except (NexusError, MCPError):
                continue  # not honored: absent from the acknowledgment
        honored = SubscriptionFilter(
            tools_list_changed=True if params.notifications.tools_list_changed else None,
            prompts_list_changed=True if params.notifications.prompts_list_changed else None,
            resources_list_changed=True if params.notifications.resources_list_changed else None,
            resource_subscriptions=list(watched) or None,
        )
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: sub_id}
        send, recv = anyio.create_memory_object_stream[tuple[str, int]](self._backlog)
        pending: dict[str, int] = {}  # uri -> newest head not yet sent (coalesced)

        def moved(uri: str) -> Callable[[str, int], None]:
            def tap(_rkey: str, seq: int) -> None:
                if uri in pending:
                    pending[uri] = seq  # one notification in the backlog per uri
                    return
                pending[uri] = seq
                try:
                    send.send_nowait((uri, seq))
                except anyio.WouldBlock:
                    log.warning("listen stream %r backlog full; ending it", sub_id)
                    self._streams.discard(send)
                    send.close()
                except anyio.ClosedResourceError:
                    pass

            return tap

        # Tapped before the acknowledgment: a commit while it is written is not lost.
        untaps = [self._tap(rkey, moved(uri)) for uri, (rkey, _) in watched.items()]
        self._streams.add(send)
        try:
            await ctx.session.send_notification(
                SubscriptionsAcknowledgedNotification(
                    params=SubscriptionsAcknowledgedNotificationParams(
                        notifications=honored, _meta=meta
                    )
                ),
                related_request_id=sub_id,
            )
            for uri, (rkey, after) in watched.items():
                head = self._head(rkey)
                if after is not None and head > after and uri not in pending:
                    moved(uri)(rkey, head)  # already past the subscriber's seq
            async for uri, _ in recv:
                seq = pending.pop(uri, 0)
                await ctx.session.send_notification(
                    ResourceUpdatedNotification(
                        params=ResourceUpdatedNotificationParams(
                            uri=uri, _meta={**meta, HEAD_KEY: seq}
                        )
                    ),
                    related_request_id=sub_id,
                )
        finally:
            for untap in untaps:
                untap()
            self._streams.discard(send)
            send.close()
            recv.close()
        return SubscriptionsListenResult(_meta=meta)

    def close(self) -> None:
        """End every listen stream gracefully (shutdown)."""
        for stream in list(self._streams):
            stream.close()
        for subs in list(self._sessions.values()):
            for untap in list(subs.values()):
                untap()
        self._sessions.clear()

    # -- 2025-11-25: resources/subscribe ----------------------------------------------
    async def subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        who = principal_of(ctx.request)
        uri = str(params.uri)
        try:
            rkey, after = self._room_of(who, uri)
        except NexusError as exc:
            raise MCPError(INVALID_PARAMS, f"{exc.code}: {exc.message}") from None
        session = ctx.session
        connection = session._connection
        subs = self._sessions.get(id(connection))
        if subs is None:
            subs = self._sessions[id(connection)] = {}
            connection.exit_stack.callback(self._forget_session, id(connection))
        if uri in subs:
            return EmptyResult()
        if len(subs) >= self._max_uris:
            raise MCPError(INVALID_PARAMS, f"at most {self._max_uris} subscriptions per session")
        sending: dict[str, Any] = {"task": None, "seq": 0}

        async def notify() -> None:
            while True:
                seq = sending["seq"]
                try:
                    await session.send_notification(
                        ResourceUpdatedNotification(
                            params=ResourceUpdatedNotificationParams(uri=uri, _meta={HEAD_KEY: seq})
                        )
                    )
                except Exception:  # the session is gone: so is the subscription
                    self._drop(id(connection), uri)
                    return
                if sending["seq"] == seq:
                    return

        def tap(_rkey: str, seq: int) -> None:
            sending["seq"] = seq
            task = sending["task"]
            if task is None or task.done():  # else the running send picks the new seq up
                sending["task"] = asyncio.get_running_loop().create_task(notify())

        subs[uri] = self._tap(rkey, tap)
        head = self._head(rkey)
        if after is not None and head > after:
            tap(rkey, head)
        return EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        principal_of(ctx.request)
        self._drop(id(ctx.session._connection), str(params.uri))
        return EmptyResult()

    def _drop(self, connection: int, uri: str) -> None:
        untap = self._sessions.get(connection, {}).pop(uri, None)
        if untap is not None:
            untap()

    def _forget_session(self, connection: int) -> None:
        for untap in self._sessions.pop(connection, {}).values():
            untap()

    def counts(self) -> tuple[int, int]:
        """(listen streams, handshake subscriptions): for the metrics."""
        return len(self._streams), sum(len(s) for s in self._sessions.values())
