"""Approvals over HTTP: a room member lets an agent's destructive tool call run, or not.
The rules live in core/approvals (the WebSocket ``tool.approve`` request uses them too)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel

from ..errors import NotFound
from .deps import Caller, Ctx, visible_room
from .schemas import ROOM_NAME, KeyId, Strict

router = APIRouter(prefix="/v1", tags=["agents"])
RoomName = Annotated[str, Path(pattern=ROOM_NAME)]


class ApprovalDecision(Strict):
    approve: bool


class ApprovalDecided(BaseModel):
    room: str
    approval_id: str
    approved: bool
    by: str
    reason: str  # approved | denied
    seq: int  # of the tool.approval.decided entry


@router.post(
    "/rooms/{room}/approvals/{approval_id}",
    response_model=ApprovalDecided,
    summary="Approve or deny an agent's destructive tool call (room members)",
)
async def decide_approval(
    ctx: Ctx,
    who: Caller,
    room: RoomName,
    approval_id: Annotated[KeyId, Path()],
    body: ApprovalDecision,
) -> ApprovalDecided:
    """Answers once the ``tool.approval.decided`` entry is committed; 404 when no such
    approval waits in the room, 403 for a non-member, 409 when it is decided or expired."""
    state = visible_room(ctx, who, room)
    if ctx.approvals is None:
        raise NotFound(f"no approval {approval_id[:64]} waits in room {state.name}")
    decided = await ctx.approvals.decide(who, state, approval_id, body.approve)
    return ApprovalDecided.model_validate(decided)
