"""Tasks over HTTP: list and filter, create in a room, get, update with expected_version
(409 conflict when stale), and a task's history (its entries in the room log). The rules
live in core/tasks; these routes only translate."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from ..core.tasks.model import STATES
from ..core.tasks.service import TaskService
from ..errors import NotFound
from .deps import ApiContext, Caller, Ctx
from .schemas import ROOM_NAME

router = APIRouter(tags=["tasks"])
RoomName = Annotated[str, Path(pattern=ROOM_NAME)]
TaskId = Annotated[str, Path(min_length=1, max_length=128)]


class TaskFields(BaseModel):
    """Editable fields (checked in core/tasks: the same rules as WebSocket and tools)."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = None
    description: str | None = None
    state: str | None = Field(None, description=" | ".join(STATES))
    assignees: list[str] | None = None
    due: int | None = Field(None, description="ms since the epoch")
    reminders: list[int] | None = Field(None, description="ms since the epoch, each")
    parent: str | None = None
    labels: list[str] | None = None


class TaskCreate(TaskFields):
    client_msg_id: str | None = Field(None, min_length=1, max_length=128)


class TaskPatch(TaskFields):
    expected_version: int = Field(..., ge=1, description="the version this change builds on")
    client_msg_id: str | None = Field(None, min_length=1, max_length=128)


def _service(ctx: ApiContext) -> TaskService:
    if ctx.tasks is None:
        raise NotFound("tasks are not enabled on this server")
    return ctx.tasks


def _fields(body: TaskFields, *, drop: tuple[str, ...]) -> dict[str, Any]:
    # Only what the client sent: an absent field is unchanged, an explicit null clears it.
    return {k: v for k, v in body.model_dump(exclude_unset=True).items() if k not in drop}


@router.get("/v1/tasks", summary="List tasks the caller may see (newest first)")
async def list_tasks(
    ctx: Ctx,
    who: Caller,
    room: Annotated[str | None, Query(pattern=ROOM_NAME)] = None,
    assignee: Annotated[str | None, Query(max_length=128)] = None,
    state: Annotated[str | None, Query(max_length=32)] = None,
    label: Annotated[str | None, Query(max_length=64)] = None,
    due_before: Annotated[int | None, Query(ge=0)] = None,
    due_after: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    tasks = _service(ctx).query(
        who,
        room=room,
        assignee=assignee,
        state=state,
        label=label,
        due_before=due_before,
        due_after=due_after,
        limit=limit,
    )
    return {"tasks": tasks}


@router.post("/v1/rooms/{room}/tasks", status_code=201, summary="Create a task in a room")
async def create_task(ctx: Ctx, who: Caller, room: RoomName, body: TaskCreate) -> dict[str, Any]:
    fields = _fields(body, drop=("client_msg_id",))
    return await _service(ctx).create(who, room, fields, client_msg_id=body.client_msg_id)


@router.get("/v1/tasks/{task_id}", summary="Get a task")
async def get_task(ctx: Ctx, who: Caller, task_id: TaskId) -> dict[str, Any]:
    return _service(ctx).get(who, task_id)


@router.patch(
    "/v1/tasks/{task_id}",
    summary="Update a task (409 conflict unless expected_version is the current version)",
)
async def update_task(ctx: Ctx, who: Caller, task_id: TaskId, body: TaskPatch) -> dict[str, Any]:
    fields = _fields(body, drop=("client_msg_id", "expected_version"))
    return await _service(ctx).update(
        who,
        task_id,
        fields,
        expected_version=body.expected_version,
        client_msg_id=body.client_msg_id,
    )


@router.get("/v1/tasks/{task_id}/history", summary="A task's entries in its room log")
async def task_history(ctx: Ctx, who: Caller, task_id: TaskId) -> dict[str, Any]:
    return {"events": _service(ctx).history(who, task_id)}
