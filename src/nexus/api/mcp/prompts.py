"""The tenant's skills as MCP prompts: ``prompts/list`` is the catalog the caller may see
(tenant-wide skills, and a room's when the prompt is asked with ``room``), ``prompts/get``
the skill's instructions with the caller's arguments, as one user message."""

from __future__ import annotations

import logging
from typing import Any

from mcp_types import (
    GetPromptResult,
    ListPromptsResult,
    Prompt,
    PromptArgument,
    PromptMessage,
    TextContent,
)

from ...auth import Principal
from ...errors import BadRequest, NotFound
from ..deps import ApiContext, visible_room

log = logging.getLogger(__name__)

ARGS_MAX_CHARS = 8_000
ARGUMENTS = (
    PromptArgument(name="args", description="what the skill should work on", required=False),
    PromptArgument(
        name="room", description="a room whose skills count too (room scope)", required=False
    ),
)


def list_prompts(api: ApiContext, who: Principal) -> ListPromptsResult:
    skills = api.skills
    if skills is None:
        return ListPromptsResult(prompts=[])
    prompts = [
        Prompt(
            name=s["name"],
            description=s.get("description", ""),
            arguments=list(ARGUMENTS),
            _meta={"nexus/digest": s.get("digest"), "nexus/scope": s.get("scope")},
        )
        for s in skills.visible(who.tenant)
    ]
    return ListPromptsResult(prompts=prompts)


def get_prompt(
    api: ApiContext, who: Principal, name: str, arguments: dict[str, str] | None
) -> GetPromptResult:
    skills = api.skills
    if skills is None:
        raise NotFound("skills are not enabled on this server")
    arguments = arguments or {}
    room = arguments.get("room") or None
    if room is not None:
        visible_room(api, who, room)  # a room's skills only for those who may see it
    args = arguments.get("args", "")
    if len(args) > ARGS_MAX_CHARS:
        raise BadRequest(f"args is longer than {ARGS_MAX_CHARS} characters")
    skill: dict[str, Any] = skills.load(who.tenant, name, room=room)
    log.info(
        "skill %s (%s) given as an MCP prompt to %s/%s",
        name,
        skill.get("digest"),
        who.tenant,
        who.user_id,
    )
    text = skill.get("body", "")
    refs = skill.get("references") or []
    if refs:
        text += "\n\nReferences available: " + ", ".join(refs)
    if args:
        text += f"\n\n---\nApply this skill to: {args}"
    return GetPromptResult(
        description=skill.get("description", ""),
        messages=[PromptMessage(role="user", content=TextContent(type="text", text=text))],
        _meta={"nexus/digest": skill.get("digest")},
    )
