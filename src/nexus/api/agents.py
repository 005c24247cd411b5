"""Agents over HTTP: definitions (tenant admins), cancelling a streaming reply, the context
an agent would see, token usage."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from ..auth import Principal
from ..core.agents import AgentConfig, Triggers
from ..errors import Forbidden
from .deps import Caller, Ctx, visible_room
from .schemas import ROOM_NAME, USER_ID, KeyId, Strict

router = APIRouter(prefix="/v1", tags=["agents"])
McpServerName = Annotated[str, Field(min_length=1, max_length=64)]
McpAllowlist = dict[McpServerName, list[Annotated[str, Field(min_length=1, max_length=128)]]]
MCP_DOC = 'MCP server -> the tool names the agent may call there (["*"]: all); docs/mcp.md'

AgentName = Annotated[str, Path(pattern=USER_ID)]
RoomName = Annotated[str, Path(pattern=ROOM_NAME)]


class TriggersBody(Strict):
    mention: bool = True
    direct: bool = True
    rooms: list[Annotated[str, Field(pattern=ROOM_NAME)]] = Field(
        default_factory=list, max_length=1000
    )


class AgentCreate(Strict):
    name: str = Field(pattern=USER_ID)
    provider: str = Field("offline", min_length=1, max_length=64)
    model: str = Field("", max_length=200)
    system_prompt: str = Field("You are a helpful assistant in a team chat.", max_length=32000)
    triggers: TriggersBody = Field(default_factory=TriggersBody)
    max_output_tokens: int = Field(1024, ge=1, le=200_000)
    daily_token_budget: int = Field(0, ge=0, le=10**12)
    tools: list[str] = Field(default_factory=list, max_length=64)
    context_window: int = Field(16_000, ge=256, le=10_000_000)
    mcp: McpAllowlist = Field(default_factory=dict, max_length=16, description=MCP_DOC)


class AgentUpdate(Strict):
    provider: str | None = Field(None, min_length=1, max_length=64)
    model: str | None = Field(None, max_length=200)
    system_prompt: str | None = Field(None, max_length=32000)
    triggers: TriggersBody | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=200_000)
    daily_token_budget: int | None = Field(None, ge=0, le=10**12)
    tools: list[str] | None = Field(None, max_length=64)
    context_window: int | None = Field(None, ge=256, le=10_000_000)
    mcp: McpAllowlist | None = Field(None, max_length=16, description=MCP_DOC)


class TriggersOut(BaseModel):
    mention: bool
    direct: bool
    rooms: list[str]


class Agent(BaseModel):
    tenant: str
    name: str
    provider: str
    model: str
    system_prompt: str
    triggers: TriggersOut
    max_output_tokens: int
    daily_token_budget: int
    tools: list[str]
    context_window: int
    mcp: dict[str, list[str]]
    created_by: str
    created_at: int
    updated_at: int


class AgentList(BaseModel):
    agents: list[Agent]
    providers: list[str]
    tools: list[dict[str, str]]


class UsageRow(BaseModel):
    day: str
    agent: str
    model: str
    input_tokens: int
    output_tokens: int
    turns: int


class UsageList(BaseModel):
    usage: list[UsageRow]


class ContextView(BaseModel):
    agent: str
    room: str
    model: str
    messages: list[dict[str, Any]]
    trace: dict[str, Any]


class SummaryView(BaseModel):
    first_seq: int
    last_seq: int
    entries: int
    model: str
    text: str


class SummaryList(BaseModel):
    room: str
    agent: str
    summaries: list[SummaryView]


class Cancelled(BaseModel):
    room: str
    message_id: str
    cancelling: bool


def _view(config: AgentConfig) -> Agent:
    return Agent.model_validate(config.public())


@router.get("/agents", response_model=AgentList, summary="The tenant's agents")
async def list_agents(ctx: Ctx, who: Caller) -> AgentList:
    return AgentList(
        agents=[_view(a) for a in ctx.agents.of_tenant(who.tenant)],
        providers=ctx.agent_control.provider_names(),
        tools=ctx.agent_control.tool_list(),
    )


@router.post(
    "/agents", response_model=Agent, status_code=201, summary="Create an agent (tenant admin)"
)
async def create_agent(ctx: Ctx, who: Caller, body: AgentCreate) -> Agent:
    ctx.access.require_tenant_admin(who)
    data = body.model_dump()
    data["triggers"] = Triggers(
        data["triggers"]["mention"], data["triggers"]["direct"], tuple(data["triggers"]["rooms"])
    )
    data["tools"] = tuple(data["tools"])
    data["mcp"] = {server: tuple(names) for server, names in data["mcp"].items()}
    config = AgentConfig(tenant=who.tenant, created_by=who.user_id, **data)
    created = await ctx.agents.create(config)
    # In the user directory from now on, as a principal of kind agent.
    ctx.directory.note(Principal(created.name, created.tenant, frozenset({"agent"}), kind="agent"))
    return _view(created)


@router.get("/agents/{name}", response_model=Agent, summary="One agent")
async def get_agent(ctx: Ctx, who: Caller, name: AgentName) -> Agent:
    return _view(ctx.agents.require(who.tenant, name))


@router.patch("/agents/{name}", response_model=Agent, summary="Change an agent (tenant admin)")
async def update_agent(ctx: Ctx, who: Caller, name: AgentName, body: AgentUpdate) -> Agent:
    ctx.access.require_tenant_admin(who)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("tools") is not None:
        changes["tools"] = tuple(changes["tools"])
    if changes.get("mcp") is not None:
        changes["mcp"] = {server: tuple(names) for server, names in changes["mcp"].items()}
    if changes.get("triggers") is not None:
        triggers = changes["triggers"]
        changes["triggers"] = {**triggers, "rooms": tuple(triggers.get("rooms", ()))}
    changes = {k: v for k, v in changes.items() if v is not None}
    return _view(await ctx.agents.update(who.tenant, name, changes))


@router.delete(
    "/agents/{name}",
    status_code=204,
    response_class=Response,
    summary="Delete an agent (tenant admin)",
)
async def delete_agent(ctx: Ctx, who: Caller, name: AgentName) -> Response:
    ctx.access.require_tenant_admin(who)
    await ctx.agents.delete(who.tenant, name)
    return Response(status_code=204)


@router.post(
    "/rooms/{room}/messages/{message_id}/cancel",
    response_model=Cancelled,
    status_code=202,
    summary="Stop a reply that is streaming",
)
async def cancel_reply(
    ctx: Ctx, who: Caller, room: RoomName, message_id: Annotated[KeyId, Path()]
) -> Cancelled:
    """Allowed to room members, room admins and the tenant's admins; the reply ends with
    ``finish_reason: cancelled`` and the usage so far."""
    state = visible_room(ctx, who, room)
    if ctx.store.member(state.key, who.user_id) is None and not ctx.access.is_room_admin(
        who, state
    ):
        raise Forbidden("only the room's members may stop a reply")
    ctx.agent_control.cancel(who, state, message_id)
    return Cancelled(room=state.name, message_id=message_id, cancelling=True)


@router.get(
    "/rooms/{room}/context",
    response_model=ContextView,
    summary="What an agent would see in this room now (prompt and trace)",
)
async def room_context(
    ctx: Ctx, who: Caller, room: RoomName, agent: Annotated[str, Query(pattern=USER_ID)]
) -> ContextView:
    state = visible_room(ctx, who, room)
    return ContextView.model_validate(await ctx.agent_control.context_trace(who, state, agent))


def _summary_list(room: str, agent: str, rows: list[dict[str, Any]]) -> SummaryList:
    return SummaryList(
        room=room, agent=agent, summaries=[SummaryView.model_validate(r) for r in rows]
    )


@router.get(
    "/rooms/{room}/summaries",
    response_model=SummaryList,
    summary="The rolling summaries an agent keeps of this room",
)
async def room_summaries(
    ctx: Ctx, who: Caller, room: RoomName, agent: Annotated[str, Query(pattern=USER_ID)]
) -> SummaryList:
    state = visible_room(ctx, who, room)
    rows = ctx.agent_control.room_summaries(who, state, agent)
    return _summary_list(state.name, agent, rows)


@router.post(
    "/rooms/{room}/summaries/rebuild",
    response_model=SummaryList,
    summary="Write an agent's summaries of this room again from the log (tenant admin)",
)
async def rebuild_summaries(
    ctx: Ctx, who: Caller, room: RoomName, agent: Annotated[str, Query(pattern=USER_ID)]
) -> SummaryList:
    """After edits or deletions the stored summaries may say what the log no longer does;
    this forgets them and summarizes the room's recent log again (one provider call per
    range: it may take a while and costs tokens, counted in ``/v1/usage``)."""
    ctx.access.require_tenant_admin(who)
    state = visible_room(ctx, who, room)
    rows = await ctx.agent_control.rebuild_summaries(who, state, agent)
    return _summary_list(state.name, agent, rows)


@router.get("/usage", response_model=UsageList, summary="Token usage per agent, model, day")
async def usage(
    ctx: Ctx,
    who: Caller,
    day: Annotated[str | None, Query(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")] = None,
    agent: Annotated[str | None, Query(pattern=USER_ID)] = None,
) -> UsageList:
    ctx.access.require_tenant_admin(who)
    rows = ctx.agent_control.usage(who.tenant, day, agent)
    return UsageList(usage=[UsageRow.model_validate(r) for r in rows])
