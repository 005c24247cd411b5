"""Approvals: a room member lets a destructive action of an agent run, or stops it.

The agent's side writes a ``tool.approval`` entry into the room and waits; a member decides
with a request (WebSocket ``tool.approve``, HTTP ``POST /v1/rooms/{room}/approvals/{id}``);
the decision is a ``tool.approval.decided`` entry written through the pipeline as the
decider, and only once it is committed does the waiting call go on. No decision within
the timeout: the wait ends denied, with a ``tool.approval.decided`` entry saying
``expired``. Pending approvals live in memory only: they belong to a turn in progress,
which a restart ends anyway.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ..auth import Principal
from ..errors import Conflict, Forbidden, NexusError, NotFound, Unavailable, error_for
from .access import AccessRules, MemberSource
from .caller import OneWrite
from .rooms import Room
from .writes import RoomWrites

log = logging.getLogger(__name__)

REQUESTED = "tool.approval"
DECIDED = "tool.approval.decided"
WRITE_TIMEOUT_S = 10.0
DONE_KEPT = 4096  # decided approvals remembered, so a late decision gets conflict


@dataclass(frozen=True, slots=True)
class Decision:
    approved: bool
    by: str | None  # the deciding member; None when it expired or was withdrawn
    reason: str  # approved | denied | expired | cancelled


@dataclass(slots=True)
class _Pending:
    room_key: str
    future: asyncio.Future[Decision] = field(repr=False)
    deciding: bool = False


class Approvals:
    """The approvals waiting in every room, and the one rule for who may decide them."""

    def __init__(
        self,
        writes: RoomWrites,
        access: AccessRules,
        members: MemberSource,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._writes = writes
        self._access = access
        self._members = members
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._done: OrderedDict[str, tuple[str, str]] = OrderedDict()  # id -> (room key, why)
        self._background: set[asyncio.Task[None]] = set()

    async def ask(
        self, agent: Principal, room: Room, fields: dict[str, Any], timeout: float
    ) -> Decision:
        """Write a ``tool.approval`` entry (``fields`` plus ``approval_id`` and
        ``expires_at``) as ``agent`` and wait up to ``timeout`` seconds for a decision.

        Raises the NexusError of a refused write (e.g. an archived room). Cancelling the
        wait withdraws the approval (a ``cancelled`` decision entry is written)."""
        approval_id = "ap_" + secrets.token_hex(10)
        expires_at = int((self._clock() + timeout) * 1000)
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        pending = _Pending(room.key, future)
        self._pending[approval_id] = pending
        try:
            await self._write(
                agent,
                room,
                REQUESTED,
                {**fields, "approval_id": approval_id, "expires_at": expires_at},
            )
            done, _ = await asyncio.wait({future}, timeout=timeout)
            if not done and pending.deciding:
                # A member's decision is being committed right now: it wins over expiry.
                await asyncio.wait({future}, timeout=WRITE_TIMEOUT_S)
            if future.done():
                return future.result()
            self._close(approval_id, "expired")
            await self._decided_by_nobody(agent, room, approval_id, "expired")
            return Decision(False, None, "expired")
        except asyncio.CancelledError:
            if self._close(approval_id, "cancelled"):
                self._later(self._decided_by_nobody(agent, room, approval_id, "cancelled"))
            raise
        except BaseException:
            self._close(approval_id, "failed")
            raise

    async def decide(
        self, who: Principal, room: Room, approval_id: str, approve: bool
    ) -> dict[str, Any]:
        """Decide approval ``approval_id`` of ``room`` for ``who``; the committed decision
        entry's fields and seq.

        Raises NotFound (no such approval waits in this room), Forbidden (not a member of
        the room, or an agent), Conflict (decided, expired or being decided already)."""
        pending = self._pending.get(approval_id)
        if pending is None or pending.room_key != room.key:
            done = self._done.get(approval_id)
            if done is not None and done[0] == room.key:
                raise Conflict(f"approval {approval_id} is closed already ({done[1]})")
            raise NotFound(f"no approval {approval_id[:64]} waits in room {room.name}")
        if who.kind == "agent":
            raise Forbidden("an agent cannot decide approvals")
        if self._members.member(room.key, who.user_id) is None and not self._access.is_room_admin(
            who, room
        ):
            raise Forbidden(f"only the members of room {room.name} may decide its approvals")
        if pending.deciding:
            raise Conflict(f"approval {approval_id} is being decided")
        pending.deciding = True
        reason = "approved" if approve else "denied"
        fields = {"approval_id": approval_id, "approved": approve, "by": who.user_id}
        fields["reason"] = reason
        try:
            ack = await self._write(who, room, DECIDED, fields)
        except BaseException:
            pending.deciding = False
            raise
        if self._close(approval_id, reason) and not pending.future.done():
            pending.future.set_result(Decision(approve, who.user_id, reason))
        return {**fields, "room": room.name, "seq": ack.get("seq")}

    # -- internals --------------------------------------------------------------------
    def _close(self, approval_id: str, why: str) -> bool:
        """Forget a pending approval (remembering why); False if it was not pending."""
        pending = self._pending.pop(approval_id, None)
        if pending is None:
            return False
        self._done[approval_id] = (pending.room_key, why)
        while len(self._done) > DONE_KEPT:
            self._done.popitem(last=False)
        return True

    async def _write(
        self, who: Principal, room: Room, kind: str, fields: dict[str, Any]
    ) -> dict[str, Any]:
        reply = OneWrite(who, WRITE_TIMEOUT_S, f"the {kind} entry")
        self._writes.append(reply, room, kind, fields, rid=kind)
        # asyncio.wait, not wait_for: on Python 3.11 wait_for swallows a cancel that comes
        # as the ack does, and a cancelled turn would then wait for its approval anyway.
        done, _ = await asyncio.wait({reply.future}, timeout=WRITE_TIMEOUT_S)
        if not done:
            raise Unavailable(f"the {kind} entry was not committed in time")
        event = reply.future.result()
        if event.get("type") == "error":
            raise error_for(event.get("code", "internal"), event.get("message", ""))
        return event

    async def _decided_by_nobody(
        self, agent: Principal, room: Room, approval_id: str, why: str
    ) -> None:
        fields = {"approval_id": approval_id, "approved": False, "by": None, "reason": why}
        try:
            await self._write(agent, room, DECIDED, fields)
        except NexusError as exc:
            log.warning("approval %s closed (%s) without its entry: %s", approval_id, why, exc)

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
